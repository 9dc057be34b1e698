"""LangChain's own standard suite for vector stores, run against RagMemoryVectorStore: every
test of `VectorStoreIntegrationTests`, sync and async, with its deterministic fake embeddings
(recorded in the manifest through LangChainEmbedder, like any LangChain model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langchain_tests", reason="the [langchain] extra and langchain-tests")

from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from rag_memory.integrations.langchain import RagMemoryVectorStore  # noqa: E402


class TestRagMemoryStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path: Path) -> Iterator[RagMemoryVectorStore]:  # type: ignore[override]
        """An empty store over a new memory, per test."""
        with RagMemoryVectorStore(tmp_path / "mem", self.get_embeddings()) as store:
            yield store
