"""The one command line of the SIMULATED teacher panel: ``python -m services.teachers``.

    python -m services.teachers --solutions data/gsm8k/model_solutions.jsonl \
        --questions data/gsm8k/test.jsonl --port 8901 --error-rate 0.1 --alias gpt-4=175b_verification

`magdi teachers serve` forwards its arguments here, so both take the same options. Every field of
`PanelSimConfig` is one option, built from the model: its name (the field name in kebab case, or the
field's ``json_schema_extra["flag"]``), its type and its description come from there, so a knob added
to the config is on the command line with nothing else to edit. Options override ``--config`` (a
PanelSimConfig JSON file, which `TeacherPanelServer` writes); the merged settings are validated by the
model. Only the server's own options (config file, host, port, logging) are written out here.

Bad options or settings are usage errors (click's message, exit 2, no traceback). This imports only
the core's `magdi.errors`, not the `magdi` CLI, whose package registers every service's commands: the
panel's image holds the core and this package alone.
"""

from __future__ import annotations

import inspect
import json
import logging
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from magdi.config_loading import unwrap_optional
from magdi.errors import UserError
from services.teachers.config import PanelSimConfig

PROG = "python -m services.teachers"
KEYWORD = inspect.Parameter.KEYWORD_ONLY

# The server's own options; everything else is a PanelSimConfig field (`config_options`).
SERVER_OPTIONS = [
    inspect.Parameter("config", KEYWORD, annotation=Path | None, default=typer.Option(
        None, "--config", exists=True, dir_okay=False, help="PanelSimConfig JSON file; options override its values")),
    inspect.Parameter("host", KEYWORD, annotation=str, default=typer.Option("127.0.0.1", "--host")),
    inspect.Parameter("port", KEYWORD, annotation=int, default=typer.Option(8901, "--port")),
    inspect.Parameter("log_level", KEYWORD, annotation=Literal["debug", "info", "warning", "error"],
                      default=typer.Option("info", "--log-level")),
    inspect.Parameter("access_log", KEYWORD, annotation=bool,
                      default=typer.Option(False, "--access-log", help="log every request")),
]


def flag(name: str, field: FieldInfo) -> str:
    """The option that sets config field `name`."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("flag") or "--" + name.replace("_", "-"))


def _value_type(field: FieldInfo) -> Any:
    """The field's type without `None` (every option defaults to None: 'not given, keep the file's')."""
    return unwrap_optional(field.annotation)


def _is_nested_dict(kind: Any) -> bool:
    return typing.get_origin(kind) is dict and typing.get_args(kind)[1] is not str


def config_option(name: str, field: FieldInfo) -> inspect.Parameter:
    """The option of one config field; its type decides how the value is written on the command line."""
    kind, option = _value_type(field), flag(name, field)
    help_text, default = field.description or "", field.get_default(call_default_factory=True)
    declared: dict[str, Any] = {}
    if kind is bool:
        annotation, option = bool | None, f"{option}/--no-{option.removeprefix('--')}"
    elif kind in (int, float, str):
        annotation = kind | None
    elif kind is Path:
        annotation, declared = Path | None, {"exists": True, "dir_okay": False}
    elif typing.get_origin(kind) is list:
        annotation, help_text, declared = list[str] | None, f"{help_text} (repeat the option)", {"metavar": "NAME"}
    elif typing.get_origin(kind) is dict:
        form = "NAME.KNOB=VALUE" if _is_nested_dict(kind) else "NAME=VALUE"
        annotation, help_text, declared = list[str] | None, f"{help_text} (repeat the option)", {"metavar": form}
    else:
        raise TypeError(f"PanelSimConfig.{name}: no command-line form for {field.annotation}")
    if field.is_required():
        help_text += " [required unless in --config]"
    elif default not in (None, {}, []):
        help_text += f" [default: {default}]"
    return inspect.Parameter(name, KEYWORD, annotation=annotation,
                             default=typer.Option(None, option, help=help_text, **declared))


def config_options() -> list[inspect.Parameter]:
    return [config_option(name, field) for name, field in PanelSimConfig.model_fields.items()]


def _pairs(option: str, items: Sequence[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UserError(f"{option} expects NAME=VALUE, got {item!r}")
        pairs.append((key, value))
    return pairs


def build_config(config_file: Path | None, given: dict[str, Any]) -> PanelSimConfig:
    """The settings: the JSON file (if any), then every option that was given on top of it."""
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = json.loads(config_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"--config {config_file}: not a JSON object ({exc})") from None
        if not isinstance(data, dict):
            raise UserError(f"--config {config_file}: not a JSON object")
    for name, field in PanelSimConfig.model_fields.items():
        value, kind, option = given.get(name), _value_type(field), flag(name, field)
        if value is None or value == []:
            continue
        if _is_nested_dict(kind):  # per_model: NAME.KNOB=VALUE
            merged = {key: dict(knobs) for key, knobs in data.get(name, {}).items()}
            for key, knob_value in _pairs(option, value):
                target, dot, knob = key.rpartition(".")  # the knob is last: served names may hold dots
                if not dot or not target:
                    raise UserError(f"{option} expects NAME.KNOB=VALUE, got {key}={knob_value!r}")
                merged.setdefault(target, {})[knob] = knob_value
            data[name] = merged
        elif typing.get_origin(kind) is dict:
            data[name] = {**data.get(name, {}), **dict(_pairs(option, value))}
        else:
            data[name] = value
    missing = [flag(name, field) for name, field in PanelSimConfig.model_fields.items()
               if field.is_required() and name not in data]
    if missing:
        raise UserError(f"missing {', '.join(missing)} (an option, or its field in --config)")
    return PanelSimConfig.model_validate(data)


def serve(ctx: typer.Context, **options: Any) -> None:
    """Serve the SIMULATED OpenAI-compatible teacher panel (replayed GSM8K outputs, fault injection)."""
    server = {param.name: options.pop(param.name) for param in SERVER_OPTIONS}
    try:
        config = build_config(server["config"], options)
    except (UserError, ValidationError) as exc:
        ctx.fail(str(exc))  # a usage error: the message, exit 2
    logging.basicConfig(level=server["log_level"].upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    typer.secho("SIMULATED teacher panel: replayed outputs, not a language model", fg="yellow", bold=True)
    from services.teachers.server import serve as run  # imported late: uvicorn/fastapi are heavy

    run(config, server["host"], server["port"], log_level=server["log_level"], access_log=server["access_log"])


serve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
     *SERVER_OPTIONS, *config_options()])

app = typer.Typer(add_completion=False, rich_markup_mode=None)
app.command()(serve)


def main(argv: Sequence[str] | None = None, prog_name: str = PROG) -> None:
    """Run the command line (exits with its status): `python -m services.teachers`, `magdi teachers serve`."""
    typer.main.get_command(app).main(args=list(argv) if argv is not None else None, prog_name=prog_name)
