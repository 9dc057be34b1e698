"""The HTTP API over one open `Memory`: `create_app(memory, api_key)` returns the FastAPI app.

Every route is a thin call of the memory's own method with the request's fields, so the server
refuses what the in-process API refuses, with the same error class. Routes are plain functions,
which FastAPI runs in its thread pool: the memory is thread-safe (searches run concurrently,
writes one at a time), so requests need no lock of the server's own. A write's response is
sent only after the memory committed it, so an acknowledged write survives a kill -9 of the
server exactly as it survives one of an in-process writer.

Errors: a `RagMemoryError` is a 4xx carrying its class name and message (`rag_memory.wire`), so
`RemoteMemory` raises the same class; a request that fails validation is a 422 named
`InvalidInputError`; anything else is a 500 whose body says only that the server failed (the
traceback goes to the server's log, never to the client).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import (
    AuthenticationError,
    EmbedderMismatchError,
    IdAlreadyStoredError,
    InvalidInputError,
    InvalidVectorError,
    LexicalIndexMissingError,
    RagMemoryError,
    ReadOnlyError,
    UnknownIdError,
)
from ..generate.stream import PieceStream, drain
from ..memory import Memory
from ..wire import answer_to_json, error_to_json, hit_to_json, slot_to_json, write_to_json
from . import schemas
from .security import DEFAULT_MAX_BODY_BYTES, BodyLimit, key_matches

logger = logging.getLogger(__name__)

# The status of each refusal, most specific class first; any other RagMemoryError is a 400.
# The class name in the body is the contract (the client raises by it); statuses only let
# plain HTTP clients and proxies tell the kinds apart.
_STATUS: tuple[tuple[type[RagMemoryError], int], ...] = (
    (AuthenticationError, 401),
    (ReadOnlyError, 403),
    (UnknownIdError, 404),
    (IdAlreadyStoredError, 409),
    (LexicalIndexMissingError, 409),
    (InvalidInputError, 422),
    (EmbedderMismatchError, 422),
)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorOut, "description": HTTPStatus(status).phrase}
    for status in (401, 403, 404, 409, 413, 422, 500)
}


def status_of(exc: RagMemoryError) -> int:
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 400)


def create_app(
    memory: Memory, api_key: str | None = None, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """The API over `memory` (which the caller opened and closes). With `api_key`, every
    route but /health needs `Authorization: Bearer <api_key>`."""
    app = FastAPI(
        title="rag_memory",
        version=__version__,
        description="An external memory for language models, over HTTP: the methods of "
        "rag_memory.Memory, one route each. Client: rag_memory.client.RemoteMemory.",
    )
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    def check_key(request: Request) -> None:
        if api_key is not None and not key_matches(request.headers.get("authorization"), api_key):
            raise AuthenticationError("a valid API key is needed: Authorization: Bearer <key>")

    @app.get("/health", response_model=schemas.HealthOut)
    def health() -> dict[str, str]:
        """Whether the server answers (no key needed, for load balancers and orchestrators)."""
        return {"status": "ok"}

    app.include_router(_memory_routes(memory), dependencies=[Depends(check_key)], responses=ERRORS)
    return app


def _memory_routes(memory: Memory) -> APIRouter:
    routes = APIRouter()

    @routes.post("/add", response_model=schemas.WriteOut)
    def add(body: schemas.AddRequest) -> JSONResponse:
        """`Memory.add`: store new slots; answered once they are committed to disk."""
        result = memory.add(
            body.texts,
            body.ids,
            body.metadata,
            _vectors(body.vectors),
            timestamps=body.timestamps,
            ttl=body.ttl,
            dedupe=body.dedupe,
            scope=body.scope,
        )
        return JSONResponse(write_to_json(result))

    @routes.post("/upsert", response_model=schemas.WriteOut)
    def upsert(body: schemas.UpsertRequest) -> JSONResponse:
        """`Memory.upsert`: add or replace slots by id."""
        result = memory.upsert(
            body.texts,
            body.ids,
            body.metadata,
            _vectors(body.vectors),
            timestamps=body.timestamps,
            ttl=body.ttl,
            scope=body.scope,
        )
        return JSONResponse(write_to_json(result))

    @routes.post("/remember", response_model=schemas.RememberOut)
    def remember(body: schemas.RememberRequest) -> dict[str, str]:
        """`Memory.remember`: store one turn of a conversation."""
        slot_id = memory.remember(
            body.text,
            body.role,
            body.metadata,
            timestamp=body.timestamp,
            ttl=body.ttl,
            dedupe=body.dedupe,
            scope=body.scope,
        )
        return {"id": slot_id}

    @routes.post("/delete", response_model=schemas.DeletedOut)
    def delete(body: schemas.IdsRequest) -> dict[str, int]:
        """`Memory.delete`: all the ids, or none if any is unknown (404)."""
        memory.delete(body.ids)
        return {"deleted": len(set([body.ids] if isinstance(body.ids, str) else body.ids))}

    @routes.post("/get", response_model=schemas.SlotsOut)
    def get(body: schemas.IdsRequest) -> JSONResponse:
        """`Memory.get`: the stored slots, in order; 404 if any id is not stored."""
        return JSONResponse({"slots": [slot_to_json(s) for s in memory.get(body.ids)]})

    @routes.post("/contains", response_model=schemas.ContainsOut)
    def contains(body: schemas.IdsRequest) -> dict[str, list[bool]]:
        """`Memory.contains`: whether each id is stored."""
        return {"found": memory.contains(body.ids)}

    @routes.post("/search", response_model=schemas.SearchOut)
    def search(body: schemas.SearchRequest) -> JSONResponse:
        """`Memory.search` by text (`query`) or by vector (`vectors`)."""
        vectors = _vectors(body.vectors)
        query: Any = body.query if vectors is None else vectors
        found = memory.search(
            query,
            k=body.k,
            where=body.where,
            cache=body.cache,
            nprobe=body.nprobe,
            refine_factor=body.refine_factor,
            recall_target=body.recall_target,
            mode=body.mode,
            hybrid=body.hybrid,
            recency_half_life=body.recency_half_life,
            hops=body.hops,
            recall=body.recall,
        )
        if isinstance(query, str) or (vectors is not None and vectors.ndim == 1):
            return JSONResponse({"hits": [hit_to_json(h) for h in found]})
        return JSONResponse({"results": [[hit_to_json(h) for h in row] for row in found]})

    @routes.post(
        "/generate",
        response_model=schemas.AnswerOut,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    def generate(body: schemas.GenerateRequest) -> JSONResponse | StreamingResponse:
        """`Memory.generate`; with `stream`, server-sent events: `piece` events carry
        {"text": ...} as it is decoded, then one `answer` event the Answer (or one `error`
        event, as an error body, if generation fails midway)."""
        options: dict[str, Any] = {}
        if body.max_new_tokens is not None:
            options["max_new_tokens"] = body.max_new_tokens
        if body.stop is not None:
            options["stop"] = body.stop
        pieces = memory.generate_stream(
            body.question,
            body.k,
            body.fusion,
            body.where,
            mode=body.mode,
            hybrid=body.hybrid,
            recency_half_life=body.recency_half_life,
            hops=body.hops,
            recall=body.recall,
            remember=body.remember,
            scope=body.scope,
            **options,
        )
        if not body.stream:
            return JSONResponse(answer_to_json(drain(pieces)))
        return StreamingResponse(_events(pieces), media_type="text/event-stream")

    @routes.get("/stats")
    def stats() -> dict[str, Any]:
        """`Memory.stats`."""
        return memory.stats()

    @routes.get("/count", response_model=schemas.CountOut)
    def count() -> dict[str, int]:
        """`len(memory)`: slots stored and not expired."""
        return {"slots": len(memory)}

    @routes.post("/v1/embeddings", response_model=schemas.EmbeddingsOut)
    def embeddings(body: schemas.EmbeddingsRequest) -> JSONResponse:
        """OpenAI's embeddings API, answered by the memory's own embedder. Token counts are
        not measured (reported as 0)."""
        name = memory.manifest.embedder
        if body.model is not None and body.model not in (name, name.rsplit("/", 1)[-1]):
            raise EmbedderMismatchError(
                f"this server embeds with {name!r}, not {body.model!r}: "
                "leave model out or name that one"
            )
        vectors = memory.embed(body.input)
        data = [
            {"object": "embedding", "index": i, "embedding": _embedding(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": 0, "total_tokens": 0}
        return JSONResponse({"object": "list", "data": data, "model": name, "usage": usage})

    return routes


def _vectors(rows: list[float] | list[list[float]] | None) -> np.ndarray | None:
    """JSON rows as the float32 array the memory takes (one vector: 1-D)."""
    if rows is None:
        return None
    try:
        return np.asarray(rows, dtype=np.float32)
    except ValueError:  # ragged rows
        raise InvalidVectorError("vectors must be rows of one length") from None


def _embedding(vector: np.ndarray, encoding: str) -> list[float] | str:
    """A vector as OpenAI sends it: a list of floats, or base64 of little-endian float32."""
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _events(pieces: PieceStream) -> Iterator[bytes]:
    """The answer's pieces as server-sent events, then the Answer (or the error)."""
    try:
        while True:
            try:
                piece = next(pieces)
            except StopIteration as done:
                yield _event("answer", answer_to_json(done.value))
                return
            yield _event("piece", {"text": piece})
    except RagMemoryError as exc:
        yield _event("error", error_to_json(exc))
    except Exception:
        logger.exception("generation failed midway")
        yield _event("error", _internal_error())


def _internal_error() -> dict[str, str]:
    return {"error": "InternalServerError", "message": "the server failed; see its log"}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RagMemoryError)
    async def refused(request: Request, exc: RagMemoryError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
        return JSONResponse(error_to_json(exc), status_code=status_of(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        body = {
            "error": InvalidInputError.__name__,
            "message": "; ".join(f"{p['field']}: {p['message']}" for p in problems),
            "detail": problems,
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        name = (
            type(exc).__name__
            if type(exc) is not HTTPException
            else HTTPStatus(exc.status_code).phrase.title().replace(" ", "")
        )
        body = {"error": name, "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises it after this response, so the ASGI server logs the traceback.
        return JSONResponse(_internal_error(), status_code=500)


def _problem(error: dict[str, Any]) -> dict[str, str]:
    """One validation problem as plain text: the field's path and pydantic's message (not the
    input, which may be large, nor pydantic's context objects)."""
    if error["type"] == "json_invalid":  # loc is ("body", character offset)
        where = error.get("loc", ("body", "?"))[-1]
        reason = (error.get("ctx") or {}).get("error", "")
        message = f"malformed JSON at character {where}" + (f": {reason}" if reason else "")
        return {"field": "body", "message": message, "type": error["type"]}
    field = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    return {"field": field, "message": str(error.get("msg", "invalid")), "type": error["type"]}
