"""The `magdi` commands that live in the services and the trainer, and what happens where one is absent.

Every image installs the core CLI, but each holds only its own part: the API image has no
`services/generator`, the generator image no trainer. A part that is absent must not make its
commands vanish from `magdi --help` (a user would think the command does not exist), nor may a
broken import inside a part that is present be mistaken for absence (that hides a bug). So absence
is decided from where Python looks for the package, not by catching the import.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

import typer
from rich.markup import escape

from magdi.cli.common import fail


def is_installed(module: str) -> bool:
    """True when `module` and every package above it can be found (nothing is executed but parents)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError as exc:  # a parent package is absent; any other error is a bug and propagates
        if exc.name and module.startswith(exc.name):
            return False
        raise


@dataclass(frozen=True)
class Part:
    """A module with a `register(app)` function, the extra that installs it, and its command names."""

    module: str
    extra: str
    commands: tuple[str, ...]

    def register(self, app: typer.Typer) -> None:
        if is_installed(self.module):
            importlib.import_module(self.module).register(app)
            return
        for name in self.commands:
            app.command(name, help=f"(not in this installation: needs the {self.extra} part)",
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(
                self._absent(name))

    def _absent(self, name: str):  # noqa: ANN202 - a typer callback
        package = self.module.rsplit(".", 1)[0]

        def absent() -> None:
            raise fail(escape(f"`magdi {name}` needs {package}, which is not in this installation (this image "
                              f"or environment holds another part): pip install '.[{self.extra}]' in a source "
                              "tree, or use the image that runs it"))

        return absent
