"""The HTTP re-ranking service: :func:`create_app` (FastAPI), micro-batching, uvicorn runners.

FastAPI/uvicorn are imported only when an app is built or served (extra ``serve``).
"""

from rankstack.serve.app import ServiceSettings, create_app
from rankstack.serve.batching import BatchStats, MicroBatcher
from rankstack.serve.server import BackgroundServer, RequestLimits, RequestStats, serve_forever

__all__ = ["BackgroundServer", "BatchStats", "MicroBatcher", "RequestLimits", "RequestStats",
           "ServiceSettings", "create_app", "serve_forever"]
