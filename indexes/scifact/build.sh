#!/usr/bin/env sh
# SciFact (BEIR, 5,183 abstracts) -> memories/scifact (git-ignored), chunked by MiniLM's tokenizer.
# Rerun the same command to resume an interrupted build; extra options pass through, e.g.
#   indexes/scifact/build.sh --device cuda
set -e
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec rag-memory build ../shared/data/scifact --out memories/scifact "$@"
