"""The issue-16 table from one ``make bench``: every bench script given ``--summary FILE`` appends
its rows (JSON lines) to FILE, and ``python bench/summary.py FILE`` prints them as one table, each
figure next to its baseline from the same run, the ratio and the goal. Figures only: a goal is
printed next to the ratio, never judged.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def record(
    path: Path | None,
    row: str,
    value: str,
    baseline: str = "",
    ratio: float | None = None,
    goal: str = "",
) -> None:
    """Append one row (and the load average now) to the summary file ``path``, if given."""
    if path is None:
        return
    entry = {
        "row": row,
        "value": value,
        "baseline": baseline,
        "ratio": ratio,
        "goal": goal,
        "load": round(os.getloadavg()[0], 1),
    }
    with path.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (it reads as plain text too)."""
    lines = [
        "| row | tidewater | baseline (same run) | ratio | goal | load |",
        "|---|---|---|---|---|---|",
    ]
    for entry in rows:
        ratio = "" if entry["ratio"] is None else f"{entry['ratio']:.2f}"
        lines.append(
            f"| {entry['row']} | {entry['value']} | {entry['baseline']} | {ratio} | "
            f"{entry['goal']} | {entry['load']} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: summary.py FILE")
    path = Path(sys.argv[1])
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print("\nissue 16, this run (load = 1-minute load average when the row was measured):")
    print(table(rows))


if __name__ == "__main__":
    main()
