"""choose_index: the autofaiss-style plan under a memory budget (pure; no model, no FAISS)."""

from __future__ import annotations

import pytest

from rag_memory.errors import InvalidInputError
from rag_memory.index.plan import (
    FLAT_MAX_VECTORS,
    MIN_POINTS_PER_CENTROID,
    IndexPlan,
    choose_index,
    ivf_fp16_bytes,
    nlist_for,
    parse_bytes,
)

MIB = 1 << 20


def test_small_collections_are_flat() -> None:
    plan = choose_index(5_183, 384, 512 * MIB)
    assert plan.kind == "flat" and plan.nlist == 0 and plan.fits_budget
    assert plan.estimated_bytes == 5_183 * 384 * 4 and "flat" in plan.reason


def test_ivf_fp16_when_the_codes_fit() -> None:
    plan = choose_index(100_000, 384, 1024 * MIB)
    assert plan.kind == "ivf_fp16" and plan.pq_m == 0
    assert plan.nlist == 1024  # 2 ** round(log2(4 * sqrt(100k) = 1265))
    assert plan.estimated_bytes == ivf_fp16_bytes(100_000, 384, 1024) <= 1024 * MIB
    assert 1 <= plan.nprobe <= plan.nlist and plan.train_points >= 39 * plan.nlist


def test_two_million_vectors_in_512_mib_use_pq() -> None:
    plan = choose_index(2_000_000, 384, 512 * MIB)
    assert plan.kind == "ivf_pq" and plan.nlist == 16_384 and plan.pq_nbits == 8
    assert plan.pq_m == 128 and 384 % plan.pq_m == 0  # the largest autofaiss m that fits
    assert plan.fits_budget and plan.estimated_bytes <= 512 * MIB
    assert plan.train_points >= 256 * 39 and "IVF-PQ" in plan.reason


def test_budget_too_small_says_so() -> None:
    plan = choose_index(2_000_000, 384, 4 * MIB)
    assert plan.kind == "ivf_pq" and plan.pq_m == 4 and not plan.fits_budget
    assert "exceeds the budget" in plan.reason


def test_nlist_keeps_39_training_points_per_centroid() -> None:
    for n in (FLAT_MAX_VECTORS, 20_000, 999_999, 1_000_000, 50_000_000):
        nlist = nlist_for(n)
        assert n // nlist >= MIN_POINTS_PER_CENTROID and nlist & (nlist - 1) == 0
    assert nlist_for(10_000) == 256  # 4*sqrt(n) ~ 512, clamped by 10,000 // 39


def test_dimension_not_divisible_by_the_usual_m() -> None:
    plan = choose_index(1_000_000, 100, 16 * MIB)
    assert plan.kind == "ivf_pq" and 100 % plan.pq_m == 0


def test_more_budget_never_means_a_smaller_index() -> None:
    sizes = [choose_index(500_000, 384, b * MIB).estimated_bytes for b in (16, 64, 256, 1024)]
    assert sizes == sorted(sizes)


@pytest.mark.parametrize(
    "args", [(-1, 384, MIB), (10, 0, MIB), (10, 384, 0), (10, 3.5, MIB), (True, 384, MIB)]
)
def test_bad_arguments(args: tuple) -> None:
    with pytest.raises(InvalidInputError):
        choose_index(*args)


def test_plan_round_trips_and_rejects_bad_dicts() -> None:
    plan = choose_index(2_000_000, 384, 512 * MIB)
    assert IndexPlan.from_dict(plan.to_dict()) == plan
    for bad in (
        {**plan.to_dict(), "extra": 1},
        {**plan.to_dict(), "nlist": "16"},
        {**plan.to_dict(), "kind": "hnsw"},
        {**plan.to_dict(), "fits_budget": 1},
        [],
    ):
        with pytest.raises(InvalidInputError):
            IndexPlan.from_dict(bad)


@pytest.mark.parametrize(
    "text,value",
    [
        ("512MiB", 512 * MIB),
        ("2GB", 2 * 10**9),
        ("1.5GiB", 3 * 512 * MIB),
        ("4096", 4096),
        (77, 77),
    ],
)
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "12 parsecs", "-1MiB", "0"])
def test_parse_bytes_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_bytes(text)
