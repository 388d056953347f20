"""A bad setting, from an option or from the environment, is one line naming the field and its env var."""

from __future__ import annotations

import pytest

from schemas.errors import ConfigError
from scripts.cli_common import build_settings


def test_bad_option_value_names_field_and_env_var() -> None:
    with pytest.raises(ConfigError, match=r"^invalid kafka_port \(REWIND_KAFKA_PORT\): Input should be greater than or equal to 1$"):
        build_settings(kafka_port=-5)


def test_bad_env_value_names_field_not_env_var_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWIND_LIVE_ROW_CACHE_ROWS", "0")
    with pytest.raises(ConfigError, match=r"^invalid live_row_cache_rows \(REWIND_LIVE_ROW_CACHE_ROWS\): "):
        build_settings()


def test_options_not_given_fall_back_to_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWIND_LIVE_ROW_CACHE_ROWS", "1234")
    assert build_settings(kafka_port=None).live_row_cache_rows == 1234
