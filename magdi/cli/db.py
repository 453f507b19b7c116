"""`magdi db`: the managed local Neo4j (fetched from Maven Central, run from the user's cache)."""

from __future__ import annotations

import json
import shlex
import shutil
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
def status(as_json: bool = typer.Option(False, "--json", help="one JSON object (no password) instead of text")) -> None:
    """Print the bolt URI and where the credentials are (for `magdi cypher`, the Python driver, notebooks)."""
    settings = get_settings()
    if settings.neo4j_uri:
        if as_json:
            typer.echo(json.dumps({"running": None, "configured": True, "uri": settings.neo4j_uri,
                                   "user": settings.neo4j_user}))
        else:
            typer.echo(f"using the configured server {settings.neo4j_uri} (MAGDI_NEO4J_URI)")
        return
    info = _server().status()
    if info is None:
        if as_json:
            typer.echo(json.dumps({"running": False, "configured": False}))
            raise typer.Exit(1)
        raise fail("the managed Neo4j is not running; start it with `magdi db start`", code=1)
    if as_json:
        typer.echo(json.dumps({"running": True, "configured": False, "pid": info.pid, "uri": info.uri,
                               "user": info.user, "credentials_file": str(settings.credentials_file),
                               "home": str(info.home)}))
        return
    _print_info(info, settings.credentials_file)


@app.command()
def stop() -> None:
    """Stop the managed Neo4j (SIGTERM by pid, SIGKILL after a timeout)."""
    stopped = _server().stop()
    console.print("stopped" if stopped else "not running")


def _print_info(info, credentials_file) -> None:  # noqa: ANN001 - ServerInfo, imported lazily
    """Plain lines, never wrapped (typer.echo, not rich), so that every command can be copied as printed.

    Names only tools that are there: `magdi cypher` and the Python driver always are; cypher-shell
    only when it is on PATH (the managed server is the Maven artifact, which ships no shell).
    """
    password = f"$(python3 -c \"import json, sys; print(json.load(open(sys.argv[1]))['password'])\" {shlex.quote(str(credentials_file))})"
    lines = [
        f"Neo4j running, pid {info.pid}",
        f"  bolt URI     {info.uri}",
        f"  user         {info.user}",
        f"  credentials  {credentials_file} (password inside, mode 0600)",
        f"  data         {info.home}",
        "every magdi command in this environment uses it; to query it:",
        '  magdi cypher "MATCH (d:Debate) RETURN d.dataset, count(*)"',
        "to point another shell or a notebook (MAGDI_NEO4J_*, or the neo4j driver) at it:",
        f"  export MAGDI_NEO4J_URI={info.uri} MAGDI_NEO4J_USER={info.user} MAGDI_NEO4J_PASSWORD=\"{password}\"",
    ]
    if shutil.which("cypher-shell"):
        lines.append(f"  cypher-shell -a {info.uri} -u {info.user} -p \"{password}\"")
    for line in lines:
        typer.echo(line)


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
