"""The REST API (FastAPI): one router per resource, API keys with roles, problem details."""

from polysync.api.app import create_api_app
from polysync.api.deps import ApiSettings
from polysync.api.keys import (
    Authenticator,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    verify_api_key,
)

__all__ = [
    "ApiSettings",
    "Authenticator",
    "create_api_app",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
    "verify_api_key",
]
