"""The query cache: text -> embedding and query -> results, coherent with writes (issue 6)."""

from .config import DEFAULT_THRESHOLD, CacheConfig, resolve
from .query_cache import QueryCache, group_key

__all__ = ["DEFAULT_THRESHOLD", "CacheConfig", "QueryCache", "group_key", "resolve"]
