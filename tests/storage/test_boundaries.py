"""Only :mod:`datastore` touches tables: no module outside it imports a ``sqlalchemy.Table``
(or the ``MetaData`` holding them), declares one, or imports the old ``operator_engine.db``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).parents[2]
#: the code outside the storage package (tests may look at tables directly)
PACKAGES = ("tidewater", "provider", "operator_engine", "contracts_abi", "bench")
#: SQL plumbing that belongs to the repositories, never to their callers
PLUMBING = {"reading", "raw_reading", "PreparedRead", "PreparedWrite", "thread_cursor"}


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _is_table(module: str, name: str) -> bool:
    value = getattr(importlib.import_module(module), name, None)
    return isinstance(value, sa.Table | sa.MetaData)


def findings(path: Path, root: Path = ROOT) -> list[str]:
    """What ``path`` does that only the storage package may do, one line each."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("operator_engine.db", "datastore.schema"):
                    found.append(f"{where}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [alias.name for alias in node.names]
            if node.module in ("operator_engine.db", "datastore.schema"):
                found.append(f"{where}: imports from {node.module}")
            elif node.module == "operator_engine" and "db" in names:
                found.append(f"{where}: imports operator_engine.db")
            elif node.module == "sqlalchemy" and {"Table", "MetaData"} & set(names):
                found.append(f"{where}: imports sqlalchemy's Table/MetaData")
            elif node.module.startswith("datastore"):
                for name in names:
                    if name in PLUMBING or _is_table(node.module, name):
                        found.append(f"{where}: imports {node.module}.{name}")
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("Table", "MetaData"):
                found.append(f"{where}: declares a {called}")
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_table_outside_the_storage_package(path: Path) -> None:
    assert findings(path) == []


def test_the_check_sees_each_kind_of_access(tmp_path: Path) -> None:
    bad = tmp_path / "sample.py"
    text = (
        "import sqlalchemy as sa\n"
        "from operator_engine import db\n"
        "from datastore.schema import jobs\n"
        "from datastore.engine import reading\n"
        "from sqlalchemy import Table\n"
        "t = sa.Table('x', sa.MetaData())\n"
    )
    bad.write_text(text)
    assert [line.split(": ", 1)[1] for line in findings(bad, tmp_path)] == [
        "imports operator_engine.db",
        "imports from datastore.schema",
        "imports datastore.engine.reading",
        "imports sqlalchemy's Table/MetaData",
        "declares a Table",
        "declares a MetaData",
    ]
