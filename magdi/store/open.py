"""One call that gives a ready store: settings -> driver -> schema applied."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from magdi.settings import Neo4jSettings, get_settings
from magdi.store.connection import open_driver
from magdi.store.graph_store import GraphStore


@contextmanager
def open_store(settings: Neo4jSettings | None = None, *, ensure_schema: bool = True) -> Iterator[GraphStore]:
    settings = settings or get_settings()
    driver = open_driver(settings)
    try:
        store = GraphStore(driver, database=settings.neo4j_database, query_timeout_s=settings.query_timeout_s)
        if ensure_schema:
            store.ensure_schema()
        yield store
    finally:
        driver.close()
