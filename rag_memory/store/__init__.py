"""Durable slot storage: the SQLite slot table and metadata filters."""
