"""The one exception type for errors the user fixes, as opposed to bugs.

A `UserError` is bad input, a bad configuration or a service that is not there: the CLI prints its
message and exits 2 without a traceback, the API answers 4xx. Anything else is a bug and shows a
traceback (CLI) or a 500 with a request id (API), so that a bug never looks like bad input.

It subclasses `ValueError` so that pydantic validators may raise it and code that already catches
`ValueError` keeps working; every domain error of the project (FormatError, PanelError,
Neo4jUnavailable, ...) derives from it.
"""

from __future__ import annotations


class UserError(ValueError):
    """An error whose message tells the user what to change; never a bug."""
