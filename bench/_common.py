"""Helpers the provider benchmarks share: a dev chain, a real job, gunicorn processes, wrk.

Everything here binds or talks to 127.0.0.1 only, and every helper that starts something is a
context manager that stops it on exit (Ctrl-C and SIGTERM included, see :func:`sigterm_as_ctrl_c`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import docker
from web3 import HTTPProvider, Web3

from contracts_abi.deploy import deploy_stack, write_address_file
from contracts_abi.devchain import DEV_ACCOUNTS, Ganache, dev_account
from operator_engine.api import Engine
from operator_engine.backends.docker import DockerBackend
from operator_engine.models import AlgorithmInput, DatasetInput, Job, JobRequest
from tidewater.commands.serve import gunicorn_options
from tidewater.engine_config import build_engine
from tidewater.images import ensure_busybox_image
from tidewater.settings import Settings
from tidewater.stack import file_server, free_port, http_server_process

# -- process hygiene ---------------------------------------------------------------------------


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def sigterm_as_ctrl_c() -> None:
    """Handle SIGTERM like Ctrl-C, so every ``with`` block below cleans up."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


# -- chain and provider ------------------------------------------------------------------------


@contextmanager
def dev_chain(folder: Path) -> Iterator[tuple[str, Path]]:
    """Ganache with the Ocean V4 contracts deployed (as ``tidewater demo`` does); yields
    ``(rpc_url, address_file)``."""
    with Ganache() as ganache:
        w3 = Web3(HTTPProvider(ganache.url, request_kwargs={"timeout": 30}))
        addresses = deploy_stack(w3, dev_account("deployer"))
        address_file = write_address_file(folder / "address.json", addresses, ganache.chain_id)
        yield ganache.url, address_file


def provider_env(
    *, network_url: str, address_file: Path, data_dir: Path, envs_file: Path, log_level: str
) -> dict[str, str]:
    """The environment ``tidewater serve`` reads, on the store and data dir the bench shares."""
    return {
        "NETWORK_URL": network_url,
        "PROVIDER_PRIVATE_KEY": DEV_ACCOUNTS["provider"],
        "TIDEWATER_DATA_DIR": str(data_dir),
        "TIDEWATER_DB": f"sqlite:///{data_dir / 'tidewater.db'}",
        "ADDRESS_FILE": str(address_file),
        "TIDEWATER_ENVIRONMENTS": str(envs_file),
        "ALLOW_NON_PUBLIC_IP": "true",  # the bench's dataset is served on loopback
        "TIDEWATER_PULL_IMAGES": "false",  # the bench builds its image locally
        "TIDEWATER_LOG_LEVEL": log_level,
    }


def serve_args(workers_proc: int, threads: int) -> tuple[str, ...]:
    """``tidewater serve`` flags: API only (the bench runs its jobs itself, on the same store)."""
    return ("--no-engine", "--workers-proc", str(workers_proc), "--threads", str(threads))


# -- a real job --------------------------------------------------------------------------------


def write_envs(path: Path, envs: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(envs))
    return path


#: The compute environment the benchmarks run their one job in (overridable per benchmark).
BENCH_ENV: dict[str, Any] = {
    "cpuNumber": 1,
    "ramGB": 0.5,
    "diskGB": 1,
    "maxJobs": 1,
    "maxJobDuration": 120,
    "priceMin": 0,
}


def bench_stack(
    stack: ExitStack, folder: Path, env_id: str, *, log_level: str = "INFO", **env: Any
) -> tuple[dict[str, str], str]:
    """ganache with the contracts, a loopback file server holding ``/data.csv`` and one compute
    environment ``env_id`` (:data:`BENCH_ENV` updated with ``env``), all stopped by ``stack``.
    Returns the provider's environment variables and the file server's base URL."""
    print("starting ganache and deploying the Ocean contracts...", file=sys.stderr, flush=True)
    network_url, address_file = stack.enter_context(dev_chain(folder))
    files = stack.enter_context(file_server({"/data.csv": b"a,b\n1,2\n"}))
    envs_file = write_envs(folder / "envs.json", [{"id": env_id, **BENCH_ENV, **env}])
    variables = provider_env(
        network_url=network_url,
        address_file=address_file,
        data_dir=folder / "data",
        envs_file=envs_file,
        log_level=log_level,
    )
    return variables, files


@contextmanager
def bench_engine(settings: Settings) -> Iterator[Engine]:
    """An in-process engine on ``settings``' store (Docker, no pulls); on exit any container it
    started is removed and the store is released."""
    client = docker.from_env(timeout=120)
    runner = DockerBackend(client, pull=False)
    engine = build_engine(settings, backend=runner)
    try:
        yield engine
    finally:
        try:
            for container_id, _job in runner.containers():
                runner.remove(container_id)
        finally:
            engine.shutdown()
            engine.db.dispose()
            runner.close()
            client.close()


def run_shell_job(engine: Engine, *, owner: str, env_id: str, script: str, dataset_url: str) -> Job:
    """Run ``script`` (sh, in the busybox image) as a real job of ``owner``; returns it at 70."""
    image = ensure_busybox_image(engine.backend.client)  # type: ignore[attr-defined]
    name, tag = image.rsplit(":", 1)
    job = engine.submit(
        JobRequest(
            owner=owner,
            environment=env_id,
            datasets=[
                DatasetInput(
                    "did:op:" + "be" * 32, {}, "svc", [{"type": "url", "url": dataset_url}]
                )
            ],
            algorithm=AlgorithmInput(
                container={"image": name, "tag": tag, "entrypoint": "sh $ALGO"},
                rawcode=textwrap.dedent(script),
            ),
        )
    )
    engine.run_until_idle(timeout=600)
    done = engine.get(job.job_id)
    if done is None or done.status != 70:
        reason = None if done is None else f"{int(done.status)} {done.reason}"
        raise RuntimeError(f"bench job {job.job_id} did not finish: {reason}")
    return done


# -- gunicorn ----------------------------------------------------------------------------------

_BARE_APP = '''\
"""A trivial Flask app under gunicorn with the options given as JSON in argv[1].

GET /ping answers a small JSON object; GET /file sends the file named in argv[2] (if any) with
Flask's send_file, which gunicorn serves with sendfile(2).
"""
import json
import sys

from flask import Flask, jsonify, send_file
from gunicorn.app.base import BaseApplication

OPTIONS = json.loads(sys.argv[1])
FILE = sys.argv[2] if len(sys.argv) > 2 else None


class Bare(BaseApplication):
    def load_config(self):
        for key, value in OPTIONS.items():
            self.cfg.set(key, value)

    def load(self):
        app = Flask("bare")

        @app.get("/ping")
        def ping():
            return jsonify({"nonce": "1"})

        @app.get("/file")
        def file():
            return send_file(FILE, mimetype="application/octet-stream", as_attachment=True)

        return app


Bare().run()
'''


def gunicorn_settings(port: int, workers_proc: int, threads: int) -> dict[str, Any]:
    """The exact options ``tidewater serve`` gives gunicorn (from its own ``gunicorn_options``)."""
    args = argparse.Namespace(
        host="127.0.0.1", port=port, workers_proc=workers_proc, threads=threads
    )
    return gunicorn_options(args)


@contextmanager
def bare_gunicorn(
    folder: Path, workers_proc: int, threads: int, serve_file: Path | None = None
) -> Iterator[str]:
    """The bare Flask app under gunicorn with ``tidewater serve``'s settings; yields its base
    URL (``/ping``, and ``/file`` when ``serve_file`` is given)."""
    port = free_port()
    script = folder / "bare_app.py"
    script.write_text(_BARE_APP)
    options = gunicorn_settings(port, workers_proc, threads)
    command = [sys.executable, str(script), json.dumps(options)]
    if serve_file is not None:
        command.append(str(serve_file))
    url = f"http://127.0.0.1:{port}"
    with http_server_process(
        command, url + "/ping", name="bare gunicorn app", log_path=folder / "bare.log"
    ):
        yield url


# -- /proc -------------------------------------------------------------------------------------


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (scanning /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _ppid(int(entry.name)) == pid:
            found.append(int(entry.name))
    return sorted(found)


def server_processes(port: int) -> list[int]:
    """The gunicorn master of ``tidewater serve --port port`` (our child) and its workers."""
    marker = f"--port\0{port}\0".encode()
    for pid in children(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"tidewater.cli\0serve\0" in cmdline and marker in cmdline + b"\0":
            return [pid, *children(pid)]
    raise RuntimeError(f"no `tidewater serve --port {port}` child process found")


def serving_tree(port: int) -> list[int]:
    """The child process of this one serving ``port`` (its command line names the port: ``--port
    N`` or a JSON ``bind``) and all its descendants."""
    for pid in children(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"\0{port}\0".encode() in cmdline or f':{port}"'.encode() in cmdline:
            tree, todo = [], [pid]
            while todo:
                current = todo.pop()
                tree.append(current)
                todo += children(current)
            return tree
    raise RuntimeError(f"no child process serving port {port}")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the live processes ``pids`` have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def context_switches(pids: list[int]) -> int:
    """Context switches (voluntary + involuntary) of every thread of the live ``pids`` so far:
    under a GIL each hand-off between request threads is two of them."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                status = (task / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


# -- wrk ---------------------------------------------------------------------------------------


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    return path


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str  # socket errors and non-2xx answers, "" when there were none


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Requests/sec and the 50 %/99 % latencies of ``wrk --latency`` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    errors = [
        line.strip()
        for line in output.splitlines()
        if line.strip().startswith(("Socket errors", "Non-2xx"))
    ]
    return WrkResult(
        float(rps.group(1)),
        _ms(p50.group(1)),
        _ms(p99.group(1)),
        int(total.group(1)),
        "; ".join(errors),
    )


def run_wrk(url: str, *, threads: int, connections: int, duration: int) -> WrkResult:
    """One ``wrk --latency`` run against ``url`` (loopback only)."""
    if not url.startswith("http://127."):
        raise ValueError(f"refusing to load a non-loopback URL: {url}")
    command = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)
