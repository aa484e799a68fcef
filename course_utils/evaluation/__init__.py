"""How good are the embeddings: retrieval metrics (``retrieval``) and recognising and
verifying people against a gallery (``recognition``)."""
