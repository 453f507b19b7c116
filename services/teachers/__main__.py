"""``python -m services.teachers``: serve the SIMULATED teacher panel.

Settings come from ``--config`` (a PanelSimConfig JSON file) and/or flags; flags win. This is
also what `TeacherPanelServer` runs in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from services.teachers.config import PanelSimConfig

logger = logging.getLogger(__name__)



def numeric_knobs() -> dict[str, type]:
    """Every int/float setting of PanelSimConfig, each of which becomes a `--flag` of the same name.

    Read from the model so that a knob added there is on the command line too, with its description.
    """
    knobs: dict[str, type] = {}
    for name, field in PanelSimConfig.model_fields.items():
        kinds = set(get_args(field.annotation) or (field.annotation,)) - {type(None)}
        if kinds in ({int}, {float}):
            knobs[name] = kinds.pop()
    return knobs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.teachers",
        description="Serve a SIMULATED OpenAI-compatible teacher panel that replays recorded GSM8K solutions.",
    )
    parser.add_argument("--config", type=Path, help="PanelSimConfig JSON file; flags override its values")
    parser.add_argument("--solutions", dest="solutions_path", type=Path, help="gsm8k model_solutions.jsonl")
    parser.add_argument(
        "--questions", dest="questions_path", type=Path, help="gsm8k test.jsonl (line-aligned)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8901)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request")
    for name, kind in numeric_knobs().items():
        help_text = PanelSimConfig.model_fields[name].description
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, help=help_text)
    parser.add_argument(
        "--no-retry-after-header", dest="retry_after_header", action="store_false", default=None
    )
    parser.add_argument(
        "--model", dest="models", action="append", help="serve only this recorded model (repeat)"
    )
    parser.add_argument(
        "--alias",
        dest="aliases",
        action="append",
        metavar="NAME=MODEL",
        help="extra model name for a recorded model (repeat)",
    )
    parser.add_argument(
        "--down-model", dest="down_models", action="append", help="always answer 503 (repeat)"
    )
    return parser


def build_config(args: argparse.Namespace) -> PanelSimConfig:
    """Merge the JSON file (if any) with the flags that were given."""
    data: dict[str, Any] = json.loads(args.config.read_text(encoding="utf-8")) if args.config else {}
    for name in (
        "solutions_path",
        "questions_path",
        "retry_after_header",
        "models",
        "down_models",
        *numeric_knobs(),
    ):
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    if args.aliases:
        aliases = dict(data.get("aliases", {}))
        for item in args.aliases:
            name, sep, target = item.partition("=")
            if not sep or not name or not target:
                raise SystemExit(f"--alias expects NAME=MODEL, got {item!r}")
            aliases[name] = target
        data["aliases"] = aliases
    return PanelSimConfig.model_validate(data)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = build_config(args)
    except ValidationError as exc:
        raise SystemExit(f"invalid panel settings:\n{exc}") from None
    from services.teachers.server import serve  # imported late: uvicorn/fastapi are heavy

    serve(config, args.host, args.port, log_level=args.log_level, access_log=args.access_log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
