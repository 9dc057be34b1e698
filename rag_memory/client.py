"""`RemoteMemory`: a memory served by `rag-memory serve`, with `Memory`'s methods.

The same method names, arguments and return types as `Memory` (`Hit`, `Slot`, `WriteResult`,
`Answer`; `RagMemoryError` subclasses raised here when the server refused), so code moves
between an in-process memory and a shared one by changing the line that opens it:

    mem = Memory.open("my-memory")                        # in-process, the one writer
    mem = RemoteMemory("http://127.0.0.1:8080", api_key)  # any number of processes

What only a client can meet has its own errors: `AuthenticationError` (the key was refused)
and `RemoteError` (the server is unreachable or failed inside). Thread-safe: one
`RemoteMemory` may serve many threads (httpx pools the connections). Needs httpx (the `server`
extra); it imports neither FastAPI nor the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .errors import (
    AuthenticationError,
    InvalidVectorError,
    MemoryClosedError,
    RagMemoryError,
    RemoteError,
)
from .generate.stream import PieceStream
from .generate.types import Answer
from .scope import MemoryScope, check_scope
from .types import Hit, Slot, WriteResult
from .wire import (
    answer_from_json,
    error_from_json,
    hit_from_json,
    slot_from_json,
    write_from_json,
)

try:
    import httpx
except ModuleNotFoundError as exc:  # pragma: no cover - the extra is installed in CI
    raise ModuleNotFoundError(
        "rag_memory.client needs httpx: pip install 'rag_memory[server]'", name=exc.name
    ) from exc

if TYPE_CHECKING:
    from .hybrid import HybridConfig
    from .memory import Memory
    from .recall import RecallConfig

DEFAULT_TIMEOUT_S = 120.0  # a generation may decode for a while before it answers


class RemoteMemory:
    """The memory served at `url`, used as a `Memory` (see the module docstring). `api_key`
    is the server's key, sent as a bearer token; `timeout` is seconds per request."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self._closed = False

    def close(self) -> None:
        """Close the connections (the server and its memory go on)."""
        self._closed = True
        self._http.close()

    def __enter__(self) -> RemoteMemory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._call("GET", "/count")["slots"])

    def __repr__(self) -> str:
        return f"RemoteMemory({self.url!r}{', closed' if self._closed else ''})"

    # -- writes ----------------------------------------------------------------------------
    def add(
        self,
        texts: str | list[str],
        ids: str | list[str] | None = None,
        metadata: dict | list[dict] | None = None,
        vectors: Any = None,
        *,
        timestamps: Any = None,
        ttl: Any = None,
        dedupe: str | None = None,
        scope: dict[str, Any] | None = None,
    ) -> WriteResult:
        """`Memory.add`: when this returns, the server has committed the slots."""
        body = _write_body(texts, ids, metadata, vectors, timestamps, ttl, scope)
        return write_from_json(self._call("POST", "/add", {**body, "dedupe": dedupe}))

    def upsert(
        self,
        texts: str | list[str],
        ids: str | list[str],
        metadata: dict | list[dict] | None = None,
        vectors: Any = None,
        *,
        timestamps: Any = None,
        ttl: Any = None,
        scope: dict[str, Any] | None = None,
    ) -> WriteResult:
        """`Memory.upsert`."""
        body = _write_body(texts, ids, metadata, vectors, timestamps, ttl, scope)
        return write_from_json(self._call("POST", "/upsert", body))

    def remember(
        self,
        text: str,
        role: str = "user",
        metadata: dict | None = None,
        *,
        timestamp: float | None = None,
        ttl: Any = None,
        dedupe: str | None = None,
        scope: dict[str, Any] | None = None,
    ) -> str:
        """`Memory.remember`."""
        body = {
            "text": text,
            "role": role,
            "metadata": metadata,
            "timestamp": timestamp,
            "ttl": ttl,
            "dedupe": dedupe,
            "scope": scope,
        }
        return str(self._call("POST", "/remember", body)["id"])

    def delete(self, ids: str | list[str]) -> None:
        """`Memory.delete`: every id, or none if any is unknown."""
        self._call("POST", "/delete", {"ids": _plain(ids)})

    def scope(self, fields: dict[str, Any] | None = None, **more: Any) -> MemoryScope:
        """`Memory.scope`: a view of the slots holding `fields`, over this client. (The view
        calls only the methods both kinds of memory share.)"""
        return MemoryScope(cast("Memory", self), check_scope({**(fields or {}), **more}))

    # -- reads -----------------------------------------------------------------------------
    def get(self, ids: str | list[str]) -> list[Slot]:
        """`Memory.get`: UnknownIdError if any id is not stored."""
        slots = self._call("POST", "/get", {"ids": _plain(ids)})["slots"]
        return [slot_from_json(s) for s in slots]

    def contains(self, ids: str | list[str]) -> list[bool]:
        """`Memory.contains`."""
        return list(self._call("POST", "/contains", {"ids": _plain(ids)})["found"])

    def search(
        self,
        query: str | list[str] | tuple[str, ...] | np.ndarray,
        k: int = 10,
        where: dict | None = None,
        *,
        cache: bool = True,
        nprobe: int | None = None,
        refine_factor: int | None = None,
        recall_target: float | None = None,
        mode: str | None = None,
        hybrid: HybridConfig | dict | None = None,
        recency_half_life: float | None = None,
        hops: int = 1,
        recall: RecallConfig | dict | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """`Memory.search`: a text (-> list[Hit]), a list of texts or a 2-D array of query
        vectors (-> list[list[Hit]]), or one 1-D vector (-> list[Hit])."""
        body: dict[str, Any] = {
            "k": k,
            "where": where,
            "cache": cache,
            "nprobe": nprobe,
            "refine_factor": refine_factor,
            "recall_target": recall_target,
            "mode": mode,
            "hybrid": _settings(hybrid),
            "recency_half_life": recency_half_life,
            "hops": hops,
            "recall": _settings(recall),
        }
        if isinstance(query, str) or _is_texts(query):
            body["query"] = list(query) if isinstance(query, tuple) else query
        else:
            body["vectors"] = _rows(query)
        found = self._call("POST", "/search", body)
        if found.get("hits") is not None:
            return [hit_from_json(h) for h in found["hits"]]
        return [[hit_from_json(h) for h in row] for row in found["results"]]

    def stats(self) -> dict[str, Any]:
        """`Memory.stats` of the served memory."""
        return dict(self._call("GET", "/stats"))

    def embed(self, texts: str | list[str]) -> np.ndarray:
        """`Memory.embed`: the served memory's unit vectors for `texts` (/v1/embeddings)."""
        data = self._call("POST", "/v1/embeddings", {"input": texts})["data"]
        return np.asarray([d["embedding"] for d in data], dtype=np.float32)

    # -- generation ------------------------------------------------------------------------
    def generate(
        self,
        question: str,
        k: int = 5,
        fusion: str | None = None,
        where: dict | None = None,
        **options: Any,
    ) -> Answer:
        """`Memory.generate` (mode, hybrid, recency_half_life, hops, recall, remember, scope,
        max_new_tokens, stop as keywords), by the server's generator."""
        body = _generate_body(question, k, fusion, where, options, stream=False)
        return answer_from_json(self._call("POST", "/generate", body))

    def generate_stream(
        self,
        question: str,
        k: int = 5,
        fusion: str | None = None,
        where: dict | None = None,
        **options: Any,
    ) -> PieceStream:
        """`Memory.generate_stream` over server-sent events: the pieces as the server decodes
        them, the Answer as the iterator's return value. As in-process, input is checked
        (and the search done) at the call: a refusal raises here, not at the first piece."""
        self._check_open()
        body = _generate_body(question, k, fusion, where, options, stream=True)
        request = self._http.build_request("POST", "/generate", **_json_content(body))
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise RemoteError(f"POST {self.url}/generate: {exc}") from exc
        if not response.is_success:
            response.read()
            response.close()
            raise _refusal(response)
        return _answer_events(response)

    # -- internals -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise MemoryClosedError(f"{self!r} is closed")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; the server's refusal raised as the error class it names."""
        self._check_open()
        try:
            response = self._http.request(
                method, path, **({} if body is None else _json_content(body))
            )
        except httpx.HTTPError as exc:
            raise RemoteError(f"{method} {self.url}{path}: {exc}") from exc
        if not response.is_success:
            raise _refusal(response)
        try:
            return response.json()
        except ValueError as exc:
            raise RemoteError(f"{method} {self.url}{path}: the answer is not JSON") from exc


def _json_content(body: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON. Infinity is allowed (math.inf is a ttl meaning "never"; the server
    reads it) and NaN too, for the memory to refuse as it does in-process; httpx's own
    encoder raises on both."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return {"content": content, "headers": {"Content-Type": "application/json"}}


def _refusal(response: httpx.Response) -> RagMemoryError:
    """The error a non-2xx answer stands for."""
    try:
        record = response.json()
        name, message = record["error"], record["message"]
    except (ValueError, KeyError, TypeError):
        return RemoteError(
            f"HTTP {response.status_code} from {response.url}: {response.text[:200]}"
        )
    if response.status_code == 401:
        return AuthenticationError(message)
    error = error_from_json(record)
    if type(error) is RagMemoryError or response.status_code >= 500:
        return RemoteError(f"HTTP {response.status_code} {name}: {message}")
    return error


def _answer_events(response: httpx.Response) -> PieceStream:
    """The pieces of a streamed answer, its Answer as the return value."""
    try:
        for event, data in _server_sent_events(response.iter_lines()):
            if event == "piece":
                yield data["text"]
            elif event == "answer":
                return answer_from_json(data)
            elif event == "error":
                raise error_from_json(data)
    finally:
        response.close()
    raise RemoteError("the server closed the answer stream before the answer")


def _server_sent_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event name, decoded JSON data) of each event of a text/event-stream."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def _write_body(
    texts: Any, ids: Any, metadata: Any, vectors: Any, timestamps: Any, ttl: Any, scope: Any
) -> dict[str, Any]:
    return {
        "texts": _plain(texts),
        "ids": _plain(ids),
        "metadata": metadata,
        "vectors": None if vectors is None else _rows(vectors),
        "timestamps": _plain(timestamps),
        "ttl": _plain(ttl),
        "scope": scope,
    }


def _generate_body(
    question: str, k: int, fusion: str | None, where: dict | None, options: dict, stream: bool
) -> dict[str, Any]:
    body = {"question": question, "k": k, "fusion": fusion, "where": where, **options}
    for name in ("hybrid", "recall"):
        if name in body:
            body[name] = _settings(body[name])
    if "stop" in body and body["stop"] is not None:
        body["stop"] = list(body["stop"])
    return {**body, "stream": stream}


def _plain(value: Any) -> Any:
    """A numpy array or tuple as the JSON list the server reads; anything else as it is (the
    server refuses what the memory would)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return list(value) if isinstance(value, tuple) else value


def _rows(vectors: Any) -> list[Any]:
    """Vectors as float32 values in JSON: the exact numbers the memory would store or search
    with in-process."""
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidVectorError(
            f"vectors must be a float array, got {type(vectors).__name__}: {exc}"
        ) from None
    return cast(list[Any], array.tolist())


def _is_texts(query: Any) -> bool:
    return (
        isinstance(query, (list, tuple)) and bool(query) and all(isinstance(q, str) for q in query)
    )


def _settings(value: Any) -> Any:
    """A HybridConfig or RecallConfig as the dict of its fields (a dict or None as it is)."""
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value
