"""One local Ray runtime for every distributed test (starting one costs seconds): 16 logical
CPUs on the two real cores (each shard actor holds one, idle but for its calls; a few
memories are open at once), a 200 MB object store, no dashboard.
A test that stops the runtime (reopening after `ray.shutdown()`) starts it again itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

RUNTIME = {
    "num_cpus": 16,
    "object_store_memory": 200 * 1024**2,
    "include_dashboard": False,
    "log_to_driver": False,
}


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[dict]:
    """The session's runtime; yields the `ray.init` arguments, for a test that stops it to
    start it again."""
    if not ray.is_initialized():
        ray.init(**RUNTIME)
    yield RUNTIME
    if ray.is_initialized():
        ray.shutdown()
