"""The HTTP server: A1111's REST API (``/sdapi/v1``) and our own (``/loradeck/v1``) over one Studio.

>>> from loradeck.server import create_app
>>> app = create_app(Studio(), auth={"user": "secret"})   # serve with uvicorn; mount the web UI at "/"
"""

from loradeck.server.app import create_app
from loradeck.server.auth import parse_credentials
from loradeck.services.jobs import JobQueue, QueuedJob

__all__ = ["JobQueue", "QueuedJob", "create_app", "parse_credentials"]
