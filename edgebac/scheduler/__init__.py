"""The projection (events -> state) and the pure decisions of requesters and compute nodes.

`spec` parses job specs; `events` documents the job event bodies; `projection` folds events
into `state`; `requester` and `compute` decide which events to append next; `bacalhau*`
translate Bacalhau v1 jobs into specs and show jobs in Bacalhau's shapes. Nothing here does
I/O, reads a clock or draws random numbers: the node's runner supplies `now_ms` and local facts.
"""
