"""Quota shares: generator processes that call the same endpoint split its rate limits between them.

A panel's `limits` are the endpoint's quota (requests and tokens per minute). One process enforces
them with its own token buckets; two workers running two jobs against the same endpoint would
each allow the whole quota and meet in 429 storms. So every running job registers a share per
endpoint it uses, with an expiry renewed along with its job lease, and sizes its buckets at
quota / (live shares of that endpoint). A share of a crashed process expires by itself.

Endpoints are named by a hash of (base URL, model, name of the key's environment variable), the
same triple that makes agents of one panel share a limiter; no key is ever stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from magdi.store.graph_store import GraphStore


def endpoint_id(base_url: str, model: str, key_env: str | None) -> str:
    return hashlib.sha256(f"{base_url}\n{model}\n{key_env or ''}".encode()).hexdigest()[:24]


class QuotaShares:
    def __init__(self, store: GraphStore) -> None:
        self.store = store

    def renew(self, holder: str, endpoints: Iterable[str], lease_s: float) -> dict[str, int]:
        """Register or extend `holder`'s share of each endpoint; returns the live shares per endpoint."""
        keys = sorted(set(endpoints))
        if not keys:
            return {}
        rows = self.store.rows(
            "UNWIND $keys AS k "
            "MERGE (s:QuotaShare {endpoint: k, holder: $holder}) "
            "SET s.until = datetime() + duration({milliseconds: $ms}) "
            "WITH k "
            "MATCH (o:QuotaShare {endpoint: k}) "
            "WITH k, collect(o) AS shares "
            "WITH k, [o IN shares WHERE o.until < datetime()] AS stale, "
            "     size([o IN shares WHERE o.until >= datetime()]) AS n "
            "FOREACH (x IN stale | DELETE x) "
            "RETURN k AS endpoint, n",
            write=True, keys=keys, holder=holder, ms=int(lease_s * 1000),
        )
        return {r["endpoint"]: r["n"] for r in rows}

    def release(self, holder: str) -> int:
        """Drop `holder`'s shares (its job ended): the others get the whole quota back at their next renewal."""
        rows = self.store.rows("MATCH (s:QuotaShare {holder: $holder}) DELETE s RETURN count(s) AS n",
                               write=True, holder=holder)
        return rows[0]["n"]
