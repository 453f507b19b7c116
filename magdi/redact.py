"""Keep secrets out of logs, whatever logger or library formats them: the one redaction of the project.

A filter on the *handlers* (not on one logger) sees every record that is emitted, including the
openai, httpx and uvicorn loggers' records, and rewrites the formatted message so that a known key
value, an `Authorization: Bearer ...` header or a credential in a URL's query string never reaches
a log sink. Same idea as openai-python's `SensitiveHeadersFilter`, extended to arbitrary text
because our own errors may quote headers. The generator installs it with the panel's key values,
the API with none (it never logs headers or query strings, and refuses tokens in URLs).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "<redacted>"
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-~+/=]{8,}")
_HEADER = re.compile(r"(?i)((?:authorization|api-key|x-api-key)['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+")
# A credential in a URL (the API refuses them with 400, but the refused URL may still be logged).
_QUERY_CREDENTIAL = re.compile(r"(?i)([?&](?:token|access_token|api[-_]?key|apikey|key|password|secret)=)[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """Replace known secret values and bearer tokens in a record's message and args."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # very short values would redact ordinary words; placeholders are not secrets
        self._secrets.update(s for s in secrets if s and len(s) >= 6 and s != "EMPTY")

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _BEARER.sub(r"\1" + REDACTED, text)
        text = _QUERY_CREDENTIAL.sub(r"\1" + REDACTED, text)
        return _HEADER.sub(r"\1" + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not kill logging
            return True
        cleaned = self.redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            cleaned_exc = self.redact(text)
            if cleaned_exc != text:
                record.exc_text = cleaned_exc
        return True


def install(secrets: Iterable[str] = (), logger: logging.Logger | None = None) -> RedactSecrets:
    """Attach (or extend) one RedactSecrets filter on every handler of `logger` (default: root)."""
    target = logger or logging.getLogger()
    existing = next(
        (f for h in target.handlers for f in h.filters if isinstance(f, RedactSecrets)), None
    )
    filt = existing or RedactSecrets()
    filt.add(secrets)
    for handler in target.handlers:
        if filt not in handler.filters:
            handler.addFilter(filt)
    return filt
