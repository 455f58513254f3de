"""The signed, append-only event log: encoding and signing, the hybrid clock, chain checks,
the SQLite store (the only code that speaks SQL), identities and verification.

Imports nothing of the other parts: everything else builds on it.
"""
