"""Joining a Ray runtime, and the options every shard actor gets.

`address=None` joins the runtime this process already has (`ray.init()` called by the
caller) or starts a local one; "auto" or "ray://host:10001" joins a cluster (Ray's own
`ray.init(address=...)` rules). A runtime this module started or joined is left again when
the sharded memory closes; one the caller started is left running.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..errors import InvalidInputError, ShardUnavailableError
from ..validation import is_number
from .layout import Member

logger = logging.getLogger(__name__)

# Reads are idempotent: Ray retries them on the restarted actor (-1: while the actor has
# restarts left). Writes are never retried by Ray: a write whose shard died is reported to
# the caller (ShardWriteError), who can upsert it again.
READ_RETRIES = -1
DEFAULT_MAX_RESTARTS = 4
DEFAULT_SHARD_CPUS = 1.0
# How long opening waits for every shard actor to be placed and its member opened: past it
# the cluster lacks the resources asked (or a node is gone) and the open fails, naming them.
START_TIMEOUT_S = 600.0


def connect(address: str | None, cpus_needed: float) -> bool:
    """Join (or start) a Ray runtime; True when this call did, so `close` leaves it again."""
    if address is not None and not isinstance(address, str):
        raise InvalidInputError(
            f"address must be None, 'auto' or 'ray://host:port', got {address!r}"
        )
    if ray.is_initialized():
        return False
    if address is None:
        # a local runtime: at least one logical CPU per actor (they are mostly idle; FAISS's
        # threads are not Ray's to count), no dashboard
        cpus = max(os.cpu_count() or 1, int(cpus_needed + 0.999))
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        logger.info("started a local Ray runtime with %d logical CPUs", cpus)
    else:
        ray.init(address=address, log_to_driver=False)
        logger.info("joined the Ray cluster at %s", address)
    return True


def check_resources(cpus: Any, gpus: Any, max_restarts: Any) -> None:
    for name, value in (("shard_cpus", cpus), ("shard_gpus", gpus)):
        if not is_number(value) or not value >= 0:
            raise InvalidInputError(f"{name} must be a number >= 0, got {value!r}")
    if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or max_restarts < -1:
        raise InvalidInputError(f"max_restarts must be an int >= -1, got {max_restarts!r}")


def actor_options(
    shard: int, member: Member, cpus: float, gpus: float, max_restarts: int
) -> dict[str, Any]:
    """Ray options of shard `shard`'s actor: its resources, restarts on a crash, and its
    placement: pinned (hard node affinity) to the node holding its directory when the
    member names one, else spread over the nodes."""
    options: dict[str, Any] = {
        "num_cpus": cpus,
        "num_gpus": gpus,
        "max_restarts": max_restarts,
        "max_task_retries": 0,  # reads raise it per method (READ_RETRIES)
    }
    if member.node is None:
        options["scheduling_strategy"] = "SPREAD"
        return options
    for node in ray.nodes():
        if node.get("Alive") and node.get("NodeManagerAddress") == member.node:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                node["NodeID"], soft=False
            )
            return options
    raise ShardUnavailableError(
        f"shard {shard} lives on node {member.node} ({member.path}), which is not an alive "
        "node of this Ray cluster: start Ray there, or move the directory and edit "
        "sharded.json"
    )


def local_ip() -> str:
    """The IP of the node this process runs on, as Ray names nodes."""
    return str(ray.util.get_node_ip_address())
