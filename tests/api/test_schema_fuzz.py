"""Property-based fuzzing of the whole OpenAPI schema (schemathesis), in-process, on the real Neo4j.

Every operation gets bounded random valid (25 examples) and invalid (10) inputs, sent with the
token; the property checked is the one that matters at this edge: nothing is ever a 5xx.

The operations are listed from the schema at import (it needs no database), and each test then
draws cases from the schema served by a live app. schemathesis' own `from_fixture` loader would do
the same, but it does not work with pytest 9 (it touches `request.node._nodeid`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from api_helpers import AUTH, TOKEN
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.python import asgi

from magdi.settings import Neo4jSettings
from services.api.main import create_app
from services.api.settings import ApiSettings

MAX_EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 10}  # invalid input is a quick 4xx
_OFFLINE = ApiSettings(token=TOKEN, neo4j=Neo4jSettings(neo4j_uri="bolt://127.0.0.1:9"))
_PATHS = create_app(_OFFLINE).openapi()["paths"]
# (method, path, mode): invalid inputs only where there is an input to spoil.
CASES = [
    pytest.param(method.upper(), path, mode, id=f"{method.upper()} {path} {mode.value}")
    for path, item in sorted(_PATHS.items()) for method, spec in sorted(item.items())
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or spec.get("parameters") or spec.get("requestBody")
]


@pytest.fixture(scope="module")
def fuzz_schema(api_settings: ApiSettings, driver) -> Iterator[schemathesis.schemas.BaseSchema]:  # noqa: ARG001
    app = create_app(api_settings.model_copy(update={"cypher_timeout_s": 2.0}))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    asgi.shutdown_lifespans()  # closes the app's driver (schemathesis keeps lifespans open per app)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_input_makes_a_5xx(fuzz_schema, store, method, path, mode):  # noqa: ARG001 - store wipes first
    operation = fuzz_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES[mode], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers=AUTH)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} {case.query} {str(case.body)[:300]}: "
            f"{response.status_code} {response.text[:500]}")

    check()
