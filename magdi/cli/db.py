"""`magdi db`: the managed local Neo4j (fetched from Maven Central, run from the user's cache)."""

from __future__ import annotations

from pathlib import Path

import typer

from magdi.cli.common import console, fail
from magdi.settings import get_settings

app = typer.Typer(no_args_is_help=True)


def _server(port: int | None = None):  # -> ManagedNeo4j
    from magdi.store.server import ManagedNeo4j

    return ManagedNeo4j(get_settings().managed_dir, auth=True, bolt_port=port)


@app.command()
def start(port: int | None = typer.Option(None, help="bolt port (default: a free one)")) -> None:
    """Download Neo4j if needed, start it on 127.0.0.1 and print how to connect."""
    from magdi.store.server import Neo4jInstallError, Neo4jStartError

    settings = get_settings()
    if settings.neo4j_uri:
        raise fail(f"MAGDI_NEO4J_URI is set ({settings.neo4j_uri}); unset it to use the managed server")
    try:
        with console.status("starting Neo4j (the first start downloads it from Maven Central)..."):
            info = _server(port).start()
    except (Neo4jInstallError, Neo4jStartError) as exc:
        raise fail(str(exc)) from None
    _print_info(info, settings.credentials_file)


@app.command()
def status() -> None:
    """Print the bolt URI and where the credentials are (for Neo4j Browser, cypher-shell, notebooks)."""
    settings = get_settings()
    if settings.neo4j_uri:
        console.print(f"using the configured server {settings.neo4j_uri} (MAGDI_NEO4J_URI)")
        return
    info = _server().status()
    if info is None:
        raise fail("the managed Neo4j is not running; start it with `magdi db start`", code=1)
    _print_info(info, settings.credentials_file)


@app.command()
def stop() -> None:
    """Stop the managed Neo4j (SIGTERM by pid, SIGKILL after a timeout)."""
    stopped = _server().stop()
    console.print("stopped" if stopped else "not running")


def _print_info(info, credentials_file) -> None:  # noqa: ANN001 - ServerInfo, imported lazily
    console.print(f"Neo4j running, pid {info.pid}")
    console.print(f"  bolt URI     {info.uri}")
    console.print(f"  user         {info.user}")
    console.print(f"  credentials  {credentials_file} (password inside, mode 0600)")
    console.print(f"  data         {info.home}")
    console.print(
        f"  connect      cypher-shell -a {info.uri} -u {info.user} -p \"$(python -c 'import json;print(json.load(open(\"{credentials_file}\"))[\"password\"])')\"",
        highlight=False,
    )


@app.command()
def backup(out: Path = typer.Option(..., "--out", help="backup file to write (JSON lines)")) -> None:
    """Back up every node and relationship (all properties) of the managed or configured database."""
    from magdi.cli.common import store_or_exit
    from magdi.store.backup import BackupError
    from magdi.store.backup import backup as run_backup

    with store_or_exit() as store:
        try:
            info = run_backup(store.driver, out, database=store.database)
        except BackupError as exc:
            raise fail(str(exc)) from None
    console.print(f"backed up {info.nodes} nodes and {info.relationships} relationships "
                  f"(schema version {info.schema_version}) to {out}")


@app.command()
def restore(
    file: Path = typer.Argument(..., help="a file written by `magdi db backup`"),
    wipe: bool = typer.Option(False, "--wipe", help="delete everything in the database first"),
) -> None:
    """Restore a backup into an empty database (or, with --wipe, replace what is there)."""
    from magdi.cli.common import store_or_exit
    from magdi.store.backup import BackupError
    from magdi.store.backup import restore as run_restore

    with store_or_exit() as store:
        try:
            info = run_restore(store.driver, file, database=store.database, wipe=wipe)
        except BackupError as exc:
            raise fail(str(exc)) from None
    console.print(f"restored {info.nodes} nodes and {info.relationships} relationships from {file}")
