"""Shared fixtures: the real test infrastructure (Docker engine, offline image, S3 server)."""

pytest_plugins = ["tests.infra"]
