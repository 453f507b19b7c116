"""`magdi teachers serve`: the SIMULATED teacher panel, a part of its own (`services/teachers`).

The command and its options are defined once, in `services.teachers.cli` (built from the panel's
config model); this forwards every argument there, ``--help`` included. The panel is not in the
generator's image, so where it is not installed the command says how to get it instead of vanishing.
"""

from __future__ import annotations

import typer
from rich.markup import escape

from magdi.cli.common import fail
from magdi.cli.parts import is_installed

app = typer.Typer(no_args_is_help=True, help="The SIMULATED teacher panel (replays recorded outputs).")

PACKAGE = "services.teachers"


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
def serve(ctx: typer.Context) -> None:
    """Serve the SIMULATED OpenAI-compatible teacher panel; `magdi teachers serve --help` lists its options."""
    if not is_installed(PACKAGE):  # also where `services` itself is absent (the trainer image)
        raise fail(escape(f"the simulated teacher panel ({PACKAGE}) is not installed here: pip install "
                          "'.[teachers]' in a source tree (docker compose runs it as the `teachers` service)"))
    from services.teachers.cli import main

    main(ctx.args, prog_name="magdi teachers serve")
