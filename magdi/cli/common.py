"""Helpers shared by CLI commands: one console, and errors that exit non-zero with a message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console

from magdi.errors import UserError
from magdi.store.graph_store import DebateFilter, GraphStore
from magdi.store.job_names import UnknownJob, resolve_job_id
from magdi.store.open import open_store

console = Console()
err_console = Console(stderr=True)

# Errors that are the user's to fix: print the message, no traceback, exit 2. Anything else is a bug
# and keeps its traceback, so that a bug never reads like bad input. A pydantic ValidationError here
# comes from validating the user's file or options (configs, panels, specs).
USER_ERRORS: tuple[type[Exception], ...] = (UserError, ValidationError, FileNotFoundError)


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except UnknownJob as exc:  # a lookup that found nothing, like `magdi jobs status NAME`: exit 1
        raise fail(str(exc), code=1) from None
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None


@contextmanager
def store_or_exit() -> Iterator[GraphStore]:
    with user_errors(), open_store() as store:
        yield store


def debate_filter(store: GraphStore, *, dataset: str | None = None, job: str | None = None) -> DebateFilter:
    """A filter from CLI options; `job` is a job name or id, and an unknown one is an error listing the jobs."""
    with user_errors():
        return DebateFilter(dataset=dataset, job_id=resolve_job_id(store, job) if job else None)
