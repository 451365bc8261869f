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


def _configuration_table() -> dict[str, str]:
    """The README's configuration table: variable → default as written."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]*) \|", section, flags=re.M)
    return {name: default.strip() for name, default in rows}


def test_the_configuration_table_lists_every_setting_with_its_default() -> None:
    table = _configuration_table()
    assert set(table) == set(VARIABLES)
    for name, (default, _meaning) in VARIABLES.items():
        assert table[name] == default, f"{name}: README says {table[name]!r}, code {default!r}"


def test_every_variable_the_code_reads_is_a_setting() -> None:
    """Variable names passed to ``env.get``/``environ.get`` in the app shell and the
    settings are all in ``VARIABLES`` (a new one must be documented)."""
    read: set[str] = set()
    for path in (ROOT / "tidewater").rglob("*.py"):
        if "demo_assets" in path.parts:
            continue  # algorithm scripts read the container's variables
        text = path.read_text()
        read |= set(re.findall(r"(?:env|environ)(?:\.get\(|\[)\"([A-Z][A-Z0-9_]+)\"", text))
    foreign = {"DOCKER_HOST", "PROMETHEUS_MULTIPROC_DIR"}  # docker-py's and prometheus' own
    assert "NETWORK_URL" in read and "TIDEWATER_DEBIAN_MIRROR" in read  # the scan sees reads
    assert read - foreign - set(VARIABLES) == set()


def test_makefile_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target


def _layout_rows() -> list[tuple[list[str], str]]:
    section = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| `") or len(cells) < 2:
            continue
        rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[1]))
    return rows


def test_the_layout_section_matches_the_tree() -> None:
    """Every path the layout names exists, every module it names is in its row's package,
    and every top-level package and folder is named."""
    named: set[str] = set()
    for paths, what in _layout_rows():
        for path in paths:
            assert (ROOT / path).exists(), f"the layout names {path}, which does not exist"
            named.add(path.strip("/").split("/")[0])
        for module in re.findall(r"`([a-z_]+\.py)`", what):
            assert list((ROOT / paths[0]).rglob(module)), f"{paths[0]} has no {module}"
    top = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    top |= {"docs", "bench", "tests", "scripts"}
    assert "operator_engine" in top and top <= named, f"not in the layout: {sorted(top - named)}"
