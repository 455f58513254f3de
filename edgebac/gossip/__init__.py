"""Membership, the sync protocol, the HTTP transport and the network key.

Never imports the scheduler: gossip moves signed events and hands them to the log.
"""
