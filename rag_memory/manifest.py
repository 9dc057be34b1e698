"""manifest.json: what a memory directory is (format, embedder, dim, metric, budgets, router,
sealed shards).

It is replaced atomically and validated strictly on read: an unknown key, a wrong type or a
format version from the future is a CorruptFileError naming the file, never a silent default.
It also carries its own checksum (key "checksum": the SHA-256 of its canonical JSON without
that key), so a damaged or hand-edited value that is still well formed (an nprobe, a count, a
shard's group) is refused too rather than silently changing answers. Manifests written before
the checksum (or a shard's .faiss / .vec checksums) was recorded still open: what is not
recorded is not compared, and the structural checks still run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorruptFileError, InvalidInputError, NotAMemoryError
from .fsutil import atomic_write_bytes
from .index.base import TIERS
from .store.lexical import LexicalConfig
from .validation import FieldTypes, is_int, json_object_problem

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "rag_memory"
FORMAT_VERSION = 1
METRIC = "inner_product"
BUDGET_KEYS = ("ram_bytes", "gpu_bytes")
CHECKSUM_KEY = "checksum"


@dataclass(frozen=True)
class ShardInfo:
    """A sealed shard file under shards/ (written by the tiered index)."""

    shard_id: int
    kind: str  # FAISS index family, e.g. "ivf_flat"
    tier: str  # one of TIERS
    count: int  # vectors stored, tombstones included
    file: str  # path stem relative to the memory directory ("shards/000001")
    sha256: str  # checksum of the shard's address file, verified when it is opened
    group: int  # the partition group it holds
    heat: float  # decayed probe count when last rebalanced (restores placement on open)
    # Checksums of the .faiss and .vec files (None: written before they were recorded),
    # verified at open up to integrity.VERIFY_AT_OPEN_BYTES, and always by `rag-memory verify`.
    faiss_sha256: str | None = None
    vec_sha256: str | None = None


@dataclass(frozen=True)
class RouterRecord:
    """The trained router / shard template (shards/codec.faiss, shards/codec.groups.npy);
    recorded under the JSON key "codec", its name in format version 1."""

    kind: str  # one of index.codecs.SEALED_KINDS
    nlist: int
    groups: int
    sha256: str
    groups_sha256: str
    reason: str  # why this kind was chosen, shown in stats()
    # ((nprobe, estimated recall@10), ...) measured at training (index/recall_curve.py);
    # None in manifests written before it was recorded
    recall_curve: tuple[tuple[int, float], ...] | None = None


@dataclass(frozen=True)
class Manifest:
    """The contents of manifest.json."""

    embedder: str  # sentence-transformers model name or path
    dim: int
    metric: str = METRIC
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    index: dict[str, Any] = field(default_factory=dict)  # IndexConfig.to_dict()
    router: RouterRecord | None = None  # None until the first seal
    generation: int = 0  # bumped by every seal / compaction / rebalance
    shards: tuple[ShardInfo, ...] = field(default_factory=tuple)
    # The RAM / GPU budgets given at create (None: no RAM limit / GPU if one is visible): the
    # defaults of every later open, so a memory built under a budget keeps to it.
    budgets: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(BUDGET_KEYS))
    # The lexical (BM25) index's settings (LexicalConfig.to_dict()), None for a memory made
    # without one. A manifest written before lexical indexes reads as the defaults: its
    # writer builds the index at its next open.
    lexical: dict[str, Any] | None = field(default_factory=lambda: LexicalConfig().to_dict())
    # Seconds a slot lives unless its write gives its own ttl (None: slots never expire);
    # absent from manifests written before expiry.
    ttl: float | None = None

    def lexical_config(self) -> LexicalConfig | None:
        return None if self.lexical is None else LexicalConfig.from_dict(self.lexical)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["codec"] = data.pop("router")
        data[CHECKSUM_KEY] = _content_checksum(data)
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _content_checksum(data: dict[str, Any]) -> str:
    """SHA-256 of the manifest's content in one canonical JSON form (sorted keys, no spaces),
    so the checksum does not depend on how the file is indented."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


_FIELD_TYPES: FieldTypes = {
    "embedder": str,
    "dim": int,
    "metric": str,
    "format": str,
    "format_version": int,
    "index": dict,
    "codec": (dict, type(None)),
    "budgets": dict,
    "generation": int,
    "shards": list,
    "lexical": (dict, type(None)),
    "ttl": (int, float, type(None)),
}
_SHARD_TYPES: FieldTypes = {
    "shard_id": int,
    "kind": str,
    "tier": str,
    "count": int,
    "file": str,
    "sha256": str,
    "group": int,
    "heat": (int, float),
    "faiss_sha256": (str, type(None)),
    "vec_sha256": (str, type(None)),
}
_UNRECORDED_SHARD_KEYS = ("faiss_sha256", "vec_sha256")  # absent from older manifests
_ROUTER_TYPES: FieldTypes = {
    "kind": str,
    "nlist": int,
    "groups": int,
    "sha256": str,
    "groups_sha256": str,
    "reason": str,
    "recall_curve": (list, type(None)),
}


def _check_fields(path: Path, obj: Any, types: FieldTypes, what: str) -> None:
    problem = json_object_problem(obj, types, what)
    if problem is not None:
        raise CorruptFileError(path, problem)


def read_manifest(directory: Path) -> Manifest:
    """Read and validate `directory/manifest.json`."""
    path = directory / MANIFEST_NAME
    if not directory.is_dir() or not path.is_file():
        raise NotAMemoryError(f"{directory} is not a rag_memory directory (no {MANIFEST_NAME})")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(path, f"not valid JSON ({exc})") from None
    if isinstance(data, dict) and CHECKSUM_KEY in data:
        recorded = data.pop(CHECKSUM_KEY)
        if recorded != _content_checksum(data):
            raise CorruptFileError(path, "checksum does not match its contents")
    if isinstance(data, dict) and "budgets" not in data:
        data["budgets"] = dict.fromkeys(BUDGET_KEYS)  # written before budgets were recorded
    if isinstance(data, dict) and "lexical" not in data:
        data["lexical"] = LexicalConfig().to_dict()  # written before lexical indexes
    if isinstance(data, dict):
        data.setdefault("ttl", None)  # written before expiry
    _check_fields(path, data, _FIELD_TYPES, "manifest")
    if data["format"] != FORMAT_NAME:
        raise CorruptFileError(path, f"format is {data['format']!r}, expected {FORMAT_NAME!r}")
    if data["format_version"] != FORMAT_VERSION:
        raise CorruptFileError(
            path,
            f"format_version {data['format_version']} is not supported (this rag_memory "
            f"reads version {FORMAT_VERSION})",
        )
    if data["metric"] != METRIC:
        raise CorruptFileError(path, f"metric {data['metric']!r} is not supported")
    if data["dim"] <= 0:
        raise CorruptFileError(path, f"dim must be positive, got {data['dim']}")
    shards = []
    for i, shard in enumerate(data["shards"]):
        if isinstance(shard, dict):
            for key in _UNRECORDED_SHARD_KEYS:
                shard.setdefault(key, None)
        _check_fields(path, shard, _SHARD_TYPES, f"shards[{i}]")
        if shard["tier"] not in TIERS:
            raise CorruptFileError(path, f"shards[{i}] tier {shard['tier']!r} not in {TIERS}")
        shards.append(ShardInfo(**shard))
    data["shards"] = tuple(shards)
    if data["codec"] is not None:
        if isinstance(data["codec"], dict):
            data["codec"].setdefault("recall_curve", None)  # written before it was recorded
        _check_fields(path, data["codec"], _ROUTER_TYPES, "codec")
        data["codec"]["recall_curve"] = _recall_curve(path, data["codec"]["recall_curve"])
    data["router"] = None if data["codec"] is None else RouterRecord(**data.pop("codec"))
    data.pop("codec", None)
    budgets = data["budgets"]
    if set(budgets) != set(BUDGET_KEYS) or not all(
        v is None or (is_int(v) and v >= 0) for v in budgets.values()
    ):
        raise CorruptFileError(
            path, f"budgets must map {list(BUDGET_KEYS)} to byte counts >= 0 or null: {budgets}"
        )
    if data["lexical"] is not None:
        try:
            LexicalConfig.from_dict(data["lexical"])
        except InvalidInputError as exc:
            raise CorruptFileError(path, f"lexical: {exc}") from None
    ttl = data["ttl"]
    if ttl is not None and not (isinstance(ttl, (int, float)) and ttl > 0):
        raise CorruptFileError(path, f"ttl must be a number of seconds > 0 or null, got {ttl!r}")
    return Manifest(**data)


def _recall_curve(path: Path, points: list | None) -> tuple[tuple[int, float], ...] | None:
    """The router's recall curve: [nprobe, recall] pairs, nprobe rising, recall in [0, 1]."""
    if points is None:
        return None
    curve = []
    for point in points:
        if (
            not isinstance(point, list)
            or len(point) != 2
            or not is_int(point[0])
            or point[0] < 1
            or isinstance(point[1], bool)
            or not isinstance(point[1], (int, float))
            or not 0 <= point[1] <= 1
        ):
            raise CorruptFileError(
                path, f"codec.recall_curve holds {point!r}, not [nprobe, recall]"
            )
        curve.append((int(point[0]), float(point[1])))
    if not curve or any(a[0] >= b[0] or a[1] > b[1] for a, b in itertools.pairwise(curve)):
        raise CorruptFileError(path, "codec.recall_curve is not rising in nprobe and recall")
    return tuple(curve)


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Atomically replace `directory/manifest.json` (temp file, fsync, rename, fsync dir)."""
    atomic_write_bytes(directory / MANIFEST_NAME, manifest.to_json())
