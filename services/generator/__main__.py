"""``python -m services.generator``: run a generator worker that claims queued jobs from Neo4j.

    MAGDI_NEO4J_URI=bolt://neo4j:7687 MAGDI_NEO4J_PASSWORD=... \
    MAGDI_GENERATOR_CONCURRENCY=16 OPENAI_API_KEY=... python -m services.generator

Neo4j settings: `MAGDI_NEO4J_*`; worker settings: `MAGDI_GENERATOR_*` (see settings.py); API
keys: the variables the job's panel names in `api_key_env`.
"""

from __future__ import annotations

import logging
import sys

from magdi import redact
from services.generator.settings import get_settings


def main() -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact.install()
    from magdi.settings import Neo4jNotConfigured
    from magdi.store.connection import Neo4jUnavailable
    from services.generator.worker import main as worker_main

    try:
        return worker_main(settings)
    except (Neo4jNotConfigured, Neo4jUnavailable) as exc:
        logging.getLogger("services.generator").error("%s", exc)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
