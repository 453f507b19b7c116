"""Opening a Neo4j driver with timeouts, and turning "it is not running" into advice."""

from __future__ import annotations

import logging

import neo4j
from neo4j.exceptions import AuthError, Neo4jError, ServiceUnavailable

from magdi.errors import UserError
from magdi.settings import Neo4jSettings

log = logging.getLogger(__name__)


class Neo4jUnavailable(UserError, RuntimeError):
    """Neo4j cannot be reached; the message says how to start or configure it."""


def is_transaction_timeout(exc: BaseException) -> bool:
    """The server ended a transaction at its timeout (client-set or `db.transaction.timeout`)."""
    code = (exc.code or "") if isinstance(exc, Neo4jError) else ""
    return "TransactionTimedOut" in code or "Terminated" in code


def open_driver(settings: Neo4jSettings, *, verify: bool = True) -> neo4j.Driver:
    """One driver per process; sessions are opened per unit of work by the store."""
    uri, user, password = settings.resolve()
    auth = (user, password) if password else None
    driver = neo4j.GraphDatabase.driver(
        uri,
        auth=auth,
        connection_timeout=settings.connect_timeout_s,
        connection_acquisition_timeout=settings.connect_timeout_s * 2,
        max_transaction_retry_time=settings.query_timeout_s,
        notifications_min_severity="OFF",
    )
    if verify:
        try:
            driver.verify_connectivity()
        except (ServiceUnavailable, OSError) as exc:
            driver.close()
            hint = (
                "check MAGDI_NEO4J_URI"
                if settings.neo4j_uri
                else "start the managed server with `magdi db start`"
            )
            raise Neo4jUnavailable(f"Neo4j at {uri} is not reachable ({exc.__class__.__name__}); {hint}") from None
        except AuthError:
            driver.close()
            raise Neo4jUnavailable(
                f"Neo4j at {uri} refused the credentials; check MAGDI_NEO4J_USER/MAGDI_NEO4J_PASSWORD "
                f"or {settings.credentials_file}"
            ) from None
    return driver
