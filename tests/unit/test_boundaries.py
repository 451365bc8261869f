"""Package walls that code review alone would let slip: checked on the source's import AST."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package: Path) -> dict[str, set[str]]:
    """Module path → every module it imports (top level, in functions, under TYPE_CHECKING)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[str(path.relative_to(package.parent))] = names
    return found


def test_the_engine_imports_nothing_from_the_application_shell() -> None:
    """operator_engine runs under any shell: its config comes in as an EngineConfig."""
    modules = imported_modules(ROOT / "operator_engine")
    assert "operator_engine/api.py" in modules  # the scan sees the package
    offending = {
        module: sorted(n for n in names if n.split(".")[0] in {"tidewater", "provider"})
        for module, names in modules.items()
    }
    assert {m: n for m, n in offending.items() if n} == {}


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "m.py").write_text(
        "from . import x\nif True:\n    import a.b\n"
        "def f():\n    from tidewater.settings import Settings\n"
    )
    assert imported_modules(tmp_path / "pkg") == {"pkg/sub/m.py": {"a.b", "tidewater.settings"}}
