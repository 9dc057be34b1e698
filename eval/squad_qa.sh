#!/usr/bin/env sh
# The SQuAD QA table of eval/README.md: 200 seeded questions of dev part a, k = 5 dense hits,
# every fusion mode next to closed-book and oracle, plus int8 slot KV (about an hour on 2
# cores). Builds memories/squad-a on the first run (~1 min). Later options override these:
# `eval/squad_qa.sh --n 5` is a smoke run, `eval/squad_qa.sh --mode hybrid` reads hybrid hits
# (BM25 + dense, the library's default for text). RAG_MEMORY_DATA points at the data
# (default ../shared/data).
set -e
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATA="${RAG_MEMORY_DATA:-../shared/data}"
exec rag-memory eval qa --dataset "$DATA/squad-v1.1/dev-v1.1.part-a.json" \
    --memory memories/squad-a --out results/qa --n 200 -k 5 --mode dense --max-new-tokens 16 \
    --kv-int8 "$@"
