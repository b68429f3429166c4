"""Configuration from environment variables into frozen dataclasses.

Every setting is declared once, with its variable name, default and meaning; the loader, the
`.env.example` file, the README table and GetConfig are all derived from those declarations.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pantree_common.errors import ConfigError

_META_KEY = "pantree_setting"
T = TypeVar("T")


@dataclass(frozen=True)
class SettingInfo:
    """How one dataclass field is read from the environment."""

    env_var: str
    description: str
    secret: bool = False


@dataclass(frozen=True)
class Setting:
    """A declared setting with its value, for listings."""

    env_var: str
    value: str
    default: str
    description: str
    secret: bool


def setting(env_var: str, default: Any, description: str, *, secret: bool = False) -> Any:
    """Declare a dataclass field read from `env_var`, falling back to `default`."""
    info = SettingInfo(env_var=env_var, description=description, secret=secret)
    return field(default=default, metadata={_META_KEY: info})


def read_file(env_var: str, path: str) -> bytes:
    """The content of the file setting `env_var` names (a mounted secret, a certificate); the
    error names the setting and the path, never the content."""
    resolved = Path(path).expanduser()
    try:
        return resolved.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"{env_var} {str(resolved)!r} cannot be read: {error.strerror or error}"
        ) from None


def secret_value(value: str, path: str, file_env_var: str) -> str:
    """A secret given inline, else read from the file `file_env_var` names, else ""."""
    if value or not path:
        return value
    return read_file(file_env_var, path).decode("utf-8").strip()


def _parse(raw: str, kind: type, env_var: str) -> Any:
    text = raw.strip()
    if kind is bool:
        lowered = text.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{env_var} must be true or false, got {raw!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{env_var} must be an integer, got {raw!r}") from None
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{env_var} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{env_var} must be a finite number, got {raw!r}")
        return value
    return raw


_KINDS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def _field_kind(f: dataclasses.Field[Any]) -> type:
    annotation = f.type if isinstance(f.type, str) else f.type.__name__
    return _KINDS.get(str(annotation), str)


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build `cls` from the environment; nested dataclass fields are loaded recursively."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        info = f.metadata.get(_META_KEY)
        if info is None:
            nested = f.default_factory
            if nested is dataclasses.MISSING:
                raise TypeError(f"{cls.__name__}.{f.name} is neither a setting nor nested config")
            values[f.name] = load(nested, env)  # type: ignore[arg-type]
            continue
        if info.env_var in env:
            values[f.name] = _parse(env[info.env_var], _field_kind(f), info.env_var)
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def settings(config: Any) -> Iterator[Setting]:
    """Yield every declared setting of a config object (nested ones included)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        info = f.metadata.get(_META_KEY)
        if info is None:
            yield from settings(value)
            continue
        yield Setting(
            env_var=info.env_var,
            value="<secret>" if info.secret and value else _render(value),
            default=_render(f.default),
            description=info.description,
            secret=info.secret,
        )


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a `.env` file: KEY=VALUE lines, `#` comments, optional quotes around values."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.removeprefix("export ").partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def environment(dotenv: Path | None = Path(".env")) -> dict[str, str]:
    """The process environment, with a `.env` file's values underneath (real env vars win)."""
    merged: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        merged.update(read_dotenv(dotenv))
    merged.update(os.environ)
    return merged


def env_example(config: Any) -> str:
    """`.env.example`: every setting commented with its meaning, set to its default."""
    lines = ["# Pantree settings: copy to .env (real environment variables win) and edit.", ""]
    for item in settings(config):
        lines += [f"# {item.description}", f"{item.env_var}={item.default}", ""]
    return "\n".join(lines)


def markdown_table(config: Any) -> str:
    """The README's configuration table."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    rows += [
        f"| `{s.env_var}` | `{s.default}` | {s.description} |"
        if s.default
        else f"| `{s.env_var}` | (empty) | {s.description} |"
        for s in settings(config)
    ]
    return "\n".join(rows) + "\n"
