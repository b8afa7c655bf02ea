"""The server-rendered web UI (Jinja2 + htmx): sign-in, platforms, jobs, runs."""

from polysync.web.router import create_web_router
from polysync.web.security import Authenticate, Principal

__all__ = ["Authenticate", "Principal", "create_web_router"]
