"""How good the embeddings are: retrieval metrics (``retrieval``), recognising people (``recognition``)."""
