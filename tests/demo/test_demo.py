"""``tidewater demo`` end to end as a user runs it: real ganache, real Docker, real provider.

Each run is a separate process; after it, nothing it started may survive (no ganache, no
gunicorn, no job container), and a second run in a row must work just as well.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from operator_engine.backends.base import JOB_LABEL

pytestmark = pytest.mark.integration


def _demo(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tidewater.cli", "demo", "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _survivors(data_dir: Path) -> list[str]:
    """Processes whose command line or environment mentions ``data_dir`` (the provider's
    TIDEWATER_DATA_DIR) or that ganache runs as a child of a demo: none may outlive it."""
    found = []
    needle = str(data_dir).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            blob = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if needle in blob:
            found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
    return found


def _job_containers(client: docker.DockerClient, data_dir: Path) -> list[str]:
    results = data_dir / "results"
    job_ids = [p.name for p in results.iterdir()] if results.exists() else []
    return [
        c.id
        for job_id in job_ids
        for c in client.containers.list(all=True, filters={"label": f"{JOB_LABEL}={job_id}"})
    ]


def test_demo_twice_in_a_row_verifies_results_and_leaves_nothing(
    tmp_path: Path, docker_client: docker.DockerClient, python_image: str
) -> None:
    data_dir = tmp_path / "demo"
    for run in (1, 2):
        proc = _demo(data_dir)
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"run {run}:\n{out}"
        [job_dir] = list((data_dir / "results").iterdir())  # emptied at start: one job per run
        summary = json.loads((job_dir / "summary.json").read_text())
        assert summary["rows"] == 3650
        assert set(summary["columns"]) == {"temperature_c", "humidity_pct", "wind_kmh", "rain_mm"}
        chart = (job_dir / "chart.png").read_bytes()
        assert chart.startswith(b"\x89PNG\r\n\x1a\n") and b"Matplotlib" in chart  # its tEXt
        assert f"chart: {job_dir / 'chart.png'} (mean, min and max per variable" in out
        assert "70 Job finished" in out
        assert "each sha256 matches" in out
        assert "summary.json: 3650 rows" in out
        assert re.search(r"receipt verified, signed by 0x[0-9a-fA-F]{40}\n*$", out), out[-500:]
        assert (job_dir / "receipt.json").is_file()
        assert _survivors(data_dir) == []
        assert _job_containers(docker_client, data_dir) == []


def test_demo_without_docker_fails_fast_saying_how_to_start_it(tmp_path: Path) -> None:
    proc = _demo(tmp_path / "demo", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    out, _ = proc.communicate(timeout=60)  # a hang guard; it fails in about a second
    assert proc.returncode == 2
    assert "step 1 (Docker engine) failed: no Docker engine answers" in out
    assert "fix: start the Docker engine" in out


def test_demo_terminated_mid_run_stops_everything(
    tmp_path: Path, docker_client: docker.DockerClient, python_image: str
) -> None:
    data_dir = tmp_path / "demo"
    proc = _demo(data_dir, "--keep")
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # wait until the whole stack is up and has served a job
        lines.append(line)
        if line.startswith("--keep:"):
            break
    else:
        raise AssertionError("".join(lines))
    assert _survivors(data_dir), "the kept stack should be running"
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), "".join(lines) + rest
    assert _survivors(data_dir) == []
    assert _job_containers(docker_client, data_dir) == []
