"""Every ``# type: ignore`` names its error code and says why, on the same line."""

from __future__ import annotations

import io
import re
import tokenize
import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORE = re.compile(r"^#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def _checked_files() -> list[Path]:
    # Files that ruff temporarily skips (pyproject's [tool.ruff] extend-exclude) are skipped here too.
    skipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"].get("extend-exclude", [])
    files = []
    for package in ("pipelines", "state", "schemas", "scripts", "tests"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if not any(fnmatch(relative, pattern) for pattern in skipped):
                files.append(path)
    return files


def test_every_type_ignore_has_a_code_and_a_reason() -> None:
    """Scenario: every source and test file. We expect each `# type: ignore[code]` followed by `# reason`."""
    bare = []
    for path in _checked_files():
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            match = IGNORE.match(token.string) if token.type == tokenize.COMMENT else None
            if match and (not match["codes"] or not match["rest"].strip().startswith("#") or len(match["rest"].strip()) < 5):
                bare.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {token.line.strip()}")
    assert bare == [], "a `# type: ignore[code]` needs a reason after it: `# type: ignore[code]  # why`"
