"""Executors (docker, wasm) and input storage providers (local path, URL, S3, content id)."""
