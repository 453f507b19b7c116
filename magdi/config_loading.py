"""Reading a configuration, one way for every part of magdi: pydantic models, typed by their fields.

    cfg = load(TrainConfig, "configs/trainer/tiny-cpu.yaml", ["optim.lr=1e-4"], env_prefix="MAGDI_TRAIN_")
    panel = validate(PanelConfig, read_yaml("configs/panels/simulated.yaml", what="panel file"), what="panel config")
    api = load_settings(ApiSettings)      # a service: pydantic-settings reads MAGDI_API_*

Sources, lowest to highest precedence: the model's defaults, a YAML file, environment variables
(`<prefix>SECTION__FIELD=value`) and `section.field=value` overrides (`--set` on the command line).
A field that exists in one section only may be named alone (`--set lr=1e-4`). A value given as text
is typed by the field it sets (pydantic's `TypeAdapter` of the field's annotation): `1e-4` is a
float where the field is a float, `q_proj,o_proj` a list where it is a list, `null` or `none`
nothing where the field may be empty. Unknown keys are refused everywhere, with the closest known
key (`difflib`) spelled out in full, because a typo must not silently run with a default.

Every problem raises `error` (a `magdi.errors.UserError`, so the CLI exits 2) listing each
offending key, and the file or variable it came from.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings

from magdi.errors import UserError

M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", bound=BaseSettings)
Location = tuple[str | int, ...]


class ConfigError(UserError):
    """A configuration that cannot be used; the message names the key and where it came from."""


def dotted(loc: Location) -> str:
    """A location as the key a user writes: `optim.lr`, `agents.0.model`."""
    return ".".join(str(part) for part in loc)


def quoted(loc: Location) -> str:
    return repr(dotted(loc))


def suggest(key: str | int, known: Sequence[str], *, within: Location = ()) -> str:
    """`; did you mean 'optim.lr'?` (the closest known key, spelled in full), else the known keys."""
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {quoted(within + (close[0],))}?"
    return f"; known keys{' of ' + quoted(within) if within else ''}: {', '.join(known)}" if known else ""


# -- reading ---------------------------------------------------------------------------------------
def read_yaml(path: str | Path, *, what: str = "config file", error: type[UserError] = ConfigError) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is an empty one)."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read the {what} ({exc})") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise error(f"{path}: the top level of a {what} must be a mapping of keys, got {type(loaded).__name__}")
    return loaded


def validate(model: type[M], data: Any, *, source: str = "config", what: str = "configuration",
             error: type[UserError] = ConfigError, label: Callable[[Location], str] = quoted) -> M:
    """`model` from plain data; `error` listing every problem by key (`label` renders a key's location)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(describe_errors(model, exc, source=source, what=what, label=label)) from None


def describe_errors(model: type[BaseModel], exc: ValidationError, *, source: str, what: str,
                    label: Callable[[Location], str] = quoted) -> str:
    """One line per problem, each naming its key; an unknown key comes with the closest known one."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            known = fields_at(model, loc[:-1])
            lines.append(f"  {label(loc)}: unknown key{suggest(loc[-1], known, within=loc[:-1])}")
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        if "got " not in message and not isinstance(err.get("input"), dict | list) and "input" in err:
            message += f", got {err['input']!r}"
        lines.append(f"  {label(loc) if loc else '(top level)'}: {message}")
    return f"{source}: invalid {what}\n" + "\n".join(lines)


# -- the shape of a model --------------------------------------------------------------------------
def unwrap_optional(annotation: Any) -> Any:
    """The model or list inside `X | None` / `Annotated[X, ...]`."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (types.UnionType, typing.Union):
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                return annotation
            annotation = inner[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def fields_at(model: type[BaseModel], loc: Location) -> list[str]:
    """The field names of the (sub)model at `loc` (list indices step into the items); [] if none."""
    current: Any = model
    for part in loc:
        current = unwrap_optional(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            if typing.get_origin(current) is not list or not args:
                return []
            current = args[0]
        elif _is_model(current) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return []
    current = unwrap_optional(current)
    return list(current.model_fields) if _is_model(current) else []


def sections(model: type[BaseModel]) -> dict[str, list[str]]:
    """Section name -> its field names (the fields of `model` that are models themselves)."""
    return {name: list(unwrap_optional(f.annotation).model_fields) for name, f in model.model_fields.items()
            if _is_model(unwrap_optional(f.annotation))}


def known_keys(model: type[BaseModel]) -> list[str]:
    """Every key an override may set: top-level fields and `section.field`."""
    keys = list(model.model_fields)
    for section, names in sections(model).items():
        keys += [f"{section}.{name}" for name in names]
    return keys


def annotation_of(model: type[BaseModel], key: str, *, origin: str,
                  error: type[UserError] = ConfigError) -> Any:
    """The type of the field `key` (dotted) names; `error` with the closest known key if none."""
    current: Any = model
    parts = tuple(key.split("."))
    for depth, part in enumerate(parts):
        current = unwrap_optional(current)
        if not _is_model(current) or part not in current.model_fields:
            raise error(f"{origin}: unknown key {key!r}{_closest(model, key, parts[:depth])}")
        current = current.model_fields[part].annotation
    return current


def _closest(model: type[BaseModel], key: str, parent: Location) -> str:
    """The known key closest to `key` (a bare name is compared with the fields of every section),
    else the keys of the deepest section it did name."""
    keys = [k for k in known_keys(model) if k not in sections(model)]  # a section is no value to set
    candidates = {k: k for k in keys} if "." in key else {k.rsplit(".", 1)[-1]: k for k in reversed(keys)}
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {candidates[close[0]]!r}?"
    return suggest("", fields_at(model, parent), within=parent)


def resolve_key(model: type[BaseModel], key: str, *, origin: str, error: type[UserError] = ConfigError) -> str:
    """A bare field name -> `section.field` when exactly one section has it."""
    if "." in key or key in model.model_fields:
        return key
    owners = [section for section, names in sections(model).items() if key in names]
    if len(owners) > 1:
        raise error(f"{origin}: {key!r} is ambiguous; use {' or '.join(f'{s}.{key}' for s in owners)}")
    return f"{owners[0]}.{key}" if owners else key


def env_names(model: type[BaseModel], prefix: str) -> set[str]:
    """Every environment variable `load(model, env_prefix=prefix)` accepts."""
    nested = sections(model)
    names = {f"{prefix}{name.upper()}" for name in model.model_fields if name not in nested}
    counts: dict[str, int] = {}
    for section, fields in nested.items():
        for name in fields:
            names.add(f"{prefix}{section.upper()}__{name.upper()}")
            counts[name] = counts.get(name, 0) + 1
    return names | {f"{prefix}{name.upper()}" for name, n in counts.items() if n == 1}


# -- values given as text --------------------------------------------------------------------------
def typed_value(text: str, annotation: Any) -> Any:
    """`text` as the field's type wants it; the text parsed as YAML when no reading fits (the model's
    validation then names the key and what it expected)."""
    try:
        parsed = yaml.safe_load(text) if text else text
    except yaml.YAMLError:
        parsed = text
    readings = [parsed, text]
    if text.strip().lower() == "none":
        readings.append(None)
    if typing.get_origin(unwrap_optional(annotation)) is list and isinstance(parsed, str):
        readings.append([item.strip() for item in text.split(",") if item.strip()])
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    for reading in readings:
        try:
            return adapter.validate_python(reading)
        except ValidationError:
            continue
    return parsed


def _assign(data: dict[str, Any], key: str, value: Any, *, origin: str, error: type[UserError]) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise error(f"{origin}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def set_value(model: type[BaseModel], data: dict[str, Any], key: str, text: str, *, origin: str,
              error: type[UserError] = ConfigError) -> None:
    """data[key] = text, typed by the field `key` names (a bare field name is found in its section)."""
    key = resolve_key(model, key, origin=origin, error=error)
    annotation = annotation_of(model, key, origin=origin, error=error)
    _assign(data, key, typed_value(text, annotation), origin=origin, error=error)


def apply_overrides(model: type[BaseModel], data: dict[str, Any], overrides: Sequence[str], *,
                    error: type[UserError] = ConfigError) -> None:
    """`key=value` items (`--set`), in order."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise error(f"override {item!r}: expected key=value, e.g. optim.lr=1e-4")
        set_value(model, data, key.strip(), value, origin=f"override {item!r}", error=error)


def apply_env(model: type[BaseModel], data: dict[str, Any], env: Mapping[str, str], prefix: str, *,
              error: type[UserError] = ConfigError) -> None:
    """`<prefix>SECTION__FIELD` (or `<prefix>FIELD`) variables; any other name with the prefix is refused."""
    for name, value in sorted(env.items()):
        if not name.startswith(prefix):
            continue
        key = name[len(prefix):].lower().replace("__", ".")
        set_value(model, data, key, value, origin=f"environment {name}", error=error)


# -- the two entry points --------------------------------------------------------------------------
def load(model: type[M], path: str | Path | None = None, overrides: Sequence[str] = (), *,
         env: Mapping[str, str] | None = None, env_prefix: str | None = None, what: str = "config",
         error: type[UserError] = ConfigError, label: Callable[[Location], str] = quoted) -> M:
    """Defaults < YAML file < `<env_prefix>*` environment (when a prefix is given) < `key=value` overrides."""
    data = read_yaml(path, what=f"{what} file", error=error) if path is not None else {}
    if env_prefix is not None:
        apply_env(model, data, os.environ if env is None else env, env_prefix, error=error)
    apply_overrides(model, data, overrides, error=error)
    return validate(model, data, source=str(path) if path is not None else "config", what=what, error=error,
                    label=label)


def load_settings(settings: type[S], *, check_env_names: bool = True, **values: Any) -> S:
    """A service's settings (pydantic-settings reads its `MAGDI_*` environment), with the same errors:
    each bad variable named, and an unknown one under the service's own prefix refused with the
    closest known name (`check_env_names`; off for settings on the shared `MAGDI_` prefix)."""
    prefix = str(settings.model_config.get("env_prefix") or "")
    if check_env_names and prefix:
        known = {f"{prefix}{name}".upper() for name in settings.model_fields}
        for name in sorted(os.environ):
            if name.upper().startswith(prefix.upper()) and name.upper() not in known:
                raise ConfigError(f"environment {name}: unknown setting{suggest(name.upper(), sorted(known))}")
    try:
        return settings(**values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            name = f"{prefix}{'__'.join(str(p) for p in loc)}".upper() if loc else settings.__name__
            lines.append(f"  {name}: {str(err['msg']).removeprefix('Value error, ')}")
        raise ConfigError(f"invalid {settings.__name__} (environment {prefix}*)\n" + "\n".join(lines)) from None
