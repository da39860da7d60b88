"""The docs explain every public name and every POSTHOG_*/OBS_* variable."""

from __future__ import annotations

import re
from pathlib import Path

import obs
from obs._config import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _all_docs() -> str:
    return "\n".join(p.read_text() for p in DOCS.glob("*.md"))


def test_every_setting_and_env_var_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    for name, field in Settings.model_fields.items():
        assert f"`{field.validation_alias}`" in text, field.validation_alias
        assert f"`{name}`" in text, name


def test_every_env_var_read_by_the_code_is_documented() -> None:
    root = Path(obs.__file__).parent
    code = "\n".join(p.read_text() for p in root.rglob("*.py"))
    used = set(re.findall(r'"((?:POSTHOG|OBS)_[A-Z_]+)"', code))
    assert used, "no variables found"
    text = _all_docs()
    assert not {v for v in used if f"`{v}`" not in text}


def test_every_public_name_is_documented() -> None:
    text = (DOCS / "api.md").read_text()
    for name in obs.__all__:
        assert f"obs.{name}" in text or f"`{name}`" in text, name
