#!/usr/bin/env sh
# The systems sweep of eval/README.md: 1M seeded synthetic vectors (dim 384), the memory next
# to exact FAISS and FAISS IVF-Flat, recall@10 vs batch QPS over nprobe at nlist 1,024
# (about 10 minutes and ~8 GiB RAM on 2 cores). Extra options pass through.
set -e
cd "$(dirname "$0")/.."
exec rag-memory eval systems --n 1000000 --nlist 1024 --out results/systems-1m "$@"
