"""Data sets: readers of the corpora and benchmarks rag_memory is built from and scored on
(JSONL, BEIR, SQuAD) and the seeded synthetic vectors of the scale tests.

Ingestion and evaluation both read data through here; nothing here builds or scores a memory.
"""
