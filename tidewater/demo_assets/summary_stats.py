"""Ocean compute algorithm: summary statistics and a chart of every numeric CSV column.

Runs inside the job container (Python 3 and Debian's matplotlib: the demo's
``tidewater/python3-plot`` image). Reads each input ``/data/inputs/<did>/<n>`` named by
``$DIDS``, writes ``/data/outputs/summary.json`` and ``/data/outputs/chart.png``: one panel per
numeric column with its mean, min and max in the column's unit (from its name's suffix), titled
with the dataset's name from its DDO in ``/data/ddos``.
"""

import csv
import json
import math
import os
import statistics

INPUTS = os.environ.get("INPUTS", "/data/inputs")
OUTPUTS = os.environ.get("OUTPUTS", "/data/outputs")
DDOS = os.environ.get("DDOS", "/data/ddos")


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


#: column-name suffix -> the unit it names
UNITS = {"_c": "°C", "_pct": "%", "_kmh": "km/h", "_mm": "mm", "_m": "m", "_s": "s"}


def label(column):
    """``temperature_c`` -> (``temperature``, ``°C``); unknown suffixes keep the name."""
    for suffix, unit in UNITS.items():
        if column.endswith(suffix):
            return column[: -len(suffix)].replace("_", " "), unit
    return column.replace("_", " "), ""


def dataset_names():
    """The names of the datasets in ``/data/ddos`` (their DDOs' ``metadata.name``)."""
    names = []
    if os.path.isdir(DDOS):
        for entry in sorted(os.listdir(DDOS)):
            try:
                with open(os.path.join(DDOS, entry)) as handle:
                    metadata = json.load(handle).get("metadata", {})
            except (OSError, ValueError, AttributeError):
                continue
            if metadata.get("type") == "dataset" and metadata.get("name"):
                names.append(str(metadata["name"]))
    return names


def chart(stats, rows, title_name, path):
    """One panel per numeric column: its mean (bar) with a min-max range, in its own unit."""
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/matplotlib")  # the image's root is read-only
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    names = list(stats) or ["(no numeric column)"]
    figure, axes = pyplot.subplots(1, len(names), figsize=(3.2 * len(names), 4.2), squeeze=False)
    for ax, column in zip(axes[0], names, strict=True):
        s = stats.get(column)
        if s is None:
            ax.set_axis_off()
            continue
        name, unit = label(column)
        ax.bar([0], [s["mean"]], width=0.6, color="#3465a4", label="mean")
        ax.errorbar(
            [0],
            [s["mean"]],
            yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]],
            fmt="none",
            ecolor="#333333",
            capsize=8,
            label="min-max",
        )
        ax.annotate(
            f"mean {s['mean']:.1f}",
            (0.3, s["mean"]),
            textcoords="offset points",
            xytext=(4, 0),
            va="center",
            fontsize=9,
        )
        ax.set_xticks([0], [name])
        ax.set_xlim(-1, 1)
        ax.set_ylabel(f"{name} ({unit})" if unit else name)
        ax.set_title(f"min {s['min']:g} / max {s['max']:g}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(loc="upper left", fontsize=8)
    figure.suptitle(f"{title_name}: mean, min and max per variable ({rows} rows)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def main():
    summary = summarize(read_rows())
    with open(os.path.join(OUTPUTS, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
    title_name = ", ".join(dataset_names()) or "dataset"
    chart(summary["columns"], summary["rows"], title_name, os.path.join(OUTPUTS, "chart.png"))
    means = {k: v["mean"] for k, v in summary["columns"].items()}
    print(f"rows={summary['rows']} means={means}")
    if not math.isfinite(sum(means.values() or [0.0])):
        raise SystemExit("non-finite statistics")


if __name__ == "__main__":
    main()
