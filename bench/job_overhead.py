"""Job overhead: no-op jobs through the engine versus raw ``docker run`` of the same image.

Prints figures only (no pass/fail). Run: ``.venv/bin/python bench/job_overhead.py [--n 10]
[--queue 1000] [--raw-sample 500] [--rounds 20]``. The engine side includes everything a job
costs: store transitions, fetching a small dataset from a local HTTP server (127.0.0.1), the
hardened container, log streaming, output filtering and result hashing. Target: engine median
<= 1.5 x raw median.

The queue part submits ``--queue`` jobs at once to an environment of ``maxJobs 2`` served by two
workers, and compares the rate with ``docker run``s two at a time: a plain one, and one with the
isolation the engine gives its containers (read-only root, no capabilities, limits, the /data
bind mounts...), which shows what the hardening itself costs Docker. The sides take turns
(``--rounds``: the engine runs its share of the queue, then ``--raw-sample / rounds`` plain and
a quarter as many hardened ``docker run``s; the engine's workers wait at a claim gate
meanwhile), so a load burst on the shared machine falls on every side alike. Each turn ends
when its last run does, one slot idle meanwhile: that tail costs a turn of n runs about
1/(2n) of its rate (1 % for the engine's 50, 2 % for the 25 plain runs by default).
It counts jobs lost (not finished at 70) and duplicated (their algorithm started more than
once: more than one transition to status 40), and prints where a worker's time goes per job and
the Docker API calls a job makes (:mod:`bench.job_stages`). Target: none lost or duplicated,
engine rate >= 0.9 x raw rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker

from bench.job_stages import ClaimGate, TimedDockerBackend, breakdown, cpu_seconds, stage_seconds
from bench.summary import record
from operator_engine.api import Engine
from operator_engine.models import AlgorithmInput, DatasetInput, JobRequest
from operator_engine.statuses import TERMINAL
from tidewater.engine_config import build_engine
from tidewater.images import ensure_python_image
from tidewater.settings import Settings


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"a,b\n1,2\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _request(url: str, image: str, env_id: str) -> JobRequest:
    name, tag = image.rsplit(":", 1)
    return JobRequest(
        owner="0x0000000000000000000000000000000000000b",
        environment=env_id,
        datasets=[DatasetInput("did:op:" + "ab" * 32, {}, "svc", [{"type": "url", "url": url}])],
        algorithm=AlgorithmInput(
            container={"image": name, "tag": tag, "entrypoint": "python3 $ALGO"}, rawcode="pass"
        ),
    )


def hardened_run_cmd(image: str, folder: Path, cpus: float, ram_bytes: int) -> list[str]:
    """``docker run`` with the isolation the engine gives a job's container (mirrors
    ``DockerBackend.start``: no network, read-only root, no capabilities, no new privileges,
    nobody's uid, private IPC, PID/memory/CPU/ulimit limits, a small noexec /tmp, no log
    driver, the five /data bind mounts): what the same container costs without the engine."""
    mounts = []
    for name, read_only in (
        ("inputs", True),
        ("transformations", True),
        ("ddos", True),
        ("outputs", False),
        ("logs", False),
    ):
        (folder / name).mkdir(parents=True, exist_ok=True)
        mode = ",readonly" if read_only else ""
        mounts += ["--mount", f"type=bind,source={folder / name},target=/data/{name}{mode}"]
    return [
        "docker", "run", "--rm", "--network", "none", "--read-only",
        "--tmpfs", f"/tmp:rw,noexec,nosuid,nodev,size={min(64 * 1024**2, ram_bytes // 4)}",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--ipc", "private",
        "--pids-limit", "128", "--memory", str(ram_bytes), "--memory-swap", str(ram_bytes),
        "--cpus", str(cpus), "--oom-score-adj", "500", "--ulimit", "core=0:0",
        "--ulimit", "nofile=1024:1024", "--log-driver", "none", "--user", "65534:65534",
        "--hostname", "algorithm", "--workdir", "/", *mounts,
        "--entrypoint", "/bin/sh", image, "-c", "python3 -c pass",
    ]  # fmt: skip


def _runs(command: list[str], runs: int, parallel: int) -> float:
    """Seconds ``runs`` runs of ``command`` take, ``parallel`` at a time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda _: subprocess.run(command, check=True), range(runs)))
    return time.perf_counter() - start


def _unfinished(engine: Engine) -> int:
    """Jobs in the store not yet at a terminal status."""
    return sum(n for _env, status, n in engine.store.status_counts() if status not in TERMINAL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="no-op jobs for each side (default 10)")
    parser.add_argument("--queue", type=int, default=1000, help="queued jobs for throughput")
    parser.add_argument(
        "--raw-sample", type=int, default=500, help="raw docker runs for the rate baseline"
    )
    parser.add_argument(
        "--rounds", type=int, default=20, help="turns the engine and the baselines take"
    )
    parser.add_argument("--summary", type=Path, help="append the issue-16 rows to this file")
    args = parser.parse_args()

    client = docker.from_env(timeout=120)
    image = ensure_python_image(client)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/data.csv"
    base = {"cpuNumber": 2, "ramGB": 1, "diskGB": 1, "maxJobDuration": 120, "priceMin": 0}
    with tempfile.TemporaryDirectory() as tmp:
        envs = Path(tmp) / "envs.json"
        envs.write_text(
            json.dumps(
                [
                    {"id": "latency", "maxJobs": 1, **base},
                    {"id": "throughput", "maxJobs": 2, **base},
                ]
            )
        )
        settings = Settings(
            data_dir=Path(tmp) / "data",
            db_url=f"sqlite:///{tmp}/bench.db",
            environments_file=envs,
            allow_non_public_ip=True,
        )
        backend = TimedDockerBackend(client, pull=False)
        engine = build_engine(settings, backend=backend)
        raw_cmd = ["docker", "run", "--rm", "--network", "none", image, "python3", "-c", "pass"]
        subprocess.run(raw_cmd, check=True)  # warm the page cache for both sides
        engine_times: list[float] = []
        raw_times: list[float] = []
        for _ in range(args.n):  # interleaved: both sides see the same machine load
            start = time.perf_counter()
            job = engine.submit(_request(url, image, "latency"))
            engine.run_until_idle()
            engine_times.append(time.perf_counter() - start)
            assert engine.get(job.job_id).status == 70  # type: ignore[union-attr]
            start = time.perf_counter()
            subprocess.run(raw_cmd, check=True)
            raw_times.append(time.perf_counter() - start)
        eng, raw = statistics.median(engine_times), statistics.median(raw_times)
        print(
            f"no-op job, n={args.n}: engine median {eng:.3f}s  raw docker run median "
            f"{raw:.3f}s  ratio {eng / raw:.2f}"
        )
        print(
            f"  engine min/max {min(engine_times):.3f}/{max(engine_times):.3f}s, "
            f"raw min/max {min(raw_times):.3f}/{max(raw_times):.3f}s"
        )
        record(
            args.summary,
            f"one no-op job (median of {args.n})",
            f"{eng:.3f} s",
            f"`docker run`: {raw:.3f} s",
            eng / raw,
            "none (issue 16 measured 1.17x)",
        )

        jobs = [engine.submit(_request(url, image, "throughput")) for _ in range(args.queue)]
        sample = min(args.raw_sample, args.queue)
        hardened_cmd = hardened_run_cmd(image, Path(tmp) / "hardened", 1.0, 512 * 1024**2)
        gate = ClaimGate(engine.services, workers=2)
        engine.start(2)
        gate.wait_idle()
        backend.reset()
        stages_before = stage_seconds()
        took = raw_took = hardened_took = engine_cpu = engine_kids = cli_cpu = 0.0
        raw_runs = hardened_runs = 0
        rounds = max(1, min(args.rounds, args.queue, sample))
        for n in range(rounds):
            # the engine's turn: its share of the queue, claimed as fast as the workers go
            # (the last turn also takes what a failed claim left)
            share = args.queue * (n + 1) // rounds - args.queue * n // rounds
            cpu, kids = cpu_seconds()
            start = time.perf_counter()
            gate.allow(share)
            gate.wait_idle()
            while n == rounds - 1 and (left := _unfinished(engine)):
                gate.allow(left)
                gate.wait_idle()
            took += time.perf_counter() - start
            cpu2, kids2 = cpu_seconds()
            engine_cpu, engine_kids = engine_cpu + cpu2 - cpu, engine_kids + kids2 - kids
            # the baselines' turn, at the same parallelism (the engine's workers wait)
            runs = sample * (n + 1) // rounds - sample * n // rounds
            raw_took += _runs(raw_cmd, runs, 2)
            cli_cpu += cpu_seconds()[1] - kids2
            raw_runs += runs
            hardened_took += _runs(hardened_cmd, max(runs // 4, 1), 2)
            hardened_runs += max(runs // 4, 1)
        stages_after = stage_seconds()
        gate.allow(10**9)  # let the workers reach their stop
        engine.shutdown()
        finished = sum(engine.get(j.job_id).status == 70 for j in jobs)  # type: ignore[union-attr]
        starts = [sum(1 for _f, to, _d in engine.store.events(j.job_id) if to == 40) for j in jobs]
        duplicated = sum(1 for n in starts if n > 1)
        engine_rate = args.queue / took
        raw_rate = raw_runs / raw_took
        hardened_rate = hardened_runs / hardened_took
        print(
            f"queue: {args.queue} no-op jobs, maxJobs 2, 2 workers: {took:.1f}s, "
            f"{engine_rate:.2f} jobs/s (in {rounds} turns, interleaved with the baselines)"
        )
        print(
            f"  raw docker run x{raw_runs}, 2 at a time: {raw_rate:.2f} runs/s; "
            f"ratio engine/raw {engine_rate / raw_rate:.2f} (goal >= 0.9)"
        )
        print(
            f"  hardened docker run x{hardened_runs} (the engine container's isolation), 2 at "
            f"a time: {hardened_rate:.2f} runs/s; ratio engine/hardened "
            f"{engine_rate / hardened_rate:.2f}"
        )
        print(f"  lost (not 70): {args.queue - finished}  duplicated (started twice): {duplicated}")
        print(
            f"  CPU per job: engine process {1000 * engine_cpu / args.queue:.1f} ms + its tools "
            f"(mkfs, mount) {1000 * engine_kids / args.queue:.1f} ms; the docker CLI "
            f"{1000 * cli_cpu / raw_runs:.1f} ms per run (dockerd's own not counted); "
            f"load {os.getloadavg()[0]:.1f}"
        )
        stages = {k: stages_after[k] - stages_before[k] for k in stages_after}
        print(breakdown(backend, stages, args.queue, 2 * took, 2 / raw_rate))
        record(
            args.summary,
            f"{args.queue:,} queued no-op jobs, 2 workers (lost / duplicated)",
            f"{engine_rate:.2f} jobs/s ({args.queue - finished} / {duplicated})",
            f"`docker run` x{raw_runs}, 2 at a time, interleaved: {raw_rate:.2f}/s (hardened: "
            f"{hardened_rate:.2f}/s, {engine_rate / hardened_rate:.2f}x)",
            engine_rate / raw_rate,
            ">= 0.9x, 0 lost, 0 duplicated",
        )
        engine.db.dispose()
    server.shutdown()


if __name__ == "__main__":
    main()
