"""Publishers: the node's content-addressed store, S3, a local folder."""
