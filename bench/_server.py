"""A live `rag-memory serve` in a subprocess, for the server benchmark and the server tests.

The server listens on a free port (--port 0) and prints its URL on its first line of stdout;
`ServedMemory` waits for that line and for /health to answer, so a caller starts many servers
without guessing ports or sleeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def serve_command(directory: Path, *options: str) -> list[str]:
    """The `rag-memory serve` command line, run by this interpreter from this checkout."""
    return [sys.executable, "-m", "rag_memory.cli", "serve", str(directory), *options]


def run_to_end(command: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run `command` (a server that should refuse to start) with this checkout's environment;
    its exit code, stdout and stderr."""
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=timeout)


class ServedMemory:
    """`rag-memory serve DIRECTORY --port 0 OPTIONS...` until `stop()` (SIGTERM) or `kill()`."""

    def __init__(self, directory: Path, *options: str, start_timeout: float = 60.0) -> None:
        self.directory = directory
        # a file, not a pipe: a server that logs much must never block on a full pipe
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            serve_command(directory, "--port", "0", *options),
            env=ENV,
            text=True,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # "serving DIR on URL", or "" if it died
        if not first.startswith("serving "):
            self.kill()
            raise RuntimeError(f"the server did not start: {first!r} {self.stderr()[-2000:]}")
        self.url = first.split()[-1]
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the server at {self.url} never answered /health")
            time.sleep(0.05)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code once the server finished its requests and closed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """kill -9: no chance to finish anything."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stderr(self) -> str:
        """What the server wrote to stderr (once it has exited)."""
        self._stderr.seek(0)
        return self._stderr.read()

    def __enter__(self) -> ServedMemory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
