"""Result download: a large job result streamed through ``GET /api/services/computeResult``
versus reading the same file straight from disk, and the server's memory around the download.

Prints figures only (no pass/fail). Run: ``.venv/bin/python bench/result_download.py [--mb 200]
[--repeat 5] [--workers-proc 1] [--threads 8]``. Needs Docker and ganache.

What runs: ganache with the Ocean V4 contracts (the provider reads the chain id at start); a real
job of the dev ``consumer`` account in the busybox image, ``dd if=/dev/zero
of=$OUTPUTS/big.bin bs=1M count=MB``, in an environment whose egress and disk limits fit it;
``tidewater serve --no-engine`` on the job's SQLite store and data dir.

Then, interleaved ``--repeat`` times, each side read into one 1 MiB buffer that is thrown away
(``readinto``: neither side pays for copies the other does not): the file from disk (page
cache: the job just wrote it); a signed computeResult download over loopback HTTP (nonce =
stored + 1, signature over ``consumerAddress + jobId + index + nonce``, made before the clock
starts); and, as a reference for what loopback HTTP gives at best here, the same file from a
bare Flask app under gunicorn with the same settings, sent with ``send_file`` (sendfile(2)); those
two ``--pairs`` times per round, back to back with the order alternating, and their ratio is the
median of the pairs' ratios (a pair's two reads share the machine's state of the moment).
Each round then saves the same result with ``curl -o``
into a new file (a plain client writing to the same disk, no hash) and with
``ProviderClient.download_result`` (what clients use: into a new file, sha256 checked against
the job's result list). Medians of each are printed with the ratios computeResult / send_file
(goal >= 0.95) and download_result / curl, and what sha256 alone gives on one core here (the
client's ceiling). VmRSS / VmHWM of the gunicorn master and workers before and after show
whether memory stays flat while the file streams. Everything
listens on 127.0.0.1 and stops on exit.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    bare_gunicorn,
    bench_engine,
    bench_stack,
    memory_kib,
    run_shell_job,
    serve_args,
    server_processes,
    sigterm_as_ctrl_c,
)
from bench.summary import record
from contracts_abi.devchain import dev_account
from provider.request_auth import result_text
from provider.signatures import sign_text
from tidewater.client import ProviderClient
from tidewater.settings import Settings
from tidewater.stack import provider_server

MIB = 1024**2
TARGET_RATIO = 0.8
ENV_ID = "bench-download"
RESULT_NAME = "big.bin"


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def read_disk(path: Path, buffer: memoryview) -> int:
    """Read ``path`` into ``buffer`` chunk after chunk; returns the bytes read."""
    total = 0
    with path.open("rb", buffering=0) as handle:
        while n := handle.readinto(buffer):  # type: ignore[attr-defined]
            total += n
    return total


def read_http(url: str, buffer: memoryview) -> int:
    """One GET of ``url`` (loopback only) read into ``buffer`` chunk after chunk; returns the
    body bytes."""
    where = urlsplit(url)
    if where.hostname != "127.0.0.1":
        raise ValueError(f"refusing a non-loopback URL: {url}")
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    try:
        conn.request("GET", f"{where.path}?{where.query}")
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {where.path} -> {response.status}: {response.read(300)!r}")
        total = 0
        while n := response.readinto(buffer):
            total += n
        return total
    finally:
        conn.close()


def signed_query(api: ProviderClient, job_id: str, index: int) -> dict[str, str]:
    """computeResult parameters as ``ProviderClient.download_result`` builds them."""
    account = dev_account("consumer")
    nonce = api.next_nonce(account.address)
    text = result_text(account.address, job_id, index, str(nonce))
    return {
        "consumerAddress": account.address,
        "jobId": job_id,
        "index": str(index),
        "nonce": str(nonce),
        "signature": sign_text(account.key.hex(), text),
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def curl_to_file(url: str, folder: Path) -> float:
    """Seconds ``curl -o`` takes to save ``url`` (loopback only) into a new file in ``folder``:
    what a plain HTTP client writing to the same disk gives, without hashing."""
    if urlsplit(url).hostname != "127.0.0.1":
        raise ValueError(f"refusing a non-loopback URL: {url}")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "curl.bin"
    start = time.perf_counter()
    subprocess.run(["curl", "-sSf", "-o", str(target), url], check=True)
    took = time.perf_counter() - start
    target.unlink()
    return took


def sha256_speed(mb: int = 256) -> float:
    """MB/s of hashlib's sha256 over an in-memory buffer (4 MiB updates) on one core."""
    block = memoryview(os.urandom(4 * MIB))
    digest = hashlib.sha256()
    start = time.perf_counter()
    for _ in range(mb // 4):
        digest.update(block)
    return mb * MIB / 1e6 / (time.perf_counter() - start)


def memory(pids: list[int]) -> dict[int, tuple[int, int]]:
    return {pid: memory_kib(pid) for pid in pids}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="result size in MiB (200)")
    parser.add_argument("--repeat", type=int, default=5, help="timed reads of each side (5)")
    parser.add_argument(
        "--pairs",
        type=int,
        default=8,
        help="computeResult / send_file pairs per round, taken back to back (8)",
    )
    parser.add_argument("--workers-proc", type=int, default=1, help="gunicorn processes (1)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process (8)")
    parser.add_argument("--summary", type=Path, help="append the issue-16 rows to this file")
    args = parser.parse_args()
    sigterm_as_ctrl_c()
    consumer = dev_account("consumer")
    size = args.mb * MIB
    buffer = memoryview(bytearray(MIB))

    with tempfile.TemporaryDirectory(prefix="tidewater-bench-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        env, files = bench_stack(
            stack,
            folder,
            ENV_ID,
            diskGB=round(args.mb / 1024 + 1, 3),
            maxJobDuration=600,
            egress={"maxBytes": size + 16 * MIB, "maxFiles": 10},
        )
        _note(f"running a real job that writes {args.mb} MiB...")
        with bench_engine(Settings.from_env(env)) as engine:
            job = run_shell_job(
                engine,
                owner=consumer.address,
                env_id=ENV_ID,
                script=f"dd if=/dev/zero of=$OUTPUTS/{RESULT_NAME} bs=1M count={args.mb}\n",
                dataset_url=files + "/data.csv",
            )
            [result] = [r for r in job.results if r.filename == RESULT_NAME]
            path, _entry = engine.open_result(job.job_id, result.index)
        if result.filesize != size:
            raise RuntimeError(f"the job wrote {result.filesize} bytes, not {size}")
        _note("starting tidewater serve...")
        url = stack.enter_context(
            provider_server(
                env,
                extra_args=serve_args(args.workers_proc, args.threads),
                log_path=folder / "provider.log",
            )
        )
        api = ProviderClient(url, timeout=120)
        stack.callback(api.close)
        pids = server_processes(int(urlsplit(url).port or 0))
        bare = stack.enter_context(
            bare_gunicorn(folder, args.workers_proc, args.threads, serve_file=path)
        )
        api.nonce(consumer.address)  # every worker thread has served a request or not: same
        before = memory(pids)

        disk_s: list[float] = []
        http_s: list[float] = []
        bare_s: list[float] = []
        # The client's own cost shows on tmpfs; on the disk the file system's write path adds
        # its own (ext4 here), which curl pays too.
        destinations = {"disk": folder / "download"}
        if Path("/dev/shm").is_dir():
            destinations["tmpfs"] = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="tidewater-bench-", dir="/dev/shm")
                )
            )
        times: dict[str, list[float]] = {
            f"{who} {where}": [] for where in destinations for who in ("curl", "client")
        }
        verified = True
        for n in range(args.repeat):
            _note(f"round {n + 1}/{args.repeat}")
            start = time.perf_counter()
            got = read_disk(path, buffer)
            disk_s.append(time.perf_counter() - start)
            assert got == size, got
            for pair in range(args.pairs):  # back to back, the order alternating
                query = signed_query(api, job.job_id, result.index)  # not timed: 2 small calls
                sides = [
                    (http_s, f"{url}/api/services/computeResult?{urlencode(query)}"),
                    (bare_s, bare + "/file"),
                ]
                for seconds, side_url in sides if pair % 2 == 0 else sides[::-1]:
                    start = time.perf_counter()
                    got = read_http(side_url, buffer)
                    seconds.append(time.perf_counter() - start)
                    assert got == size, got
            for where, into in destinations.items():
                query = signed_query(api, job.job_id, result.index)
                times[f"curl {where}"].append(
                    curl_to_file(f"{url}/api/services/computeResult?{urlencode(query)}", into)
                )
                start = time.perf_counter()  # nonce read and signature included
                saved = api.download_result(
                    consumer, job.job_id, result.index, into, expect_sha256=result.sha256
                )
                times[f"client {where}"].append(time.perf_counter() - start)
                verified = verified and sha256_of(saved) == result.sha256
                saved.unlink()
        after = memory(pids)
        sha256_rate = sha256_speed()

    _report(
        args,
        {"disk": disk_s, "computeResult": http_s, "send_file": bare_s, **times},
        verified,
        sha256_rate,
        pids,
        before,
        after,
    )


def _report(
    args: argparse.Namespace,
    times: dict[str, list[float]],
    verified: bool,
    sha256_rate: float,
    pids: list[int],
    before: dict[int, tuple[int, int]],
    after: dict[int, tuple[int, int]],
) -> None:
    mb = args.mb * MIB / 1e6  # MB/s below are 10^6 bytes per second
    med = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"result {args.mb} MiB ({mb:.0f} MB), median of {args.repeat} interleaved rounds "
        f"({args.pairs} computeResult / send_file pairs each); "
        f"gunicorn gthread {args.workers_proc} process(es) x {args.threads} threads"
    )

    def row(label: str, name: str, note: str = "") -> None:
        print(f"  {label:<48}{mb / med[name]:>7.0f} MB/s  {med[name]:.3f} s  {note}".rstrip())

    row("disk read (page cache) -> 1 MiB buffer", "disk")
    row("reference: bare Flask send_file -> 1 MiB", "send_file", "(same gunicorn options)")
    row("GET computeResult -> 1 MiB buffer", "computeResult")
    # Each pair was taken back to back, so its ratio cancels the machine's slower drifts.
    paired = statistics.median(
        b / h for b, h in zip(times["send_file"], times["computeResult"], strict=True)
    )
    pairs = len(times["send_file"])
    print(
        f"  ratio computeResult / send_file {paired:.2f}, median of {pairs} back-to-back "
        f"pairs (ratio of the medians: {med['send_file'] / med['computeResult']:.2f})   "
        f"(goal >= 0.95)"
    )
    record(
        args.summary,
        f"`computeResult` ({args.mb} MiB) vs bare Flask `send_file`",
        f"{mb / med['computeResult']:,.0f} MB/s",
        f"{mb / med['send_file']:,.0f} MB/s; ratio: median of {pairs} back-to-back pairs",
        paired,
        ">= 0.95x",
    )
    print(f"  sha256 alone (hashlib, one core, in memory)     {sha256_rate:>7.0f} MB/s")
    for where in ("disk", "tmpfs"):
        if f"client {where}" not in med:
            continue
        row(f"reference: curl -o file on {where} (no hash)", f"curl {where}")
        row(
            f"download_result -> file on {where} + sha256",
            f"client {where}",
            f"(sha256 {'matches' if verified else 'DOES NOT MATCH'})",
        )
        print(
            f"  ratio download_result / curl -o, {where}: "
            f"{med[f'curl {where}'] / med[f'client {where}']:.2f}   (goal: >= 1000 MB/s)"
        )
        record(
            args.summary,
            f"`download_result` to a file on {where}, sha256 checked",
            f"{mb / med[f'client {where}']:,.0f} MB/s",
            f"`curl -o` same file system: {mb / med[f'curl {where}']:,.0f} MB/s; "
            f"sha256 alone: {sha256_rate:,.0f} MB/s",
            med[f"curl {where}"] / med[f"client {where}"],
            ">= 1,000 MB/s",
        )
    for name, seconds in times.items():
        print(f"  rounds, {name}: {' '.join(f'{mb / s:.0f}' for s in seconds)} MB/s")
    print("server memory, KiB (VmRSS / VmHWM = peak RSS since start):")
    print(f"  {'process':<16}{'before':>20}{'after':>20}")
    for n, pid in enumerate(pids):
        role = "master" if n == 0 else f"worker {n}"
        cells = "".join(f"{f'{m[pid][0]:,} / {m[pid][1]:,}':>20}" for m in (before, after))
        print(f"  {f'{role} ({pid})':<16}{cells}")
    total_hwm = [sum(hwm for _rss, hwm in m.values()) for m in (before, after)]
    print(
        f"  sum of peaks: {total_hwm[0]:,} -> {total_hwm[1]:,} KiB "
        f"(+{(total_hwm[1] - total_hwm[0]) / 1024:.1f} MiB for "
        f"{args.repeat * (args.pairs + len(times) - 3) * args.mb} MiB served by tidewater)"
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: everything the benchmark started is stopped")
