#!/usr/bin/env sh
# The bAbI table of eval/README.md and README ("Memory that changes"): tasks 1-3 of the
# training files, retrieval figures on every question, the model configurations on 20
# seeded questions per task (about half an hour on 2 cores). Later options override these:
# `eval/babi.sh --n 0` gives the retrieval figures alone (a few minutes), `--split test`
# scores the held-out files where a folder holds them. RAG_MEMORY_DATA points at the data
# (default ../shared/data).
set -e
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATA="${RAG_MEMORY_DATA:-../shared/data}"
exec rag-memory eval babi --data "$DATA/babi-en" --tasks 1,2,3 --n 20 --out results/babi "$@"
