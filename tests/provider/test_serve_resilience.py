"""``tidewater serve`` against a hostile request, a crash and a stop (issue 10 items 7-9).

Everything is real: ganache with the Ocean V4 contracts, Docker running the python image, and
``tidewater serve`` processes started, killed and restarted as an operator would. Jobs are held
at a stage deterministically: at 20 by a dataset server that blocks until the test lets it
answer, at 40 by an algorithm that waits for a file the test creates in its inputs folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from eth_account.signers.local import LocalAccount
from flask import Flask
from web3 import Web3

from contracts_abi import publish
from contracts_abi.devchain import Ganache
from datastore.engine import make_engine
from datastore.jobs import JobStore
from operator_engine.api import SHUTDOWN_REASON
from operator_engine.backends.base import JOB_LABEL
from operator_engine.backends.fake import FakeBackend
from operator_engine.statuses import TERMINAL, JobStatus
from operator_engine.workspace import JobFolder, drop_work_area
from provider.app import create_app
from provider.crypto import encrypt_for_key, public_key_hex
from tests.provider.core_support import fake_web3, make_settings
from tidewater import stack
from tidewater.client import ProviderClient
from tidewater.demo_roles import Asset, Consumer, Publisher
from tidewater.engine_config import build_engine

pytestmark = pytest.mark.integration

ENV_ID = "resilience"
#: Waits in its container until the test creates ``inputs/release`` in the job's folder.
GATED = b"""import os, pathlib, time
logs, inputs = pathlib.Path(os.environ["LOGS"]), pathlib.Path(os.environ["INPUTS"])
(logs / "started").write_text("running")
while not (inputs / "release").exists():
    time.sleep(0.05)
pathlib.Path(os.environ["OUTPUTS"], "done.txt").write_text("released")
print("released")
"""
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Files:
    """Dataset and algorithm files on 127.0.0.1; ``/held.csv`` answers only once released."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.bodies = {"/data.csv": b"a,b\n1,2\n", "/held.csv": b"x\n1\n", "/gated.py": GATED}
        files = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/held.csv":
                    files.entered.release()
                    files.release.wait(120)
                body = files.bodies[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:  # the fetching engine was killed meanwhile
                    pass

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def held(self, what: str) -> None:
        """Wait until an engine is inside a fetch of ``/held.csv`` (the job sits at 20)."""
        assert self.entered.acquire(timeout=90), f"no engine fetched the held file ({what})"


class LocalEncryptor:
    """What :class:`Publisher` needs of a provider client, without a provider running yet."""

    def __init__(self, provider_key: str) -> None:
        self.public_key = public_key_hex(provider_key)
        self.base_url = "http://127.0.0.1:8030"

    def encrypt(self, data: bytes, _chain_id: int) -> str:
        return "0x" + encrypt_for_key(self.public_key, data).hex()


@dataclass
class World:
    w3: Web3
    consumer: LocalAccount
    provider_address: str
    files: Files
    algorithm: Asset
    fast: Asset
    held: Asset
    env: dict[str, str]
    docker: docker.DockerClient
    python_image: str


@pytest.fixture(scope="module")
def world(
    w3: Web3,
    deployed: dict[str, Any],
    provider_private_key: str,
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    docker_client: docker.DockerClient,
    python_image: str,
) -> Iterator[World]:
    from eth_account import Account

    files = Files()
    provider_address = Account.from_key(provider_private_key).address
    owner = Publisher(
        w3,
        publisher_account,
        deployed,
        LocalEncryptor(provider_private_key),  # type: ignore[arg-type]
        provider_address,
    )
    name, tag = python_image.rsplit(":", 1)
    container = {
        "entrypoint": "python3 $ALGO",
        "image": name,
        "tag": tag,
        "checksum": str(docker_client.images.get(python_image).id),
    }
    algorithm = owner.publish("algorithm", "gated", files.url + "/gated.py", container=container)
    trusted = [publish.trusted_algorithm(algorithm.ddo, [GATED])]
    fast = owner.publish("dataset", "fast", files.url + "/data.csv", trusted=trusted)
    held = owner.publish("dataset", "held", files.url + "/held.csv", trusted=trusted)
    for asset in (algorithm, fast, held):
        owner.mint_to(asset, consumer_account.address, amount=10)
    env = {"id": ENV_ID, "consumerAddress": provider_address}
    yield World(
        w3,
        consumer_account,
        provider_address,
        files,
        algorithm,
        fast,
        held,
        env,
        docker_client,
        python_image,
    )
    files.release.set()
    files.server.shutdown()
    files.server.server_close()


@dataclass
class Provider:
    """One ``tidewater serve`` data dir, started and stopped as the test says."""

    tmp: Path
    ganache: Ganache
    address_file: Path
    provider_key: str
    world: World
    port: int = 0
    grace: int = 20

    def __post_init__(self) -> None:
        self.port = stack.free_port()
        self.data_dir = self.tmp / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        envs = self.tmp / "envs.json"
        env = {
            "id": ENV_ID,
            "consumerAddress": self.world.provider_address,
            "cpuNumber": 2,
            "ramGB": 2,
            "maxJobs": 4,
            "maxJobDuration": 600,
            "storageExpiry": 3600,
        }
        envs.write_text(json.dumps([env]))
        self.env = {
            "NETWORK_URL": self.ganache.url,
            "PROVIDER_PRIVATE_KEY": self.provider_key,
            "TIDEWATER_DATA_DIR": str(self.data_dir),
            "ADDRESS_FILE": str(self.address_file),
            "TIDEWATER_ENVIRONMENTS": str(envs),
            "ALLOW_NON_PUBLIC_IP": "true",
            "TIDEWATER_WORKERS": "2",
            "TIDEWATER_PULL_IMAGES": "false",
            "TIDEWATER_STOP_GRACE": str(self.grace),
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = ProviderClient(self.url)
        self.log = self.tmp / "serve.log"
        self.store = JobStore(make_engine(f"sqlite:///{self.data_dir / 'tidewater.db'}"))

    @contextmanager
    def running(self) -> Iterator[Any]:
        command = [sys.executable, "-m", "tidewater.cli", "serve", "--port", str(self.port)]
        with stack.http_server_process(
            command, self.url + "/", name="tidewater serve", env=self.env, log_path=self.log
        ) as process:
            yield process

    # -- jobs -----------------------------------------------------------------------------------
    def start_job(self, dataset: Asset) -> str:
        buyer = Consumer(self.world.w3, self.world.consumer, self.client)
        ds_item, algo_item, _quote = buyer.order(dataset, self.world.algorithm, self.world.env, 600)
        return str(buyer.start(ds_item, algo_item, ENV_ID)["jobId"])

    def status(self, job_id: str) -> int:
        [job] = self.client.status(self.world.consumer.address, job_id)
        return int(job["status"])

    def folder(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def running_algorithm(self, job_id: str) -> None:
        """Wait until the job is at 40 with its algorithm started in its container."""
        # /data/logs is the job's disk-share area while it runs (work/ when loop-mounted)
        marks = [self.folder(job_id) / sub / "started" for sub in ("work/logs", "logs")]
        wait_for(lambda: any(mark.exists() for mark in marks), "the algorithm")
        assert self.status(job_id) == JobStatus.RUNNING

    def release(self, job_id: str) -> None:
        (self.folder(job_id) / "inputs" / "release").write_text("go")

    def ended(self, job_id: str) -> JobStatus:
        def terminal() -> JobStatus | None:
            job = self.store.get(job_id)
            return job.status if job is not None and job.status in TERMINAL else None

        return wait_for(terminal, f"job {job_id} to end")  # type: ignore[no-any-return]

    def containers(self, job_id: str) -> list[Any]:
        return self.world.docker.containers.list(
            all=True, filters={"label": f"{JOB_LABEL}={job_id}"}
        )

    def assert_nothing_orphaned(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            assert not self.containers(job_id), f"a container of {job_id} was left"
        for folder in (self.data_dir / "jobs").iterdir():
            job = self.store.get(folder.name)
            assert job is not None, f"folder {folder.name} belongs to no job"
            if job.status in TERMINAL:
                assert not (folder / "inputs").exists(), f"inputs of {folder.name} were left"

    def engine_pids(self) -> list[int]:
        """The engine processes started so far, from their start-up lines in the log."""
        found = re.findall(r"engine running \d+ worker\(s\) \(pid (\d+)\)", self.log.read_text())
        return [int(pid) for pid in found]

    def stop(self, process: Any) -> int:
        process.send_signal(signal.SIGTERM)
        return int(process.wait(timeout=120))


@pytest.fixture
def provider(
    tmp_path: Path,
    ganache: Ganache,
    address_file: Path,
    provider_private_key: str,
    world: World,
) -> Iterator[Provider]:
    made = Provider(tmp_path, ganache, address_file, provider_private_key, world)
    yield made
    world.files.release.set()  # whatever a failed test held
    for job_dir in (made.data_dir / "jobs").glob("*"):
        for container in made.containers(job_dir.name):
            container.remove(force=True)
        drop_work_area(JobFolder(job_dir))  # a run's disk-share area left by a killed engine
    world.files.release.clear()
    made.client.close()
    made.store.engine.dispose()


def children(pid: int) -> set[int]:
    """The pids whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def process_tree(pid: int) -> set[int]:
    every = {pid}
    for child in children(pid):
        every |= process_tree(child)
    return every


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def app_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, path) of every route of the provider app, read from its url_map."""
    (tmp_path / "routes").mkdir()
    settings = make_settings(tmp_path / "routes")
    engine = build_engine(settings, backend=FakeBackend(lambda *_a: (0, False, b"")))
    app: Flask = create_app(settings, engine=engine, web3=fake_web3())
    routes = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?[^>]+>", "x1", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, path))
    engine.db.dispose()
    return routes


def test_deep_bodies_to_every_route_leave_a_running_job_alone(
    provider: Provider, tmp_path: Path
) -> None:
    routes = app_routes(tmp_path)
    assert len(routes) > 20 and ("POST", "/api/compute-envs") in routes
    with provider.running() as serve:
        job_id = provider.start_job(provider.world.fast)
        provider.running_algorithm(job_id)
        before = process_tree(serve.pid)
        for method, path in routes:
            for body in (DEEP, DEEP_OBJECT):
                reply = requests.request(
                    method,
                    provider.url + path,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                assert reply.status_code == 400, (method, path, reply.text[:200])
                assert "nested deeper than 64" in reply.json()["error"], (method, path)
            # the params parser reads bodies of any type on these: bounded there too
            if path == "/api/services/compute":
                reply = requests.request(method, provider.url + path, data=DEEP, timeout=30)
                assert reply.status_code == 400, (method, path, reply.text[:200])
        assert process_tree(serve.pid) == before  # no process died and was replaced
        assert provider.status(job_id) == JobStatus.RUNNING
        # and if an HTTP worker does crash, the job does not notice
        http_worker = min(g for c in children(serve.pid) for g in children(c))
        os.kill(http_worker, signal.SIGSEGV)
        wait_for(lambda: not alive(http_worker), "the HTTP worker to die")
        wait_for(lambda: _answers(provider.url), "gunicorn's replacement worker")
        # the client's pooled keep-alive connection may belong to the worker that died: drop
        # it, as any client of a crashed server must (the job's fate is what is under test)
        provider.client.http.close()
        assert provider.status(job_id) == JobStatus.RUNNING
        provider.release(job_id)
        assert provider.ended(job_id) is JobStatus.FINISHED
        assert provider.stop(serve) == 0
    provider.assert_nothing_orphaned([job_id])


def test_kill_9_and_restart_while_jobs_are_at_20_and_40(provider: Provider) -> None:
    files = provider.world.files
    with provider.running() as serve:
        at_40 = provider.start_job(provider.world.fast)
        provider.running_algorithm(at_40)
        at_20 = provider.start_job(provider.world.held)
        files.held("first start")
        assert provider.status(at_20) == JobStatus.CONFIGURING
        assert provider.containers(at_40)
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait(timeout=30)
    assert provider.store.get(at_20).status is JobStatus.CONFIGURING  # type: ignore[union-attr]
    assert provider.store.get(at_40).status is JobStatus.RUNNING  # type: ignore[union-attr]

    restarted = time.monotonic()
    with provider.running() as serve:
        answered_after = time.monotonic() - restarted
        files.held("after the restart")  # the new engine resumed the job at 20 and is held...
        assert provider.client.root()["chainIds"]  # ...while the API answers
        assert provider.status(at_20) == JobStatus.CONFIGURING
        assert provider.ended(at_40) is JobStatus.RUN_FAILED  # its run was interrupted
        files.release.set()
        provider.running_algorithm(at_20)
        provider.release(at_20)
        assert provider.ended(at_20) is JobStatus.FINISHED
        assert not provider.containers(at_40)
        assert provider.stop(serve) == 0
    provider.assert_nothing_orphaned([at_20, at_40])
    print(f"the restarted API answered {answered_after:.1f} s after the restart")


def test_sigterm_lets_a_run_finish_within_the_grace_else_stops_it_at_7(
    provider: Provider,
) -> None:
    files = provider.world.files
    with provider.running() as serve:  # TIDEWATER_STOP_GRACE 20
        finishing = provider.start_job(provider.world.fast)
        provider.running_algorithm(finishing)
        waiting = provider.start_job(provider.world.held)
        files.held("first start")
        os.killpg(serve.pid, signal.SIGTERM)  # systemd's way: every process of the group
        wait_for(lambda: "engine stopping" in provider.log.read_text(), "the stop to begin")
        provider.release(finishing)  # the algorithm ends within the grace
        assert serve.wait(timeout=120) == 0
    assert provider.store.get(finishing).status is JobStatus.FINISHED  # type: ignore[union-attr]
    assert provider.store.get(waiting).status is JobStatus.CONFIGURING  # type: ignore[union-attr]
    log = provider.log.read_text()
    assert re.search(f"job {finishing} .*ended at status 70 before the shutdown", log)
    assert re.search(f"job {waiting} .*left at status 20: it resumes when an engine starts", log)

    provider.env["TIDEWATER_STOP_GRACE"] = "1"
    with provider.running() as serve:
        files.held("after the restart")  # the job left at 20 resumes...
        files.release.set()
        provider.running_algorithm(waiting)  # ...and runs an algorithm that never ends
        assert provider.stop(serve) == 0  # SIGTERM to `tidewater serve` alone
    stopped = provider.store.get(waiting)
    assert stopped is not None and stopped.status is JobStatus.STOPPED
    assert provider.store.row(waiting).reason == SHUTDOWN_REASON  # type: ignore[union-attr]
    assert [r.type for r in stopped.results].count("algorithmLog") == 1
    assert not provider.containers(waiting)
    assert re.search(f"job {waiting} .*stopped at shutdown: status 7", provider.log.read_text())
    provider.assert_nothing_orphaned([finishing, waiting])


def test_an_engine_that_dies_is_restarted_and_recovers_its_job(provider: Provider) -> None:
    with provider.running() as serve:
        job_id = provider.start_job(provider.world.fast)
        provider.running_algorithm(job_id)
        [engine_pid] = provider.engine_pids()
        api = process_tree(serve.pid) - {serve.pid, engine_pid}
        os.kill(engine_pid, signal.SIGKILL)
        assert provider.ended(job_id) is JobStatus.RUN_FAILED  # recovered by the new engine
        assert not provider.containers(job_id)
        assert len(provider.engine_pids()) == 2
        assert api <= process_tree(serve.pid)  # the API's processes never noticed
        assert provider.client.root()["chainIds"]
        # the supervisor killed alone: its children stop by themselves (PR_SET_PDEATHSIG)
        tree = process_tree(serve.pid)
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait(timeout=30)
        wait_for(lambda: not any(alive(pid) for pid in tree), "no process left behind")
    provider.assert_nothing_orphaned([job_id])
