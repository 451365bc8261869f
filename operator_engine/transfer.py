"""The in-pod data mover of the Kubernetes backend: ``python -m operator_engine.transfer``.

``pull``: fetch the job's inputs tar from the provider's internal endpoint into ``--dest``
(the pod's ``/data`` emptyDir). ``push``: send ``outputs/`` and ``logs/`` of ``--source``
back, retrying while the provider answers 409 ``not_armed`` or cannot be reached yet.
``offline``: wait until the engine has closed the pod's network (the pod's labels, read from
a downward-API file, say so) and the provider really is unreachable — the gate the
algorithm container starts behind. The job token comes from ``TIDEWATER_TRANSFER_TOKEN``
(never from the command line). Exit status 0 on success, 1 with one line on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests

from operator_engine.transfer_tar import TarRefused, extract, stream

TOKEN_ENV = "TIDEWATER_TRANSFER_TOKEN"
INPUT_TOPS = ("inputs", "transformations", "ddos")
OUTPUT_TOPS = ("outputs", "logs")
PUSHED_TOPS = ("outputs",)  # the algorithm's own files in logs/ are never results
NETWORK_LABEL = "tidewater.io/network"
RETRY_SECONDS = 2.0


class TransferFailed(RuntimeError):
    """The transfer cannot succeed; the message is the one line the pod's log shows."""


def _headers() -> dict[str, str]:
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise TransferFailed(f"{TOKEN_ENV} is not set")
    return {"Authorization": f"Bearer {token}"}


def endpoint(url: str, job_id: str, what: str) -> str:
    """The internal endpoint of ``what`` (inputs, outputs) for ``job_id``.

    >>> endpoint("http://10.0.0.5:8030/", "abc", "inputs")
    'http://10.0.0.5:8030/internal/jobs/abc/inputs'
    """
    return f"{url.rstrip('/')}/internal/jobs/{job_id}/{what}"


def _refusal(response: requests.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    if not isinstance(body, dict):
        return "", str(body)[:200]
    return str(body.get("code", "")), str(body.get("error", ""))


def _until(deadline: float, attempt: Callable[[], bool]) -> None:
    """Run ``attempt`` until it returns True, every RETRY_SECONDS, failing after ``deadline``."""
    while not attempt():
        if time.monotonic() + RETRY_SECONDS > deadline:
            raise TransferFailed("gave up waiting (--wait seconds passed)")
        time.sleep(RETRY_SECONDS)


def pull(url: str, job_id: str, dest: Path, max_bytes: int, wait: float) -> tuple[int, int]:
    """Fetch and extract the job's inputs; (files, bytes). A connection refused or timing out
    is retried (the pod's egress rule may still be on its way) until ``wait`` seconds."""
    done: list[tuple[int, int]] = []
    headers = _headers()

    def attempt() -> bool:
        try:
            response = requests.get(
                endpoint(url, job_id, "inputs"), headers=headers, stream=True, timeout=(5, 60)
            )
        except requests.ConnectionError:
            return False
        with response:
            if response.status_code != 200:
                code, message = _refusal(response)
                raise TransferFailed(f"inputs refused ({response.status_code} {code}): {message}")
            response.raw.decode_content = True
            try:
                done.append(extract(response.raw, dest, INPUT_TOPS, max_bytes=max_bytes))
                for writable in OUTPUT_TOPS:  # owned by the pod's user, not made by the kubelet
                    (dest / writable).mkdir(exist_ok=True)
            except (TarRefused, requests.RequestException, OSError) as exc:
                raise TransferFailed(f"inputs could not be received: {exc}") from exc
        return True

    _until(time.monotonic() + wait, attempt)
    return done[0]


def push(url: str, job_id: str, source: Path, wait: float) -> dict[str, object]:
    """Send ``source``'s outputs and logs; the provider's answer. Retries while the provider
    cannot be reached or answers 409 ``not_armed`` (the engine has not yet seen the algorithm
    end), until ``wait`` seconds."""
    answer: dict[str, object] = {}
    headers = {**_headers(), "Content-Type": "application/x-tar"}

    def attempt() -> bool:
        try:
            response = requests.put(
                endpoint(url, job_id, "outputs"),
                data=stream(source, PUSHED_TOPS),
                headers=headers,
                timeout=(5, 600),
            )
        except requests.ConnectionError:
            return False
        code, message = _refusal(response)
        if response.status_code == 409 and code == "not_armed":
            return False
        if response.status_code != 200:
            raise TransferFailed(f"outputs refused ({response.status_code} {code}): {message}")
        answer.update(response.json())
        return True

    _until(time.monotonic() + wait, attempt)
    return answer


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=2):
            return True
    except OSError:
        return False


def labels_say(path: Path, value: str) -> bool:
    """True when the downward-API labels file ``path`` sets the network label to ``value``.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "labels"
    >>> _ = f.write_text('app="x"\\ntidewater.io/network="closed"\\n')
    >>> labels_say(f, "closed"), labels_say(f, "transfer")
    (True, False)
    """
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return False
    return f"{NETWORK_LABEL}={json.dumps(value)}" in lines


def offline(url: str, labels: Path, wait: float, checks: int = 3) -> None:
    """Return once ``labels`` say the network is closed and ``checks`` connection attempts in
    a row to the provider fail; raise :class:`TransferFailed` after ``wait`` seconds."""
    failures = [0]

    def attempt() -> bool:
        if not labels_say(labels, "closed"):
            failures[0] = 0
            return False
        failures[0] = 0 if _reachable(url) else failures[0] + 1
        return failures[0] >= checks

    _until(time.monotonic() + wait, attempt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m operator_engine.transfer")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("pull", "push", "offline"):
        command = sub.add_parser(name)
        command.add_argument("--url", required=True, help="the provider's internal URL")
        command.add_argument("--wait", type=float, default=300.0, help="seconds to keep trying")
        if name != "offline":
            command.add_argument("--job", required=True, help="the job id")
    sub.choices["pull"].add_argument("--dest", type=Path, required=True)
    sub.choices["pull"].add_argument("--max-bytes", type=int, required=True)
    sub.choices["push"].add_argument("--source", type=Path, required=True)
    sub.choices["offline"].add_argument("--labels", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "pull":
            files, size = pull(args.url, args.job, args.dest, args.max_bytes, args.wait)
            print(f"inputs received: {files} file(s), {size} bytes")
        elif args.command == "push":
            print(f"outputs sent: {json.dumps(push(args.url, args.job, args.source, args.wait))}")
        else:
            offline(args.url, args.labels, args.wait)
            print("network closed: the algorithm may start")
    except TransferFailed as exc:
        print(f"transfer {args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
