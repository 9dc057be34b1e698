"""`CacheConfig`: the query cache's settings, one frozen dataclass with every field documented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError
from ..validation import check_int, config_from_dict, is_number

MIB = 1 << 20

# Measured by bench/cache_threshold_study.py on SciFact train claims with all-MiniLM-L6-v2:
# one-word antonyms and negations of long claims ("... less than 5mmol/L" vs "... more than
# 5mmol/L") reach cosine 0.9998, so *every* threshold below 1.0 served wrong answers (4 hard
# negatives and 2 other claims still at 0.999). Exact hits only is the one setting with zero
# wrong hits; casing variants still hit (an uncased model embeds them identically). This is
# GPTCache's false-hit complaint, measured: lower it only for traffic without such pairs.
DEFAULT_THRESHOLD = 1.0


@dataclass(frozen=True)
class CacheConfig:
    """Settings of the query cache in front of a memory (`Memory.create/open(cache=...)`).

    Attributes:
        enabled: False turns the cache off entirely (same as `cache=None`).
        max_bytes: byte budget of the query -> results layer; least recently used entries
            are evicted beyond it (bytes, not entries: one entry of k=100 long slots can
            weigh as much as a thousand of k=1).
        threshold: cosine at or above which a new query reuses a cached query's results
            (a *semantic* hit, reported as such). 1.0 means exact hits only (the same vector
            up to float rounding). The default is measured, see `DEFAULT_THRESHOLD`.
        ttl_seconds: entries older than this are not served (None: no expiry). Entries stay
            coherent with writes without it; a TTL only bounds how long a semantic neighbour's
            answer may be reused.
        embedding_max_bytes: byte budget of the text -> embedding layer, which skips the
            embedder for a question text seen before (after whitespace normalisation).
        text_max_bytes: byte budget of the lexical / hybrid results layer (exact query
            text -> results, valid until the next write: `text_results.py` says why).
    """

    enabled: bool = True
    max_bytes: int = 64 * MIB
    threshold: float = DEFAULT_THRESHOLD
    ttl_seconds: float | None = None
    embedding_max_bytes: int = 16 * MIB
    text_max_bytes: int = 16 * MIB

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise InvalidInputError(f"CacheConfig.enabled must be a bool, got {self.enabled!r}")
        for name in ("max_bytes", "embedding_max_bytes", "text_max_bytes"):
            size = check_int(getattr(self, name), f"CacheConfig.{name}", minimum=0)
            object.__setattr__(self, name, size)  # a numpy int is stored as a plain int
        t = self.threshold
        if not is_number(t) or not 0.0 < t <= 1.0:
            raise InvalidInputError(f"CacheConfig.threshold must be in (0, 1], got {t!r}")
        ttl = self.ttl_seconds
        if ttl is not None and (not is_number(ttl) or not ttl > 0):
            raise InvalidInputError(f"CacheConfig.ttl_seconds must be > 0 or None, got {ttl!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CacheConfig:
        """Build from a plain dict (e.g. parsed JSON); an unknown key is an error, not ignored."""
        return config_from_dict(cls, values)


def resolve(cache: CacheConfig | dict | bool | None) -> CacheConfig | None:
    """The effective config for `Memory(cache=...)`: None when the cache is off.

    True means the defaults, False/None off; a dict goes through `CacheConfig.from_dict`.
    """
    if cache is None or cache is False:
        return None
    if cache is True:
        cache = CacheConfig()
    elif isinstance(cache, dict):
        cache = CacheConfig.from_dict(cache)
    elif not isinstance(cache, CacheConfig):
        raise InvalidInputError(
            f"cache must be a CacheConfig, a dict, a bool or None, got {type(cache).__name__}"
        )
    return cache if cache.enabled else None
