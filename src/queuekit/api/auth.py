"""API-key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Keys come from ``Settings.api_keys`` (env ``API_KEYS``, comma-separated). A presented key
is hashed and compared with the hash of *every* configured key with
:func:`hmac.compare_digest`, without stopping at a match: the time taken depends neither on
which key matched nor on how much of a key was right, nor on the keys' lengths. Keys are
never logged nor echoed in responses.

With no keys configured the API is open (and :func:`warn_if_open` says so loudly at start).
``/health``, ``/ready``, ``/metrics`` and the dashboard's HTML page are always open; every
data endpoint depends on :meth:`ApiKeyAuth.__call__` (FastAPI routes) or calls
:meth:`ApiKeyAuth.authenticate` (the send endpoints, which read their headers themselves).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from queuekit.api.problems import Problem

API_KEY_HEADER = "X-API-Key"
REALM = "queuekit"
ANONYMOUS = ""

log = logging.getLogger("queuekit.api")

_bearer = HTTPBearer(auto_error=False, description="An API key from API_KEYS as a bearer token.")
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="An API key from API_KEYS."
)


def security_requirements() -> list[dict[str, list[str]]]:
    """OpenAPI ``security`` of an operation taking the API key either way."""
    return [{_bearer.scheme_name: []}, {_api_key_header.scheme_name: []}]


def security_schemes() -> dict[str, dict[str, Any]]:
    """OpenAPI ``components.securitySchemes`` named by :func:`security_requirements`."""
    return {
        scheme.scheme_name: scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True)
        for scheme in (_bearer, _api_key_header)
    }


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeyAuth:
    """A FastAPI dependency that admits requests carrying one of the configured keys.

    Calling it returns the caller's *principal*: a stable, non-secret identifier of the key
    used (a hex digest prefix), or ``""`` when authentication is off. Idempotency keys are
    scoped by it, so two clients cannot see each other's responses.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(key) for key in keys if key)

    @property
    def enabled(self) -> bool:
        """Whether requests need a key."""
        return bool(self._digests)

    def principal(self, presented: str | None) -> str | None:
        """The principal of ``presented`` if it is a configured key, else None."""
        if not self._digests:
            return ANONYMOUS
        if not presented:
            return None
        candidate = _digest(presented)
        matched = False
        for digest in self._digests:  # no early exit: constant time over all keys
            matched |= hmac.compare_digest(candidate, digest)
        return candidate.hex()[:32] if matched else None

    def authenticate(self, api_key: str | None, authorization: str | None) -> str:
        """The principal of a request, from its ``X-API-Key`` and ``Authorization`` headers.

        ``X-API-Key`` wins when both are sent; ``Authorization`` counts only with the
        ``Bearer`` scheme (read as FastAPI's ``HTTPBearer`` reads it).

        Raises:
            Problem: (401) authentication is on and no configured key was presented.
        """
        return self._admit(api_key if api_key else bearer_token(authorization))

    async def __call__(
        self,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        api_key: Annotated[str | None, Security(_api_key_header)],
    ) -> str:
        return self._admit(api_key if api_key else (bearer.credentials if bearer else None))

    def _admit(self, presented: str | None) -> str:
        principal = self.principal(presented)
        if principal is None:
            raise unauthorized(missing=not presented)
        return principal


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if not scheme or not token or scheme.lower() != "bearer":
        return None
    return token


def unauthorized(*, missing: bool) -> Problem:
    """The 401 problem, with a ``WWW-Authenticate`` challenge (never echoing the key)."""
    if missing:
        detail = f"an API key is required: send 'Authorization: Bearer <key>' or '{API_KEY_HEADER}'"
        challenge = f'Bearer realm="{REALM}"'
    else:
        detail = "the API key is not valid"
        challenge = f'Bearer realm="{REALM}", error="invalid_token"'
    return Problem(
        401,
        "unauthorized",
        detail,
        title="Unauthorized",
        headers={"WWW-Authenticate": challenge},
    )


def warn_if_open(auth: ApiKeyAuth) -> None:
    """Log a loud warning when the API runs without API keys."""
    if not auth.enabled:
        log.warning(
            "!!! API_KEYS is not set: the producer API accepts requests from anyone who can "
            "reach it. Set API_KEYS=<key>[,<key>...] before exposing it. !!!"
        )
