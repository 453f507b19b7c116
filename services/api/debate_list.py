"""The debate list: one keyset page of summaries with their question text, optionally searched.

A search (`q`) keeps the debates whose question text, debate id or record id contains the words
typed, ignoring case. No index serves a substring of free text together with the list's keyset
order (a Neo4j TEXT index finds matching questions, but a common word matches them all and the
page would sort every debate), so a search reads at most `search_window` debates past the cursor,
in the list's own index order, and returns the matches among them: each request costs the same
whatever the store holds. When the window is used up before the page is full, `next_cursor`
continues the scan where it stopped, so a search page may hold fewer than `limit` items (even
none) and still have a next page.
"""

from __future__ import annotations

from typing import Any

from magdi.store.graph_store import DebateFilter, GraphStore, decode_cursor, encode_cursor, page_query
from services.api.schemas import DebatesPage, DebateSummary

# Runs on the page's debates only (at most `window`, collected in the page's order): one ON hop each.
_PROJECTION = """
WITH collect(d {.*, question_text: [(d)-[:ON]->(q:Question) | q.text][0]}) AS page
RETURN [s IN page WHERE $needle IS NULL OR toLower(coalesce(s.question_text, '')) CONTAINS $needle
        OR toLower(s.id) CONTAINS $needle OR toLower(coalesce(s.qid, '')) CONTAINS $needle][..$take] AS hits,
       size(page) AS scanned, page[-1].id AS last
"""


def list_query(flt: DebateFilter, after: str | None, *, window: int, needle: str | None,
               take: int) -> tuple[str, dict[str, Any]]:
    """Cypher + parameters: the first `take` matches of `needle` (lower case; None = all) among the
    `window` debates after `after`, how many were read, and the last id read."""
    query, params = page_query(flt, after, window, _PROJECTION)
    return query, {**params, "needle": needle, "take": take}


def list_page(store: GraphStore, flt: DebateFilter, *, limit: int, cursor: str | None, search: str | None,
              search_window: int) -> DebatesPage:
    """A page of `limit` summaries after `cursor`; InvalidCursor for a cursor we did not issue."""
    after = decode_cursor(cursor)[0] if cursor else None
    needle = search.strip().lower() if search and search.strip() else None
    window = search_window if needle else limit + 1
    query, params = list_query(flt, after, window=window, needle=needle, take=limit + 1)
    row = store.rows(query, **params)[0]
    hits: list[dict[str, Any]] = row["hits"]
    items = hits[:limit]
    if len(hits) > limit:
        next_cursor = encode_cursor(items[-1]["id"])
    elif row["scanned"] == window and row["last"] is not None:  # the window was full: more may match
        next_cursor = encode_cursor(row["last"])
    else:
        next_cursor = None
    for item in items:
        if hasattr(item.get("created_at"), "iso_format"):
            item["created_at"] = item["created_at"].iso_format()
    return DebatesPage(items=[DebateSummary.model_validate(i) for i in items], next_cursor=next_cursor)
