"""The HTTP API (`kb serve`): FastAPI over the one `SearchService`. Build it with `create_app(settings)`."""

from .server import create_app

__all__ = ["create_app"]
