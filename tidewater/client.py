"""A minimal Ocean V4 compute client: HTTP and a wallet, nothing else.

It talks to any Ocean-compatible provider the way ocean.py does (query strings for signed GET/
PUT/DELETE, nonces read from ``/api/services/nonce`` and sent as stored + 1), so the demo and the
benchmarks exercise tidewater exactly as a real client would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
from eth_account.signers.local import LocalAccount

from provider.request_auth import compute_start_text, job_text, logs_text, result_text
from provider.signatures import sign_text
from tidewater.download import TruncatedBodyError, save_body


class ProviderHTTPError(RuntimeError):
    """The provider answered with an error status; ``body`` holds its JSON (or text)."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path} -> {status}: {body}")
        self.status = status
        self.body = body


class ProviderClient:
    """Calls one provider at ``base_url`` (e.g. ``http://127.0.0.1:8030``)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        response = self.http.request(method, self.base_url + path, **kwargs)
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise ProviderHTTPError(method, path, response.status_code, body)
        return response

    # -- unsigned ------------------------------------------------------------------------

    def root(self) -> dict[str, Any]:
        return self._call("GET", "/").json()

    def nonce(self, address: str) -> str:
        return str(
            self._call("GET", "/api/services/nonce", params={"userAddress": address}).json()[
                "nonce"
            ]
        )

    def next_nonce(self, address: str) -> int:
        """ocean.py's rule: ``int(ceil(float(stored))) + 1``."""
        return math.ceil(Decimal(self.nonce(address))) + 1

    def encrypt(self, payload: bytes, chain_id: int) -> str:
        response = self._call(
            "POST",
            "/api/services/encrypt",
            params={"chainId": chain_id},
            data=payload,
            headers={"Content-Type": "application/octet-stream"},
        )
        return response.text

    def environments(self, chain_id: int) -> list[dict[str, Any]]:
        body = self._call(
            "GET", "/api/services/computeEnvironments", params={"chainId": chain_id}
        ).json()
        return list(body.get(str(chain_id), []))

    def initialize_compute(
        self,
        datasets: list[dict[str, Any]],
        algorithm: dict[str, Any],
        env: str,
        valid_until: int,
        consumer: str,
    ) -> dict[str, Any]:
        body = {
            "datasets": datasets,
            "algorithm": algorithm,
            "compute": {"env": env, "validUntil": valid_until},
            "consumerAddress": consumer,
        }
        return self._call("POST", "/api/services/initializeCompute", json=body).json()

    def status(self, consumer: str, job_id: str | None = None) -> list[dict[str, Any]]:
        params = {"consumerAddress": consumer}
        if job_id:
            params["jobId"] = job_id
        return self._call("GET", "/api/services/compute", params=params).json()

    # -- signed --------------------------------------------------------------------------

    def start_compute(
        self,
        account: LocalAccount,
        dataset: dict[str, Any],
        algorithm: dict[str, Any],
        env: str,
        additional_datasets: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        nonce = self.next_nonce(account.address)
        text = compute_start_text(account.address, str(dataset["documentId"]), str(nonce))
        body = {
            "consumerAddress": account.address,
            "signature": sign_text(account.key.hex(), text),
            "nonce": nonce,
            "environment": env,
            "dataset": dataset,
            "algorithm": algorithm,
            "additionalDatasets": additional_datasets or [],
        }
        return self._call("POST", "/api/services/compute", json=body).json()[0]

    def _signed_job_params(
        self, account: LocalAccount, job_id: str, did: str = ""
    ) -> dict[str, Any]:
        nonce = self.next_nonce(account.address)
        text = job_text(account.address, job_id, did, str(nonce))
        return {
            "consumerAddress": account.address,
            "jobId": job_id,
            "documentId": did,
            "nonce": nonce,
            "signature": sign_text(account.key.hex(), text),
        }

    def stop(self, account: LocalAccount, job_id: str, did: str = "") -> list[dict[str, Any]]:
        params = self._signed_job_params(account, job_id, did)
        return self._call("PUT", "/api/services/compute", params=params).json()

    def delete(self, account: LocalAccount, job_id: str, did: str = "") -> list[dict[str, Any]]:
        params = self._signed_job_params(account, job_id, did)
        return self._call("DELETE", "/api/services/compute", params=params).json()

    def follow_logs(
        self, account: LocalAccount, job_id: str, *, events: bool = False
    ) -> requests.Response:
        """The running job's log stream (``computeLogs``, signed ``address + jobId + nonce``):
        iterate ``iter_lines()`` until it ends with the job, then close it. ``events`` asks for
        Server-Sent Events (``data: <line>`` … ``event: end``) instead of plain text."""
        nonce = self.next_nonce(account.address)
        params = {
            "consumerAddress": account.address,
            "jobId": job_id,
            "nonce": nonce,
            "signature": sign_text(
                account.key.hex(), logs_text(account.address, job_id, str(nonce))
            ),
        }
        accept = "text/event-stream" if events else "text/plain"
        return self._call(
            "GET",
            "/api/services/computeLogs",
            params=params,
            headers={"Accept": accept},
            stream=True,
        )

    def download_result(
        self,
        account: LocalAccount,
        job_id: str,
        index: int,
        dest: Path,
        *,
        expect_sha256: str | None = None,
    ) -> Path:
        """Stream result ``index`` of ``job_id`` into ``dest`` (a folder); returns the file.

        The body goes from the socket to disk through a few reused buffers, hashed on the way
        (:func:`tidewater.download.save_body`); with ``expect_sha256`` a mismatch, or a body
        cut short, removes the file and raises :class:`ProviderHTTPError`. A failed read or
        write (a full disk) removes the file too, and raises as it was."""
        nonce = self.next_nonce(account.address)
        params = {
            "consumerAddress": account.address,
            "jobId": job_id,
            "index": index,
            "nonce": nonce,
            "signature": sign_text(
                account.key.hex(), result_text(account.address, job_id, index, str(nonce))
            ),
        }
        response = self._call("GET", "/api/services/computeResult", params=params, stream=True)
        disposition = response.headers.get("Content-Disposition", "")
        name = disposition.partition("filename=")[2].strip('"') or f"result-{index}"
        target = dest / Path(name).name
        dest.mkdir(parents=True, exist_ok=True)
        with response:
            try:
                sha256, _size = save_body(response, target)
            except TruncatedBodyError as exc:
                problem = str(exc)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            else:
                if expect_sha256 is None or sha256 == expect_sha256.lower():
                    return target
                problem = f"sha256 {sha256} is not the listed {expect_sha256}"
        target.unlink()
        raise ProviderHTTPError(
            "GET",
            "/api/services/computeResult",
            response.status_code,
            f"result {index} of {job_id}: {problem}",
        )

    def wait_for_job(
        self,
        consumer: str,
        job_id: str,
        *,
        timeout: float = 600.0,
        interval: float = 0.5,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job has ``dateFinished`` (what ocean.py waits on); returns the job."""
        for job in self._poll(consumer, job_id, timeout, interval):
            if on_status:
                on_status(job)
            if job.get("dateFinished"):
                return job
        raise TimeoutError(f"job {job_id} did not finish within {timeout:.0f} s")

    def _poll(
        self, consumer: str, job_id: str, timeout: float, interval: float
    ) -> Iterator[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.status(consumer, job_id)
            if jobs:
                yield jobs[0]
            time.sleep(interval)
