"""Who may do what: bearer-token checks, kept apart from FastAPI so the rules read in one place.

- Writes (POST/DELETE), imports and Cypher need `Authorization: Bearer <MAGDI_API_TOKEN>`.
- Reads need it too, unless `MAGDI_API_OPEN_READS=true`.
- With no token configured, every endpoint that needs one answers 403 (a server that was
  started without a secret does not silently accept writes), unless `MAGDI_API_INSECURE_DEV=true`.
- A token in the query string is refused outright (400): URLs end up in logs, proxies and history.
- A presented token must be right even where none is required: a wrong one is a client bug.

The comparison is `secrets.compare_digest` on bytes, so its time does not depend on where the
first differing character is.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from enum import StrEnum

from services.api.settings import ApiSettings

# Query parameter names that look like credentials; never a real parameter of this API.
CREDENTIAL_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "api-key", "auth", "authorization",
                               "bearer", "key", "password", "secret"})


class Access(StrEnum):
    READ = "read"
    WRITE = "write"  # also imports and Cypher: Cypher can read everything, so it is never opened


class AccessDenied(Exception):
    """Carries the HTTP status and message; the dependency layer turns it into an HTTPException."""

    def __init__(self, status_code: int, detail: str, *, challenge: bool = False) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.challenge = challenge


def check(settings: ApiSettings, access: Access, token: str | None, query_keys: Iterable[str]) -> None:
    """Raise AccessDenied unless a request with this bearer token may have this access."""
    smuggled = sorted(k for k in query_keys if k.lower() in CREDENTIAL_PARAMS)
    if smuggled:
        raise AccessDenied(400, f"credentials are not accepted in the query string ({', '.join(smuggled)}); "
                                "send 'Authorization: Bearer <token>'")
    expected = settings.token.get_secret_value() if settings.token else None
    if token is not None and expected is not None and not _same(token, expected):
        raise AccessDenied(401, "invalid bearer token", challenge=True)
    required = access is Access.WRITE or not settings.open_reads
    if not required:
        return
    if expected is None:
        if settings.insecure_dev:
            return
        what = "write endpoints, imports and Cypher are" if access is Access.WRITE else "reads are"
        raise AccessDenied(403, f"{what} disabled: no MAGDI_API_TOKEN is configured on the server "
                                "(set it, or MAGDI_API_INSECURE_DEV=true for local development only)")
    if token is None:
        raise AccessDenied(401, "missing bearer token: send 'Authorization: Bearer <token>'", challenge=True)


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
