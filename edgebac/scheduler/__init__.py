"""The projection (events -> state) and the pure decisions of requesters and compute nodes."""
