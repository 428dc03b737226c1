"""``specflow serve``: an HTTP bridge that accepts specs, runs them as ordinary runs under a
run root, and shows them on a live dashboard. Needs the ``serve`` extra (Starlette, uvicorn).
"""

from specflow.serve.app import ServeConfig, create_app, serve

__all__ = ["ServeConfig", "create_app", "serve"]
