"""The sealed shards of the CPU tiers searched as one IVF index: one FAISS call per query batch.

Shards are the unit of placement (a tier, a file, a heat count each); they need not be the unit
of search. Searching a query's nprobe partitions shard by shard costs a FAISS call, a thread
hand-off and a merge per shard touched (up to nprobe of them), which dominates a small search.
FAISS can present several indexes' inverted lists as one: `VStackInvertedLists` concatenates
the lists of several `InvertedLists` without copying them (FAISS wiki, "Indexes that do not fit
in RAM"; `benchs/distributed_ondisk` combines on-disk shards the same way). A sealed shard
holds the partitions of one group in its own (local) numbering, so numbering the router's
partitions group by group makes the groups' lists consecutive: stacking one shard of every
group, in group order, gives an IVF index over all partitions whose quantizer is the router's
centroids in that order. A group sealed several times (one shard per seal until a merge) has
several shards: the k-th shard of every group forms the k-th layer, and a layer without a
shard for some group stacks an empty list set there. A batch is routed once, each layer is
searched with that assignment in one call, and the layers' top-k are merged (at most
`merge_threshold` layers, usually one).

RAM- and disk-tier shards both stack: a disk shard's lists are memory-mapped, so probing them
reads only the probed lists, as when it was searched alone. GPU-tier shards are searched on
the GPU one by one (`fanout.search_sealed`). The stack holds references to the shards' FAISS
indexes, so the lists it points into live as long as it does; the tiered index rebuilds it
under its write lock whenever a shard, a tier or a tombstone changes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

import faiss
import numpy as np

from .codecs import new_ivf, reranks
from .fanout import ProbeCounts, rerank
from .merge import merge_topk
from .preassigned import flat_search, parallel_mode_for, search_preassigned
from .router import Router
from .sealed import SealedShard


class StackedShards:
    """The CPU-tier sealed shards of one router, stacked into IVF indexes (module doc)."""

    def __init__(
        self,
        router: Router,
        shards: Sequence[SealedShard],
        previous: StackedShards | None = None,
    ) -> None:
        """Stack `shards` (all cut from `router`, in RAM or on disk). The stacked quantizer is
        taken from `previous` when it was built for the same router."""
        self.router = router
        self.shards = sorted(shards, key=lambda s: s.shard_id)
        self.order: np.ndarray
        self.quantizer: faiss.IndexFlatIP
        if previous is not None and previous.router is router:
            self.order, self.quantizer = previous.order, previous.quantizer
        else:
            # stable: within a group, partitions keep the order of their local numbers
            self.order = np.argsort(router.groups, kind="stable")
            self.quantizer = faiss.IndexFlatIP(router.template.d)
            self.quantizer.add(np.ascontiguousarray(router.centroids[self.order]))
        self.group_of_list = router.groups[self.order]  # stacked list -> group
        sizes = np.bincount(router.groups, minlength=router.n_groups)
        by_group: dict[int, list[SealedShard]] = {}
        for shard in self.shards:
            by_group.setdefault(shard.group, []).append(shard)
        depth = max((len(v) for v in by_group.values()), default=0)
        self._keep: list[object] = []  # what the stacked lists point into
        # each layer twice over the same lists: for single queries and for batches, which
        # FAISS parallelises differently (preassigned.parallel_mode_for)
        self._layers = {
            n_queries: [self._layer(sizes, by_group, j, n_queries) for j in range(depth)]
            for n_queries in (1, 2)
        }
        self.live_count = sum(s.live_count for s in self.shards)
        tombs = [s.tombstones for s in self.shards if len(s.tombstones)]
        self._tombstones = np.concatenate(tombs) if tombs else np.empty(0, np.int64)
        self._tomb_selector = (
            faiss.IDSelectorNot(faiss.IDSelectorBatch(self._tombstones)) if tombs else None
        )
        self._shard_ids = np.array([s.shard_id for s in self.shards], dtype=np.int64)
        self._shard_groups = np.array([s.group for s in self.shards], dtype=np.int64)
        self._shard_fast = np.array([s.tier != "disk" for s in self.shards], dtype=bool)
        # bytes of disk-tier codes per stacked list: what probing that list reads from disk
        self._disk_list_bytes = np.zeros(router.nlist, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        for shard in self.shards:
            if shard.tier == "disk":
                g = shard.group
                self._disk_list_bytes[starts[g] : starts[g + 1]] += shard.list_bytes.astype(
                    np.int64
                )
        self._tallied: list[np.ndarray] = []  # routed lists of the batches since the last take
        self._tally_queries = 0
        self._tally_lock = threading.Lock()  # searches run concurrently under a read lock

    def __len__(self) -> int:
        return len(self.shards)

    def _layer(
        self,
        sizes: np.ndarray,
        by_group: dict[int, list[SealedShard]],
        depth: int,
        n_queries: int,
    ) -> faiss.IndexIVF:
        """The IVF index of every group's `depth`-th shard, empty lists where a group has none,
        set to search `n_queries` queries at a time in parallel."""
        router = self.router
        template = router.template
        code_size = template.code_size
        lists = faiss.InvertedListsPtrVector()
        ntotal = 0
        for group, size in enumerate(sizes.tolist()):
            members = by_group.get(group, [])
            if depth < len(members):
                index = members[depth].cpu_index
                self._keep.append(index)
                invlists = index.invlists
                ntotal += index.ntotal
            else:
                invlists = faiss.ArrayInvertedLists(size, code_size)
                self._keep.append(invlists)
            lists.push_back(invlists)
        stacked = faiss.VStackInvertedLists(lists.size(), lists.data())
        self._keep.extend([lists, stacked])
        layer = new_ivf(router.kind, self.quantizer, template.nlist, like=template)
        layer.replace_invlists(stacked, False)
        layer.ntotal = ntotal
        layer.parallel_mode = parallel_mode_for(n_queries)
        return layer

    def route(self, queries: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, stacked list ids) of each query's `nprobe` nearest partitions
        (`queries` are contiguous float32 rows: `TieredIndex.search` makes them so)."""
        return flat_search(self.quantizer, queries, min(nprobe, self.router.nlist))

    def global_lists(self, lists: np.ndarray) -> np.ndarray:
        """Stacked list ids -> the router's partition ids (-1 stays -1)."""
        return np.where(lists >= 0, self.order[np.maximum(lists, 0)], -1)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        coarse: np.ndarray,
        lists: np.ndarray,
        refine_factor: int,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Top-k (scores, addresses, bytes re-ranking read from disk) over the stacked shards
        for a routed batch (`route`; count its probes with `tally`); tombstones never answer,
        and with `allowed` only those addresses do."""
        kind = self.router.kind
        selector: faiss.IDSelector | None = self._tomb_selector
        if allowed is not None:  # live slots only: tombstones are not among them
            selector = faiss.IDSelectorBatch(allowed)  # must outlive the searches below
        layers = self._layers[1 if len(queries) == 1 else 2]

        def candidates(kk: int) -> tuple[np.ndarray, np.ndarray]:
            parts = [search_preassigned(i, queries, kk, lists, coarse, selector) for i in layers]
            scores, addrs = merge_topk(parts, kk)[:2]
            return scores, addrs

        if not reranks(kind, lists.shape[1], self.router.nlist):
            return (*candidates(k), 0)

        def owned_candidates(kk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            scores, addrs = candidates(kk)
            return scores, addrs, self._owners(addrs)

        available = self.live_count if allowed is None else len(allowed)
        return rerank(kind, queries, k, refine_factor, available, self.shards, owned_candidates)

    @functools.cached_property
    def _owner_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(every address, sorted; the position in `shards` of its shard): what re-ranking
        reads each candidate's vector by. Built at the first re-ranking search, not at every
        restack: an fp16 stack re-ranks only when probing every partition. Two threads may
        both build it; they build the same."""
        addrs = np.concatenate([s.addrs for s in self.shards] or [np.empty(0, np.int64)])
        owners = np.repeat(np.arange(len(self.shards)), [len(s) for s in self.shards])
        sort = np.argsort(addrs, kind="stable")
        return addrs[sort], owners[sort]

    def _owners(self, addrs: np.ndarray) -> np.ndarray:
        """The position in `shards` of the shard holding each address (-1 for padding)."""
        owner_addrs, owner_rows = self._owner_table
        if not len(owner_addrs):  # the stacked shards hold nothing
            return np.full(addrs.shape, -1, dtype=np.int64)
        rows = np.minimum(np.searchsorted(owner_addrs, addrs), len(owner_addrs) - 1)
        return np.where(addrs >= 0, owner_rows[rows], -1)

    def tally(self, lists: np.ndarray) -> int:
        """Keep a routed batch's lists for counting (a list append); returns the queries
        tallied since the last `take_counts`. Heat and tier accounting are derived from the
        tally in `take_counts`, not per query: on a single-query search, building per-shard
        counts cost as much as the FAISS call itself, and even a bincount per query cost 3 us
        of a 100 us search."""
        with self._tally_lock:
            self._tallied.append(lists)
            self._tally_queries += len(lists)
            return self._tally_queries

    def take_counts(self) -> tuple[int, ProbeCounts]:
        """(queries, their probe counts) since the last call, and reset: each shard counts the
        probes of its group's partitions; disk bytes are the codes of the probed disk-tier
        lists."""
        with self._tally_lock:
            tallied, queries = self._tallied, self._tally_queries
            self._tallied, self._tally_queries = [], 0
        if not queries:
            return 0, ProbeCounts()
        probed = np.concatenate([lists.ravel() for lists in tallied])
        per_list = np.bincount(probed[probed >= 0], minlength=self.router.nlist)  # -1: pads
        per_group = np.bincount(
            self.group_of_list, weights=per_list, minlength=self.router.n_groups
        ).astype(np.int64)
        per_shard = per_group[self._shard_groups]
        hit = np.flatnonzero(per_shard)
        return queries, ProbeCounts(
            per_shard=dict(
                zip(self._shard_ids[hit].tolist(), per_shard[hit].tolist(), strict=True)
            ),
            fast=int(per_shard[self._shard_fast].sum()),
            total=int(per_shard.sum()),
            disk_bytes=int(self._disk_list_bytes @ per_list),
        )
