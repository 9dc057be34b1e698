"""Running the app: `MemoryServer` (one memory on one socket, under uvicorn) and `serve`, what
`rag-memory serve DIR` does.

The server process holds the memory open for writing (the one writer it may have); clients
share it over HTTP. On SIGTERM or SIGINT, uvicorn stops accepting connections and waits for the
requests under way to finish (up to `GRACEFUL_S`), then the memory is closed: a write that was
received is completed and answered, not cut off. A kill -9 cannot be waited for, and need not
be: a write is answered only after the memory committed it.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn

from ..memory import Memory
from .app import create_app
from .security import DEFAULT_MAX_BODY_BYTES, check_bind, load_api_key

logger = logging.getLogger(__name__)

# Seconds a stopping server waits for the requests under way (a long generation included).
GRACEFUL_S = 30


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) and listening; port 0 takes a free one, which the
    socket then names (`getsockname`), so a caller can start many servers without races."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on connections
    # whose socket says TCP, and with Nagle on every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class MemoryServer:
    """The HTTP API over `memory` on `host:port` (port 0: a free one; `url` says which).

    `run()` serves until SIGTERM/SIGINT (in the main thread) or `stop()`; it can also run in
    a thread (`start()`), e.g. to serve a memory an application already holds. The memory
    stays the caller's to close."""

    def __init__(
        self,
        memory: Memory,
        host: str = "127.0.0.1",
        port: int = 8080,
        api_key: str | None = None,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        access_log: bool = False,
    ) -> None:
        check_bind(host, api_key)
        self.app = create_app(memory, api_key, max_body_bytes=max_body_bytes)
        self._socket = listening_socket(host, port)
        bound_port = self._socket.getsockname()[1]
        shown_host = f"[{host.strip('[]')}]" if ":" in host else host
        self.url = f"http://{shown_host}:{bound_port}"
        config = uvicorn.Config(
            self.app,
            log_config=None,  # the process's own logging (rag-memory -v), not uvicorn's
            access_log=access_log,
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_S,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve until asked to stop; then wait for the requests under way."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def start(self, timeout: float = 30.0) -> None:
        """Serve from a background thread; return once the server accepts connections."""
        thread = threading.Thread(target=self.run, name="rag-memory-server", daemon=True)
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving (the requests under way are finished first) and wait for it."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def serve(
    directory: str | Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key_file: str | Path | None = None,
    *,
    read_only: bool = False,
    access_log: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the memory at `directory` until SIGTERM or SIGINT, then close it. `ready` gets
    the URL once the socket listens (the CLI prints it). Refused before anything opens: a
    non-loopback `host` without a key, an unreadable key file."""
    api_key = None if api_key_file is None else load_api_key(api_key_file)
    check_bind(host, api_key)
    _stop_quietly_on_signals()
    memory = Memory.open(directory, read_only=read_only)
    try:
        server = MemoryServer(memory, host, port, api_key, access_log=access_log)
        logger.info(
            "serving %s on %s%s", directory, server.url, " (read-only)" if read_only else ""
        )
        if ready is not None:
            ready(server.url)
        server.run()
    finally:
        memory.close()
        logger.info("closed %s", directory)


def _stop_quietly_on_signals() -> None:
    """SIGTERM and SIGINT end the process through `SystemExit(0)`, so `finally` closes the
    memory: while uvicorn serves, it handles them itself (a graceful stop) and re-raises the
    signal once done, which lands here."""
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
