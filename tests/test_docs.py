"""Every CLI command has help text, and every option bound to a setting shows its env var (as in sqlite-utils' test_docs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.main import get_command

from pipelines.settings import ENV_VARS
from scripts.cli import app


def _commands(group: TyperGroup, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        yield path, cmd
        if isinstance(cmd, TyperGroup):
            yield from _commands(cmd, path)


ROOT = get_command(app)
assert isinstance(ROOT, TyperGroup)
COMMANDS = list(_commands(ROOT))


def test_there_are_commands() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"kafka up", "kafka down", "kafka status", "produce"} <= names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_has_help_and_env_vars(path: tuple[str, ...], cmd: typer.core.TyperCommand) -> None:
    assert (cmd.help or "").strip(), f"`rewind {' '.join(path)}` has no help text"
    for param in cmd.params:
        if param.name in ENV_VARS:
            assert isinstance(param, TyperOption) and param.envvar == ENV_VARS[param.name] and param.show_envvar, (
                f"--{param.name} of `rewind {' '.join(path)}` must show env var {ENV_VARS[param.name]}"
            )
        if not getattr(param, "help", None) and param.name != "help":
            pytest.fail(f"option {param.name} of `rewind {' '.join(path)}` has no help")
