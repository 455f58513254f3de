"""The HTTP API: routes over the node through `protocol.ServedNode`, one JSON error shape."""
