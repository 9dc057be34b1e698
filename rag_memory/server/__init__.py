"""The HTTP server in front of one memory (`rag-memory serve DIR`): FastAPI on uvicorn.

Needs the `server` extra (`pip install 'rag_memory[server]'`); `import rag_memory` never
imports it. `app` builds the routes, `schemas` the request and response bodies, `security`
the API key, bind and body-size checks, `run` the server process. The client is
`rag_memory.client.RemoteMemory`.
"""

from .app import create_app
from .run import MemoryServer, serve

__all__ = ["MemoryServer", "create_app", "serve"]
