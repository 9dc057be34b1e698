"""Embedders: text -> unit vectors."""

from .embedder import DEFAULT_EMBEDDER, Embedder

__all__ = ["DEFAULT_EMBEDDER", "Embedder"]
