#!/usr/bin/env sh
# The SciFact retrieval figures of eval/README.md: nDCG@10 on the train split of dense
# all-MiniLM-L6-v2 (0.660; the published test-split figure is 0.645; memory and exact FAISS
# side by side), lexical BM25 (0.704) and hybrid (0.738), plus the fusion sweep.
# Builds results/scifact-memory on the first run (~5-7 min on 2 cores), reuses it later.
# RAG_MEMORY_DATA points at the data folder (default ../shared/data); extra options pass through.
set -e
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATA="${RAG_MEMORY_DATA:-../shared/data}"
exec rag-memory eval retrieval --memory results/scifact-memory --dataset "$DATA/scifact" \
    --split train --out results/scifact-train --mode all "$@"
