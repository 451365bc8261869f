"""The README's promises that code can check: its two commands and its configuration table."""

from __future__ import annotations

import re
from pathlib import Path

from tidewater.settings import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_first_screen_gives_exactly_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:40])
    commands = re.findall(r"^(make \w+)$", first_screen, flags=re.M)
    assert commands == ["make demo", "make test"]


def test_every_setting_is_in_the_configuration_table() -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in VARIABLES:
        assert f"`{name}`" in table, f"{name} missing from the README configuration table"


def test_makefile_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
