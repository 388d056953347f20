"""Shared CLI plumbing: settings options that show their env var, and building the settings object."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError

from pipelines.settings import ENV_VARS, RewindSettings
from schemas.errors import ConfigError

__all__ = ["setting_option", "build_settings"]


def setting_option(field: str, help_text: str, *param_decls: str, **kwargs: Any) -> Any:
    """A typer option bound to settings field ``field``: default None (fall back to env/default), env var shown in --help."""
    return typer.Option(None, *param_decls, help=help_text, envvar=ENV_VARS[field], show_envvar=True, **kwargs)


def build_settings(**overrides: Any) -> RewindSettings:
    """The frozen settings: CLI overrides (None = not given) over env vars over defaults.

    A bad value becomes a one-line :class:`ConfigError` naming the env var.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return RewindSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        # A value read from the environment is reported under its env var name: name the field.
        field = next((name for name, var in ENV_VARS.items() if var == field), field)
        env = ENV_VARS.get(field, field)
        raise ConfigError(f"invalid {field} ({env}): {first['msg']}") from exc
