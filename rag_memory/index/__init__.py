"""FAISS shards and the search that spans them."""
