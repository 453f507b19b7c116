"""`magdi serve`: the REST API under uvicorn, against the configured Neo4j.

    magdi serve --host 127.0.0.1 --port 8000
    MAGDI_API_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') magdi serve --host 0.0.0.0

Only typer and the standard library are imported at module level (the core CLI imports this
module in every image); FastAPI and uvicorn load when the command runs.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command()(serve)


def is_loopback(host: str) -> bool:
    """Only this machine can connect: `localhost` or a loopback address (not 0.0.0.0 or a LAN address)."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    host: str = typer.Option("127.0.0.1", help="interface to bind (0.0.0.0 in a container)"),
    port: int = typer.Option(8000, min=1, max=65535),
    log_level: str = typer.Option("info", help="debug | info | warning | error"),
) -> None:
    """Start the REST API (OpenAPI docs at /docs, viewer at /viewer/) with JSON logs on stderr."""
    import uvicorn

    from magdi.config_loading import ConfigError
    from magdi.settings import Neo4jNotConfigured
    from services.api.deps import get_settings
    from services.api.main import create_app
    from services.api.observability import configure_logging

    try:
        settings = get_settings()
        settings.neo4j.resolve()
    except (ConfigError, Neo4jNotConfigured) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if settings.insecure_dev and settings.token is None and not is_loopback(host):
        typer.echo(f"error: MAGDI_API_INSECURE_DEV opens every endpoint without a token; it is refused on a "
                   f"non-loopback address ({host}). Bind 127.0.0.1, or set MAGDI_API_TOKEN", err=True)
        raise typer.Exit(2)
    if settings.token is None and not settings.insecure_dev:
        typer.echo("warning: MAGDI_API_TOKEN is not set: write endpoints, imports and Cypher answer 403", err=True)
    configure_logging(log_level)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, log_level=log_level,
                access_log=False, server_header=False, proxy_headers=False)
