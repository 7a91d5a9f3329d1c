"""The HTTP server: A1111's REST API (``/sdapi/v1``) and our own (``/loradeck/v1``) over one Studio.

>>> from loradeck.server import create_app
>>> app = create_app(Studio(), auth={"user": "secret"})   # serve with uvicorn; mount the web UI at "/"
"""

from loradeck.server.app import create_app
from loradeck.server.auth import parse_credentials

__all__ = ["create_app", "parse_credentials"]
