"""The server's defences, against a live `rag-memory serve --api-key-file` subprocess: the key
(401), the body limit (413), malformed and mistyped requests (422 with a message), the bind
refusal, and the read-only mode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _server import ServedMemory, run_to_end, serve_command
from helpers import unit_vectors

from rag_memory import Memory
from rag_memory.client import RemoteMemory
from rag_memory.errors import AuthenticationError, InvalidInputError, ReadOnlyError
from rag_memory.server.security import DEFAULT_MAX_BODY_BYTES, check_bind, key_matches

DIM = 8
KEY = "k3y-" + "x" * 40


@pytest.fixture(scope="module")
def memory_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secured") / "mem"
    with Memory.create(path, dim=DIM) as mem:
        mem.add(["one", "two"], ids=["a", "b"], vectors=unit_vectors(2, DIM))
    return path


@pytest.fixture(scope="module")
def key_file(memory_dir: Path) -> Path:
    path = memory_dir.parent / "key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def served(memory_dir: Path, key_file: Path) -> Iterator[ServedMemory]:
    with ServedMemory(memory_dir, "--api-key-file", str(key_file)) as server:
        yield server


def post(url: str, path: str, body: bytes | dict, key: str | None = KEY) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url + path, content=content, headers=headers, timeout=30)


SEARCH = {"vectors": [0.5] * DIM, "k": 1}


@pytest.mark.parametrize("key", [None, "wrong", KEY[:-1], KEY + "x", KEY.upper()])
def test_missing_or_wrong_key_is_401(served: ServedMemory, key: str | None) -> None:
    response = post(served.url, "/search", SEARCH, key=key)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "AuthenticationError"
    assert httpx.get(served.url + "/stats").status_code == 401


def test_the_key_opens_every_route_and_health_needs_none(served: ServedMemory) -> None:
    assert post(served.url, "/search", SEARCH).status_code == 200
    assert httpx.get(served.url + "/health").json() == {"status": "ok"}
    with RemoteMemory(served.url, api_key=KEY) as remote:
        assert len(remote) == 2
    with RemoteMemory(served.url, api_key="wrong") as remote, pytest.raises(AuthenticationError):
        remote.get("a")
    schema = httpx.get(served.url + "/openapi.json").json()
    assert {"/add", "/search", "/generate", "/v1/embeddings"} <= set(schema["paths"])


def test_key_comparison() -> None:
    assert key_matches(f"Bearer {KEY}", KEY) and key_matches(f"bearer  {KEY}", KEY)
    assert not key_matches(KEY, KEY)  # no scheme
    assert not key_matches(f"Basic {KEY}", KEY)
    assert not key_matches("Bearer ключ", KEY)  # non-ASCII: refused, not an error


def test_oversized_body_is_413(served: ServedMemory) -> None:
    big = b'{"texts": ["' + b"x" * DEFAULT_MAX_BODY_BYTES + b'"]}'
    response = post(served.url, "/add", big)
    assert response.status_code == 413
    assert response.json()["error"] == "BodyTooLarge"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        yield b'{"texts": ["'
        for _ in range(DEFAULT_MAX_BODY_BYTES // (1 << 20) + 1):
            yield b"y" * (1 << 20)
        yield b'"]}'

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    streamed = httpx.post(served.url + "/add", content=chunks(), headers=headers, timeout=60)
    assert streamed.status_code == 413
    assert "limit" in streamed.json()["message"]
    with Memory.open(served.directory, read_only=True) as mem:
        assert len(mem) == 2


def test_batch_over_the_limit_is_refused(served: ServedMemory) -> None:
    response = post(served.url, "/contains", {"ids": [f"i{n}" for n in range(10_001)]})
    assert response.status_code == 422
    assert "at most 10000" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b'{"vectors": [0.5, ', "body", "malformed JSON"),
        (b"not json", "body", "malformed JSON"),
        ({"vectors": [0.5] * DIM, "k": "3"}, "k", "valid integer"),
        ({"vectors": [0.5] * DIM, "k": True}, "k", "valid integer"),
        ({"vectors": [0.5] * DIM, "wehre": {"n": 1}}, "wehre", "Extra inputs"),
        ({"vectors": "abc"}, "vectors", "valid"),
        ({"k": 3}, "body", "exactly one of query"),
        ({"vectors": [0.5] * DIM, "k": 1001}, "k", "less than or equal to 1000"),
    ],
)
def test_malformed_or_mistyped_request_is_422(
    served: ServedMemory, body: bytes | dict, field: str, words: str
) -> None:
    response = post(served.url, "/search", body)
    assert response.status_code == 422
    record = response.json()
    assert record["error"] == "InvalidInputError"
    assert words in record["message"]
    assert any(field in p["field"] for p in record["detail"])


def test_ragged_vectors_are_the_memorys_422(served: ServedMemory) -> None:
    response = post(served.url, "/search", {"vectors": [[0.5] * DIM, [0.5]], "k": 1})
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidVectorError"


def test_binding_beyond_loopback_without_a_key_is_refused(memory_dir: Path) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.com"):
        with pytest.raises(InvalidInputError, match="without an API key"):
            check_bind(host, None)
        check_bind(host, KEY)
    for host in ("127.0.0.1", "::1", "localhost", "127.3.2.1"):
        check_bind(host, None)
    done = run_to_end(serve_command(memory_dir, "--host", "0.0.0.0"))
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in done.stderr
    assert done.stdout == ""  # it never listened


def test_an_empty_key_file_is_refused(memory_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    done = run_to_end(serve_command(memory_dir, "--api-key-file", str(empty)))
    assert done.returncode == 2 and "must hold one key" in done.stderr


def test_read_only_server_refuses_writes(served: ServedMemory, memory_dir: Path) -> None:
    with ServedMemory(memory_dir, "--read-only") as reader:  # beside the writing server
        with RemoteMemory(reader.url) as remote:
            assert [s.text for s in remote.get(["a", "b"])] == ["one", "two"]
            with pytest.raises(ReadOnlyError):
                remote.delete("a")
        assert post(reader.url, "/delete", {"ids": ["a"]}, key=None).status_code == 403
        assert reader.stop() == 0
