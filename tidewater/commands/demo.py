"""``tidewater demo``: the whole compute-to-data flow on this machine, on embedded defaults.

Checks Docker, builds the local Python algorithm image if missing, starts ganache with the Ocean
V4 contracts, starts ``tidewater serve`` (SQLite, embedded workers, Docker), then plays the
publisher and the consumer over HTTP with a wallet: publish a weather CSV and a summary-statistics
algorithm, initializeCompute, order both, start the job, follow it, download and verify every
result. Everything it started stops on exit or Ctrl-C; ``--keep`` holds the stack up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

import docker
import docker.errors
from web3 import HTTPProvider, Web3

from contracts_abi import publish
from contracts_abi.deploy import deploy_stack, write_address_file
from contracts_abi.devchain import DEV_ACCOUNTS, Ganache, dev_account
from operator_engine.backends.base import BackendError
from operator_engine.backends.docker import DockerBackend
from operator_engine.receipts import RECEIPT_FILE, verify
from tidewater.client import ProviderClient, ProviderHTTPError
from tidewater.demo_roles import ONE, Consumer, Download, Publisher
from tidewater.errors import CommandError
from tidewater.images import ensure_plot_image, plot_image_tag
from tidewater.sample_data import weather_csv
from tidewater.stack import file_server, provider_server

HELP = "run the whole flow locally: chain, provider, publish, order, compute, verified results"

ENV_ID = "tidewater-demo"
#: Fee the demo environment charges, in Ocean per minute of ``validUntil`` (docs/protocol.md §4).
PRICE_PER_MINUTE = 1
FEE_WINDOW_SECONDS = 600
DOCKER_FIX = (
    "start the Docker engine (`sudo systemctl start docker`; without systemd: "
    "`sudo scripts/start-dockerd.sh`), then run `make demo` again"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the chain, provider and file server running (URLs printed) until Ctrl-C",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".tidewater/demo"),
        help="where the demo keeps its store, jobs, logs and results (emptied at start; "
        "default .tidewater/demo)",
    )
    parser.add_argument("--rows", type=int, default=3650, help="rows of sample CSV (3650)")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the job (300)"
    )


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C so every context manager cleans up."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise _Terminated


class Console:
    """Numbered step lines and the one live job line; plain lines when not on a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0
        self.tty = sys.stdout.isatty()
        self._last = ""

    @contextmanager
    def step(self, what: str, fix: str) -> Iterator[None]:
        """Announce ``what``; on failure raise a CommandError naming the step and ``fix``."""
        self.n += 1
        print(f"[{self.n}/{self.total}] {what}", flush=True)
        started = time.monotonic()
        try:
            yield
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self.end_live()
            raise CommandError(
                f"step {self.n} ({what}) failed: {_describe(exc)}\n  fix: {fix}"
            ) from exc
        print(f"      ok ({time.monotonic() - started:.1f} s)", flush=True)

    def live(self, text: str, key: str) -> None:
        """Rewrite the job line in place on a terminal; otherwise print it when ``key`` changes."""
        if self.tty:
            print("\r      " + text.ljust(60), end="", flush=True)
        elif key != self._last:
            print("      " + text, flush=True)
        self._last = key

    def end_live(self) -> None:
        if self.tty and self._last:
            print(flush=True)
        self._last = ""

    def say(self, text: str = "") -> None:
        print(text, flush=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ProviderHTTPError):
        return f"the provider answered {exc.status}: {json.dumps(exc.body)}"
    return str(exc) or type(exc).__name__


def _docker() -> docker.DockerClient:
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except docker.errors.DockerException:
        raise RuntimeError(f"no Docker engine answers at {where}") from None
    return client


def _environments(ocean: str, consumer_address: str) -> list[dict[str, Any]]:
    return [
        {
            "id": ENV_ID,
            "description": f"Demo environment: 1 CPU, 1 GB RAM, {PRICE_PER_MINUTE} Ocean/minute",
            "cpuNumber": 1,
            "ramGB": 1,
            "diskGB": 1,
            "maxJobs": 1,
            "maxJobDuration": 300,
            "storageExpiry": 3600,
            "priceMin": PRICE_PER_MINUTE,
            "feeToken": ocean,
            "consumerAddress": consumer_address,
        }
    ]


def _remove_job_containers(job_ids: list[str]) -> None:
    """Belt and braces on exit: no container of a demo job survives the demo."""
    if not job_ids:
        return
    try:
        backend = DockerBackend(pull=False)
    except BackendError:
        return
    try:
        for job_id in job_ids:
            for container_id, _job in backend.containers(job_id):
                backend.remove(container_id)
    except BackendError:
        pass
    finally:
        backend.close()


def run(args: argparse.Namespace) -> int:
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    job_ids: list[str] = []
    try:
        return _run(args, job_ids)
    finally:
        _remove_job_containers(job_ids)
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, job_ids: list[str]) -> int:
    out = Console(total=11)
    data_dir: Path = args.data_dir.expanduser().resolve()
    algorithm_code = resources.files("tidewater.demo_assets").joinpath("summary_stats.py")
    algorithm_bytes = algorithm_code.read_bytes()
    dataset_bytes = weather_csv(args.rows)
    publisher, consumer, deployer = (dev_account(n) for n in ("publisher", "consumer", "deployer"))
    provider_key = DEV_ACCOUNTS["provider"]
    provider_address = dev_account("provider").address

    with ExitStack() as stack:
        with out.step("Docker engine", DOCKER_FIX):
            client = _docker()
        with out.step(
            f"algorithm image {plot_image_tag()} (Python + matplotlib, built once, ~5 min)",
            "apt-get install debootstrap (and reach a Debian mirror), then run the demo again",
        ):
            image = ensure_plot_image(client)
            image_id = str(client.images.get(image).id)
        with out.step(
            "dev chain: ganache + Ocean V4 contracts",
            "install Node 18+ with npm (`npm ci` fetches ganache from the lockfile)",
        ):
            shutil.rmtree(data_dir, ignore_errors=True)
            data_dir.mkdir(parents=True)
            ganache = stack.enter_context(Ganache())
            w3 = Web3(HTTPProvider(ganache.url, request_kwargs={"timeout": 30}))
            addresses = deploy_stack(w3, deployer)
            address_file = write_address_file(
                data_dir / "address.json", addresses, ganache.chain_id
            )
            publish.transfer(w3, deployer, addresses["Ocean"], consumer.address, 100 * ONE)
        with out.step(
            "provider: tidewater serve (gunicorn, SQLite, Docker workers)",
            f"read {data_dir / 'provider.log'}",
        ):
            envs_file = data_dir / "environments.json"
            envs_file.write_text(json.dumps(_environments(addresses["Ocean"], provider_address)))
            provider_env = {
                "NETWORK_URL": ganache.url,
                "PROVIDER_PRIVATE_KEY": provider_key,
                "TIDEWATER_DATA_DIR": str(data_dir),
                "ADDRESS_FILE": str(address_file),
                "TIDEWATER_ENVIRONMENTS": str(envs_file),
                "ALLOW_NON_PUBLIC_IP": "true",  # the demo's files are served on loopback
                "TIDEWATER_WORKERS": "1",
                "TIDEWATER_PULL_IMAGES": "false",  # the demo's image is built locally
                "TIDEWATER_DB": f"sqlite:///{data_dir / 'tidewater.db'}",
            }
            provider_url = stack.enter_context(
                provider_server(provider_env, log_path=data_dir / "provider.log")
            )
            api = ProviderClient(provider_url)
            stack.callback(api.close)
            [env] = [e for e in api.environments(ganache.chain_id) if e["id"] == ENV_ID]
        with out.step("publisher: serve the dataset and algorithm files on loopback", "-"):
            files_url = stack.enter_context(
                file_server({"/weather.csv": dataset_bytes, "/summary_stats.py": algorithm_bytes})
            )
        with out.step(
            "publisher: publish the algorithm and a dataset that trusts it",
            f"read {data_dir / 'provider.log'} (the encrypt endpoint or the chain refused)",
        ):
            owner = Publisher(w3, publisher, addresses, api, provider_address)
            algorithm = owner.publish(
                "algorithm",
                "summary-stats",
                files_url + "/summary_stats.py",
                container={
                    "entrypoint": "python3 $ALGO",
                    "image": image.rsplit(":", 1)[0],
                    "tag": image.rsplit(":", 1)[1],
                    "checksum": image_id,
                },
            )
            trusted = publish.trusted_algorithm(algorithm.ddo, [algorithm_bytes])
            dataset = owner.publish(
                "dataset", "weather-2015-2024", files_url + "/weather.csv", trusted=[trusted]
            )
            owner.mint_to(algorithm, consumer.address)
            owner.mint_to(dataset, consumer.address)
        user = Consumer(w3, consumer, api)
        with out.step(
            "consumer: initializeCompute, then order both assets with the provider fees",
            "the error names the failed check; see docs/protocol.md §5 for the order rules",
        ):
            ds_item, algo_item, quote = user.order(dataset, algorithm, env, FEE_WINDOW_SECONDS)
            fee = int(quote["datasets"][0]["providerFee"]["providerFeeAmount"]) / ONE
        with out.step("consumer: start the compute job", "the error names the refused field"):
            job = user.start(ds_item, algo_item, ENV_ID)
            job_ids.append(job["jobId"])
        started = time.monotonic()

        def show(status: dict[str, Any]) -> None:
            out.live(
                f"job {status['jobId'][:12]}  {status['status']:>2} {status['statusText']:<28}"
                f"{time.monotonic() - started:6.1f} s",
                key=str(status["status"]),
            )

        with out.step(
            "consumer: follow the job",
            f"read the job's logs under {data_dir} and {data_dir / 'provider.log'}",
        ):
            done = user.follow(job["jobId"], show, args.timeout)
            out.end_live()
            if done["status"] != 70:
                raise RuntimeError(
                    f"the job ended with status {done['status']}: {done['statusText']}"
                )
        results_dir = data_dir / "results" / job["jobId"]
        with out.step(
            "consumer: download every result and verify its sha256",
            "a mismatch means the bytes changed between the engine and the client",
        ):
            downloads = user.download_all(done, results_dir)
        with out.step(
            "consumer: verify the job's signed receipt against the provider and the results",
            "a failing line names what does not match what the provider signed",
        ):
            signer = _verify_receipt(results_dir, user.client.root())
        _report(out, done, results_dir, downloads, fee)
        out.say(f"receipt verified, signed by {signer}")
        if args.keep:
            _hold(out, ganache.url, provider_url, files_url, data_dir)
    return 0


def _verify_receipt(results_dir: Path, root: dict[str, Any]) -> str:
    """Check ``receipt.json`` in ``results_dir``: signed by the provider (its address from
    ``GET /``) and every result file as signed; returns the signer."""
    receipt = json.loads((results_dir / RECEIPT_FILE).read_text(encoding="utf-8"))
    chain = str(receipt["domain"]["chainId"])
    provider = root["providerAddresses"].get(chain) or next(
        iter(root["providerAddresses"].values())
    )
    failures = [
        line for ok, line in verify(receipt, results_dir=results_dir, provider=provider) if not ok
    ]
    if failures:
        raise RuntimeError("; ".join(failures))
    return str(receipt["signer"])


def _report(
    out: Console, job: dict[str, Any], folder: Path, downloads: list[Download], fee: float
) -> None:
    out.say()
    out.say(f"Job {job['jobId']}: {job['statusText']} (provider fee paid: {fee:.2f} Ocean)")
    out.say(f"Results in {_shown(folder)}/ (each sha256 matches the provider's result list)")
    for item in downloads:
        out.say(f"  {item.path.name:<16} {item.size:>8} B  {item.kind:<15} sha256 {item.sha256}")
    summary = next((d.path for d in downloads if d.path.name == "summary.json"), None)
    if summary is not None:
        stats = json.loads(summary.read_text())
        out.say(f"summary.json: {stats['rows']} rows")
        for column, values in stats["columns"].items():
            out.say(
                f"  {column:<14} mean {values['mean']:>8}  min {values['min']:>7}  "
                f"max {values['max']:>7}"
            )
    chart = next((d.path for d in downloads if d.path.name == "chart.png"), None)
    if chart is not None:
        out.say(f"chart: {_shown(chart)} (mean, min and max per variable, drawn with matplotlib)")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _hold(out: Console, chain: str, provider: str, files: str, data_dir: Path) -> None:
    out.say()
    out.say("--keep: the stack stays up until Ctrl-C")
    out.say(f"  chain      {chain}  (chain id 8996, address file {data_dir / 'address.json'})")
    out.say(f"  provider   {provider}")
    out.say(f"  files      {files}/weather.csv  {files}/summary_stats.py")
    out.say(f"  data dir   {data_dir}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        out.say("stopping")
