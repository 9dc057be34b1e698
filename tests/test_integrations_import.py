"""`import rag_memory` (and its integrations package) brings in no LLM framework: LangChain and
LlamaIndex are optional extras, imported only by their adapter modules. Nor does it, the CLI,
the build or the evaluation import Ray: only a Ray build or a sharded memory's opening does.
Checked in a fresh interpreter, since this test session has imported all of them already."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORKS = ("langchain_core", "langchain", "langchain_tests", "llama_index")


def _loaded_after(statement: str, packages: tuple[str, ...] = FRAMEWORKS) -> list[str]:
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(packages)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_rag_memory_imports_no_framework() -> None:
    assert _loaded_after("import rag_memory, rag_memory.integrations") == []


def test_each_adapter_imports_only_its_own_framework() -> None:
    assert _loaded_after("import rag_memory.integrations.langchain") == ["langchain_core"]
    assert _loaded_after("import rag_memory.integrations.llama_index") == ["llama_index"]


def test_the_cli_build_and_evaluation_import_no_ray() -> None:
    statement = (
        "import rag_memory, rag_memory.cli, rag_memory.ingest, rag_memory.ingest.cli, "
        "rag_memory.ingest.pipeline, rag_memory.evaluation.retrieval, "
        "rag_memory.distributed.opening"
    )
    assert _loaded_after(statement, ("ray",)) == []
    assert _loaded_after("import rag_memory.distributed.build", ("ray",)) == ["ray"]
