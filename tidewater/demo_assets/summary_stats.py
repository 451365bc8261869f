"""Ocean compute algorithm: summary statistics and a chart of every numeric CSV column.

Runs inside the job container with only the Python standard library. Reads each input
``/data/inputs/<did>/<n>`` named by ``$DIDS``, writes ``/data/outputs/summary.json`` and
``/data/outputs/chart.png`` (a bar chart of each numeric column's mean, with min-max whiskers).
"""

import csv
import json
import math
import os
import statistics
import struct
import zlib

INPUTS = os.environ.get("INPUTS", "/data/inputs")
OUTPUTS = os.environ.get("OUTPUTS", "/data/outputs")


def read_rows():
    for did in json.loads(os.environ.get("DIDS", "[]")):
        folder = os.path.join(INPUTS, did)
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), newline="") as handle:
                yield from csv.DictReader(handle)


def summarize(rows):
    columns = {}
    text_columns = set()
    count = 0
    for row in rows:
        count += 1
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                text_columns.add(key)
    stats = {}
    for key, values in columns.items():
        if key in text_columns or not values:
            continue
        stats[key] = {
            "count": len(values),
            "mean": round(statistics.fmean(values), 4),
            "stdev": round(statistics.pstdev(values), 4),
            "min": min(values),
            "median": statistics.median(values),
            "max": max(values),
        }
    return {"rows": count, "columns": stats}


def png(width, height, pixels):
    """Encode rows of (r, g, b) tuples as a PNG file's bytes."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def chart(stats, width=480, height=240):
    """Bars of each column's mean scaled to its own min..max range, whiskers at min and max."""
    pixels = [[(255, 255, 255)] * width for _ in range(height)]
    names = list(stats)
    if not names:
        return png(width, height, pixels)
    slot = width // len(names)
    palette = [(52, 101, 164), (245, 121, 0), (78, 154, 6), (204, 0, 0), (117, 80, 123)]
    for i, name in enumerate(names):
        s = stats[name]
        span = (s["max"] - s["min"]) or 1.0
        level = (s["mean"] - s["min"]) / span
        top = height - 10 - int(level * (height - 30))
        left, right = i * slot + slot // 4, (i + 1) * slot - slot // 4
        colour = palette[i % len(palette)]
        for y in range(max(top, 0), height - 10):
            for x in range(left, right):
                pixels[y][x] = colour
        mid = (left + right) // 2
        for y in range(10, height - 10):
            pixels[y][mid] = (60, 60, 60)
    for x in range(width):
        pixels[height - 10][x] = (0, 0, 0)
    return png(width, height, pixels)


def main():
    summary = summarize(read_rows())
    with open(os.path.join(OUTPUTS, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
    with open(os.path.join(OUTPUTS, "chart.png"), "wb") as handle:
        handle.write(chart(summary["columns"]))
    means = {k: v["mean"] for k, v in summary["columns"].items()}
    print(f"rows={summary['rows']} means={means}")
    if not math.isfinite(sum(means.values() or [0.0])):
        raise SystemExit("non-finite statistics")


if __name__ == "__main__":
    main()
