"""The query cache: text -> embedding and query -> results, patched by every write so a cached
result equals a fresh search."""

from .config import DEFAULT_THRESHOLD, CacheConfig, resolve
from .query_cache import QueryCache, group_key

__all__ = ["DEFAULT_THRESHOLD", "CacheConfig", "QueryCache", "group_key", "resolve"]
