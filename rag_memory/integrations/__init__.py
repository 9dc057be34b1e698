"""Adapters that put a rag_memory `Memory` behind the vector-store interfaces of LLM frameworks.

`rag_memory.integrations.langchain` (extra `[langchain]`) and
`rag_memory.integrations.llama_index` (extra `[llama-index]`) each import their framework;
this package imports neither, so `import rag_memory` never pulls a framework in.
"""
