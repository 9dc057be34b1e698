"""The per-slot KV cache (the inference cache): a slot's keys and values, computed once.

Encoding a slot costs a forward pass over its tokens; with its KV stored, a question that
retrieves it again skips that pass (xattn's time to first token no longer grows with k x slot
length). An entry is keyed by (model key, prefix hash, slot key): the KV depends on the weights
and on the prefix it was encoded after. A memory's slot key is the slot address, which is never
reused (an upsert gives the slot a new one), so a changed slot can never be served stale; every
entry also records a digest of the slot's text and is served only for the same text.

Entries live in RAM (LRU, bounded by bytes) in float16, float32 or int8 with float32 scales
(per channel over the slot's tokens, or per token over the channels); an optional directory
keeps them on disk as safetensors files, one per slot, validated when read (a bad file is a
miss, logged and removed). Nothing is pickled. The disk tier has its own byte budget: a read
touches its file, and a write that takes the folder over the budget deletes the least recently
touched files down to `DISK_LOW_WATER` of it (ccache's cleanup, by file times), which also
bounds a folder several processes share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..cache.lru import ByteLRU
from .kv import KV

logger = logging.getLogger(__name__)

SlotKey = tuple[str, str, str]  # (model key, prefix hash, slot key)

_FORMAT = "rag_memory-slot-kv"
_FORMAT_VERSION = "1"
_STORAGE = {"float16": torch.float16, "float32": torch.float32, "int8": torch.int8}
# Per-entry bookkeeping beyond tensor bytes: the dict node, tuple key, tensor headers.
_ENTRY_OVERHEAD = 1024
# A disk cleanup deletes down to this share of the budget, so that it runs once per many writes.
DISK_LOW_WATER = 0.9


def text_digest(text: str) -> str:
    """The digest an entry records of its slot text (blake2b, 128 bits)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class StoredKV:
    """One slot's KV as stored: tensors in the storage dtype, scales for int8 (else None)."""

    keys: torch.Tensor
    values: torch.Tensor
    key_scale: torch.Tensor | None
    value_scale: torch.Tensor | None
    digest: str

    @property
    def nbytes(self) -> int:
        scales = sum(s.nbytes for s in (self.key_scale, self.value_scale) if s is not None)
        return self.keys.nbytes + self.values.nbytes + scales + _ENTRY_OVERHEAD

    def tensors(self) -> dict[str, torch.Tensor]:
        found = {
            "keys": self.keys,
            "values": self.values,
            "key_scale": self.key_scale,
            "value_scale": self.value_scale,
        }
        return {name: t for name, t in found.items() if t is not None}


def quantize_int8(x: torch.Tensor, per: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 of x (..., tokens, channels) with float32 scale = absmax / 127 taken
    over the tokens ("channel": one scale per channel) or over the channels ("token")."""
    dim = -2 if per == "channel" else -1
    scale = x.float().abs().amax(dim=dim, keepdim=True).clamp_min(1e-12) / 127.0
    q = torch.round(x.float() / scale).clamp_(-127, 127).to(torch.int8)
    return q, scale


def encode(kv: KV, digest: str, kv_dtype: str, int8_scale: str) -> StoredKV:
    """`kv` in the storage form `kv_dtype` ("float16", "float32" or "int8")."""
    if kv_dtype == "int8":
        keys, key_scale = quantize_int8(kv.keys, int8_scale)
        values, value_scale = quantize_int8(kv.values, int8_scale)
        return StoredKV(keys, values, key_scale, value_scale, digest)
    dtype = _STORAGE[kv_dtype]
    return StoredKV(kv.keys.to(dtype), kv.values.to(dtype), None, None, digest)


def decode(stored: StoredKV, dtype: torch.dtype, device: torch.device) -> KV:
    """The stored KV back in the model's dtype on its device."""
    if stored.key_scale is None or stored.value_scale is None:
        return KV(
            stored.keys.to(device=device, dtype=dtype), stored.values.to(device=device, dtype=dtype)
        )
    return KV(
        (stored.keys.float() * stored.key_scale).to(device=device, dtype=dtype),
        (stored.values.float() * stored.value_scale).to(device=device, dtype=dtype),
    )


class SlotCache:
    """LRU cache of slot KVs bounded by bytes, with an optional on-disk tier; thread-safe.

    Args:
        max_bytes: RAM budget; 0 keeps nothing in RAM (the disk tier, if any, still works).
        kv_dtype: storage form, "float16", "float32" or "int8".
        int8_scale: "channel" or "token" (int8 only).
        directory: folder of the disk tier, created if missing; None = RAM only.
        directory_bytes: byte budget of the disk tier; None = unbounded.
    """

    def __init__(
        self,
        max_bytes: int,
        kv_dtype: str = "float16",
        int8_scale: str = "channel",
        directory: str | Path | None = None,
        directory_bytes: int | None = None,
    ) -> None:
        self.kv_dtype = kv_dtype
        self.int8_scale = int8_scale
        self.directory = None if directory is None else Path(directory)
        self.directory_bytes = directory_bytes
        self.disk_bytes = 0
        self.disk_evictions = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.disk_bytes = sum(size for _, size, _ in self._disk_files())
        self._lru: ByteLRU[SlotKey, StoredKV] = ByteLRU(max_bytes, lambda _, kv: kv.nbytes)
        self._lock = threading.Lock()
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def scheme(self) -> str:
        """The storage form, e.g. "float16" or "int8/channel"."""
        return self.kv_dtype + (f"/{self.int8_scale}" if self.kv_dtype == "int8" else "")

    def get(self, key: SlotKey, digest: str, dtype: torch.dtype, device: torch.device) -> KV | None:
        """The slot's KV in `dtype` on `device`, or None (a miss) if neither tier holds it for
        this text."""
        with self._lock:
            stored = self._lru.get(key)
            if stored is not None and stored.digest == digest:
                self.hits += 1
                return decode(stored, dtype, device)
        stored = self._read(key, digest, device)
        with self._lock:
            if stored is None:
                self.misses += 1
                return None
            self.hits += 1
            self.disk_hits += 1
        self._remember(key, stored)
        return decode(stored, dtype, device)

    def put(self, key: SlotKey, digest: str, kv: KV) -> KV:
        """Store a freshly encoded slot (in RAM, and on disk when there is a disk tier) and
        return it as `get` will serve it: the first use of a slot then computes with the same
        (e.g. float16-rounded) values as every reuse, so a cache hit never changes an answer."""
        stored = encode(kv, digest, self.kv_dtype, self.int8_scale)
        self._remember(key, stored)
        if self.directory is not None:
            self._write(key, stored)
        return decode(stored, kv.keys.dtype, kv.keys.device)

    def clear(self) -> None:
        """Drop the RAM tier (the disk tier stays)."""
        with self._lock:
            self._lru.clear()

    def stats(self) -> dict[str, int | str | None]:
        with self._lock:
            return {
                "entries": len(self._lru),
                "bytes": self._lru.bytes,
                "max_bytes": self._lru.max_bytes,
                "storage": self.scheme,
                "hits": self.hits,
                "disk_hits": self.disk_hits,
                "misses": self.misses,
                "evictions": self._lru.evictions,
                "directory": None if self.directory is None else str(self.directory),
                "disk_bytes": self.disk_bytes,
                "disk_max_bytes": self.directory_bytes,
                "disk_evictions": self.disk_evictions,
            }

    def _remember(self, key: SlotKey, stored: StoredKV) -> None:
        with self._lock:
            self._lru.put(key, stored)

    # -- the disk tier -----------------------------------------------------------------
    def _path(self, key: SlotKey) -> Path:
        assert self.directory is not None
        name = hashlib.sha256(json.dumps([*key, self.scheme]).encode()).hexdigest()[:32]
        return self.directory / f"{name}.safetensors"

    def _write(self, key: SlotKey, stored: StoredKV) -> None:
        from safetensors.torch import save_file

        path = self._path(key)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "key": json.dumps(key),
            "digest": stored.digest,
            "scheme": self.scheme,
        }
        try:
            save_file(
                {n: t.detach().cpu().contiguous() for n, t in stored.tensors().items()},
                str(tmp),
                metadata=meta,
            )
            os.replace(tmp, path)
            size = path.stat().st_size
        except OSError as exc:  # a cache: failing to persist costs speed, not correctness
            logger.warning("cannot write slot KV file %s: %s", path, exc)
            tmp.unlink(missing_ok=True)
            return
        with self._lock:
            self.disk_bytes += size
            if self.directory_bytes is not None and self.disk_bytes > self.directory_bytes:
                self._clean_disk(self.directory_bytes)

    def _disk_files(self) -> list[tuple[float, int, Path]]:
        """(last touched, bytes, path) of the disk tier's files; files another process removes
        meanwhile are skipped."""
        assert self.directory is not None
        found = []
        for path in self.directory.glob("*.safetensors"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            found.append((st.st_mtime, st.st_size, path))
        return found

    def _clean_disk(self, budget: int) -> None:
        """Delete the least recently touched files until the tier holds DISK_LOW_WATER of
        `budget` (recounted from the folder: other processes may share it)."""
        files = sorted(self._disk_files())
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= DISK_LOW_WATER * budget:
                break
            path.unlink(missing_ok=True)
            total -= size
            self.disk_evictions += 1
        self.disk_bytes = total

    def _read(self, key: SlotKey, digest: str, device: torch.device) -> StoredKV | None:
        if self.directory is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        from safetensors import SafetensorError
        from safetensors.torch import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                tensors = {n: f.get_tensor(n) for n in f.keys()}
            problem = self._check(meta, tensors, key)
        except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
            problem = f"unreadable ({exc})"
        if problem:
            logger.warning(
                "slot KV file %s: %s; removed, the slot will be encoded again", path, problem
            )
            path.unlink(missing_ok=True)
            return None
        if meta["digest"] != digest:  # the same key for another text: not this slot's KV
            return None
        try:
            os.utime(path)  # recently used: the disk cleanup keeps it
        except OSError:
            pass
        on = {name: t.to(device) for name, t in tensors.items()}
        return StoredKV(
            on["keys"], on["values"], on.get("key_scale"), on.get("value_scale"), digest
        )

    def _check(
        self, meta: dict[str, str], tensors: dict[str, torch.Tensor], key: SlotKey
    ) -> str | None:
        """What is wrong with a file read from the disk tier, or None."""
        if meta.get("format") != _FORMAT or meta.get("version") != _FORMAT_VERSION:
            return f"not a {_FORMAT} v{_FORMAT_VERSION} file"
        if meta.get("key") != json.dumps(key) or meta.get("scheme") != self.scheme:
            return "written for another slot or storage form"
        keys, values = tensors.get("keys"), tensors.get("values")
        if keys is None or values is None or keys.dim() != 4 or keys.shape != values.shape:
            return "keys/values missing or of different shapes"
        if keys.dtype != _STORAGE[self.kv_dtype] or values.dtype != keys.dtype:
            return f"stored as {keys.dtype}, expected {self.kv_dtype}"
        if self.kv_dtype == "int8":
            axis = -2 if self.int8_scale == "channel" else -1
            want = list(keys.shape)
            want[axis] = 1
            for name in ("key_scale", "value_scale"):
                scale = tensors.get(name)
                if scale is None or list(scale.shape) != want or not torch.isfinite(scale).all():
                    return f"{name} missing or of the wrong shape"
        return None
