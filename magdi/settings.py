"""Where to find Neo4j, read from the environment.

`MAGDI_NEO4J_URI` (+ `MAGDI_NEO4J_USER` / `MAGDI_NEO4J_PASSWORD`) points everything at an existing
server. Without it, the managed local server's credentials file under `MAGDI_HOME` is used, which
`magdi db start` writes; this is the embedded default of the demo.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from magdi.config_loading import load_settings
from magdi.errors import UserError


def default_home() -> Path:
    return Path.home() / ".local" / "share" / "magdi"


class Neo4jSettings(BaseSettings):
    """Connection settings shared by the CLI, the generator, the API and the trainer."""

    model_config = SettingsConfigDict(env_prefix="MAGDI_", extra="ignore")

    neo4j_uri: str | None = Field(default=None, description="bolt/neo4j URI of an existing server")
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr | None = None
    neo4j_database: str | None = Field(default=None, description="database name; None = server default")
    home: Path = Field(default_factory=default_home, description="state dir of the managed local server")
    query_timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)

    @property
    def managed_dir(self) -> Path:
        return self.home / "neo4j"

    @property
    def credentials_file(self) -> Path:
        return self.managed_dir / "credentials.json"

    def resolve(self) -> tuple[str, str, str | None]:
        """(uri, user, password): the configured server, else the managed one's credentials.

        Raises `Neo4jNotConfigured` with the command that fixes it.
        """
        if self.neo4j_uri:
            pw = self.neo4j_password.get_secret_value() if self.neo4j_password else None
            return self.neo4j_uri, self.neo4j_user, pw
        try:
            creds = json.loads(self.credentials_file.read_text())
        except FileNotFoundError:
            raise Neo4jNotConfigured(
                "no Neo4j configured: run `magdi db start` (managed local server) "
                "or set MAGDI_NEO4J_URI / MAGDI_NEO4J_USER / MAGDI_NEO4J_PASSWORD"
            ) from None
        return creds["uri"], creds.get("user", "neo4j"), creds.get("password")


class Neo4jNotConfigured(UserError, RuntimeError):
    pass


@lru_cache
def get_settings() -> Neo4jSettings:
    # MAGDI_ is every part's prefix, so other parts' variables are not unknown settings here
    return load_settings(Neo4jSettings, check_env_names=False)
