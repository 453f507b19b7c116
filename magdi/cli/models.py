"""`magdi models list | pull | path`: real small models shipped in PyPI packages (see magdi.models)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from magdi import models
from magdi.cli.common import console, user_errors

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """The packaged models, their upstream and license, and where each is pulled (if it is)."""
    rows = models.list_models()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table(title=f"packaged models (cache: {models.models_dir()})")
    table.add_column("name", no_wrap=True)
    for column in ("upstream", "license", "chat", "pulled"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["hub_id"], row["license"], "yes" if row["chat_template"] else "no",
                      row["path"] or "not pulled")
    console.print(table)


@app.command()
def pull(
    name: str = typer.Argument(..., help="a name from `magdi models list`"),
    force: bool = typer.Option(False, "--force", help="download and convert again even if pulled"),
) -> None:
    """Download the model's pinned package(s) from the package index and convert it, once."""
    with user_errors():
        models.spec(name)
        already = models.pulled_path(name) is not None and not force
        path = models.pull(name, force=force)
    err = typer.style("already pulled: " if already else "pulled: ", fg=typer.colors.CYAN)
    typer.echo(err + name, err=True)
    typer.echo(str(path))


@app.command()
def path(name: str = typer.Argument(..., help="a pulled packaged model")) -> None:
    """Print the model's directory (for `from_pretrained`); fails if it is not pulled."""
    with user_errors():
        models.spec(name)
        typer.echo(models.resolve(name, pull_missing=False))


@app.command()
def serve(
    port: int = typer.Option(8902, help="port on 127.0.0.1 (configs/panels/local-hf.yaml uses 8902)"),
    detach: bool = typer.Option(False, "--detach", help="run in the background; `magdi models stop` stops it"),
) -> None:
    """Serve packaged models as real local teachers with HF's `transformers serve` (OpenAI-compatible)."""
    from magdi.model_server import ModelServer, start_detached

    with user_errors():
        if detach:
            info = start_detached(port)
            typer.echo(f"transformers serve on {info['base_url']} (pid {info['pid']}, log {info['log']}); "
                       "`magdi models stop` stops it")
            return
        with ModelServer(port) as server:
            typer.echo(f"transformers serve on {server.base_url} (pid {server.pid}, log {server.log_file}); Ctrl-C stops it")
            try:
                server.proc.wait()
            except KeyboardInterrupt:
                pass


@app.command()
def stop() -> None:
    """Stop the server `magdi models serve --detach` started (by its recorded pid)."""
    from magdi.model_server import stop_detached

    pid = stop_detached()
    typer.echo(f"stopped pid {pid}" if pid else "no model server running")
