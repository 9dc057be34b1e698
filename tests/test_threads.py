"""Concurrent searches while another thread writes: no error and no torn result."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from helpers import unit_vectors

from rag_memory import Memory

DIM = 32


def _check(hits, k: int) -> None:
    ids = [h.id for h in hits]
    assert len(ids) == len(set(ids)), "an id appears twice (half of an upsert seen)"
    assert len(hits) == k
    for h in hits:
        # every text carries its id: a hit joined with another slot's row would fail here
        assert h.text.startswith(f"{h.id}|"), (h.id, h.text)
        assert h.metadata["id"] == h.id
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_concurrent_search_while_writing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with Memory.create(tmp_path / "m", dim=DIM) as mem:
        ids = [f"base{i}" for i in range(2000)]
        mem.add(
            [f"{i}|v0" for i in ids],
            ids=ids,
            metadata=[{"id": i, "base": True} for i in ids],
            vectors=unit_vectors(2000, DIM),
        )
        stop = threading.Event()
        errors: list[BaseException] = []
        searches = [0]

        def writer() -> None:
            try:
                for step in range(150):
                    new = [f"w{step}-{j}" for j in range(10)]
                    mem.add(
                        [f"{i}|v0" for i in new],
                        ids=new,
                        metadata=[{"id": i} for i in new],
                        vectors=unit_vectors(10, DIM, seed=step + 1),
                    )
                    mem.upsert(
                        [f"{new[0]}|v1"],
                        ids=[new[0]],
                        metadata=[{"id": new[0]}],
                        vectors=unit_vectors(1, DIM, seed=10_000 + step),
                    )
                    mem.delete([new[1], f"base{step}"])
            except BaseException as exc:  # surfaced by the assert below
                errors.append(exc)
            finally:
                stop.set()

        def reader(seed: int) -> None:
            local = np.random.default_rng(seed)
            try:
                while not stop.is_set():
                    queries = local.standard_normal((4, DIM)).astype(np.float32)
                    for hits in mem.search(queries, k=20):
                        _check(hits, 20)
                    filtered = mem.search(queries[0], k=5, where={"base": True})
                    _check(filtered, 5)
                    assert all(h.id.startswith("base") for h in filtered)
                    searches[0] += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer)] + [
            threading.Thread(target=reader, args=(s,)) for s in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors[0]
        assert searches[0] > 10
        assert len(mem) == 2000 + 150 * 10 - 150 * 2
        final = mem.search(rng.standard_normal((3, DIM)).astype(np.float32), k=50)
    with Memory.open(tmp_path / "m") as reopened:
        assert [
            [h.id for h in r]
            for r in reopened.search(
                np.random.default_rng(0).standard_normal((3, DIM)).astype(np.float32), k=50
            )
        ] == [[h.id for h in r] for r in final]
