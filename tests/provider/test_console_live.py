"""Live job logs and the operator console against ``tidewater serve`` with real jobs (issue 15).

Everything is real: ganache with the Ocean V4 contracts, Docker running the python image, one
``tidewater serve`` process, and (for the console) Debian's headless Chromium driven by
Playwright. The algorithm prints lines, then waits for a file the test creates in its inputs
folder, so the test decides when a job ends.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi import publish
from contracts_abi.devchain import Ganache
from operator_engine.statuses import TERMINAL, JobStatus
from provider.admin.tokens import TokenStore
from provider.request_auth import logs_text
from provider.signatures import sign_text
from tests.fixtures.requirements import unavailable
from tests.provider.test_serve_resilience import (
    Files,
    LocalEncryptor,
    Provider,
    World,
    wait_for,
)
from tidewater.client import ProviderHTTPError
from tidewater.demo_roles import Publisher

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Prints three lines, then waits until the test creates ``inputs/release``.
CHATTY = b"""import os, pathlib, time
logs, inputs = pathlib.Path(os.environ["LOGS"]), pathlib.Path(os.environ["INPUTS"])
for i in range(3):
    print(f"chatty line {i}", flush=True)
(logs / "started").write_text("running")
while not (inputs / "release").exists():
    time.sleep(0.05)
pathlib.Path(os.environ["OUTPUTS"], "done.txt").write_text("released")
print("chatty done", flush=True)
"""


@pytest.fixture(scope="module")
def chatty(
    w3: Web3,
    deployed: dict[str, Any],
    provider_private_key: str,
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    docker_client: docker.DockerClient,
    python_image: str,
) -> Iterator[World]:
    files = Files()
    files.bodies["/chatty.py"] = CHATTY
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
    algorithm = owner.publish("algorithm", "chatty", files.url + "/chatty.py", container=container)
    trusted = [publish.trusted_algorithm(algorithm.ddo, [CHATTY])]
    data = owner.publish("dataset", "data", files.url + "/data.csv", trusted=trusted)
    for asset in (algorithm, data):
        owner.mint_to(asset, consumer_account.address, amount=10)
    env = {"id": "resilience", "consumerAddress": provider_address}
    yield World(
        w3,
        consumer_account,
        provider_address,
        files,
        algorithm,
        data,
        data,
        env,
        docker_client,
        python_image,
    )
    files.server.shutdown()
    files.server.server_close()


@pytest.fixture(scope="module")
def serving(
    tmp_path_factory: pytest.TempPathFactory,
    ganache: Ganache,
    address_file: Path,
    provider_private_key: str,
    chatty: World,
) -> Iterator[Provider]:
    """One ``tidewater serve`` for the module's tests."""
    made = Provider(
        tmp_path_factory.mktemp("console"), ganache, address_file, provider_private_key, chatty
    )
    with made.running():
        yield made
    for job_dir in (made.data_dir / "jobs").glob("*"):
        for container in made.containers(job_dir.name):
            container.remove(force=True)
    made.client.close()
    made.store.engine.dispose()


def _is_terminal(serving: Provider, job_id: str) -> bool:
    job = serving.store.get(job_id)
    return job is not None and job.status in TERMINAL


def test_a_consumer_follows_the_running_jobs_log_and_only_the_owner_can(
    serving: Provider, publisher_account: LocalAccount
) -> None:
    consumer = serving.world.consumer
    job_id = serving.start_job(serving.world.fast)
    serving.running_algorithm(job_id)
    # another signer: 4xx JSON, no log bytes (someone else's address, or a forged one)
    with pytest.raises(ProviderHTTPError) as theirs:
        serving.client.follow_logs(publisher_account, job_id)
    assert theirs.value.status == 404 and "chatty" not in str(theirs.value.body)
    nonce = serving.client.next_nonce(consumer.address)
    forged = requests.get(
        serving.url + "/api/services/computeLogs",
        params={
            "consumerAddress": consumer.address,
            "jobId": job_id,
            "nonce": nonce,
            "signature": sign_text(
                publisher_account.key.hex(), logs_text(consumer.address, job_id, str(nonce))
            ),
        },
        timeout=30,
    )
    assert forged.status_code == 400 and "chatty" not in forged.text, forged.text
    assert "signature" in forged.text.lower()

    with serving.client.follow_logs(consumer, job_id, events=True) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        lines = stream.iter_lines(decode_unicode=True)
        seen = []
        for line in lines:
            seen.append(line)
            if line == "data: chatty line 2":
                break
        assert [line for line in seen if line] == [f"data: chatty line {i}" for i in range(3)]
        assert not _is_terminal(serving, job_id)  # the lines came while the job runs
        serving.release(job_id)
        rest = list(lines)
    assert "data: chatty done" in rest and [x for x in rest if x][-2:] == ["event: end", "data: "]
    assert serving.ended(job_id) is JobStatus.FINISHED
    # plain text after the end: the whole log at once, and the stream closes
    with serving.client.follow_logs(consumer, job_id) as plain:
        assert plain.headers["Content-Type"].startswith("text/plain")
        text = plain.text
    assert text.splitlines()[:3] == [f"chatty line {i}" for i in range(3)]
    assert "chatty done" in text


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright (pip) is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright


def test_the_console_shows_jobs_live_and_stops_one(serving: Provider, tmp_path: Path) -> None:
    sync_playwright = _playwright()
    token = TokenStore(serving.store.engine).create("console-test")
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(serving.url + "/console")
            page.fill("#token", token)
            page.click("#login button[type=submit]")
            page.wait_for_selector("#connection[data-state=live]")
            page.wait_for_selector("#envs tr[data-env=resilience]")

            finishing = serving.start_job(serving.world.fast)
            page.wait_for_selector(f'#running tr[data-job="{finishing}"]')
            serving.running_algorithm(finishing)
            page.wait_for_selector(f'#running tr[data-job="{finishing}"] >> text=Running')
            # the running job's log tail shows its output live
            page.wait_for_selector(
                f'#running tr[data-job="{finishing}"] pre.tail >> text=chatty line 2'
            )
            serving.release(finishing)
            done = page.wait_for_selector(f'#finished tr[data-job="{finishing}"]')
            assert done is not None and "Job finished" in done.inner_text()
            assert serving.ended(finishing) is JobStatus.FINISHED

            stopping = serving.start_job(serving.world.fast)
            serving.running_algorithm(stopping)
            page.click(f'#running tr[data-job="{stopping}"] button.stop')
            stopped = page.wait_for_selector(f'#finished tr[data-job="{stopping}"]')
            assert stopped is not None
            assert serving.ended(stopping) is JobStatus.STOPPED
            reason = f'#finished tr[data-job="{stopping}"] td.reason'
            page.wait_for_selector(reason + " >> text=stopped by the operator")
            page.wait_for_selector("#chart svg rect.jobs")
            shot = tmp_path / "console.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("TIDEWATER_UPDATE_SCREENSHOT") == "1":
                shutil.copy(shot, Path(__file__).resolve().parents[2] / "docs" / "console.png")
        finally:
            browser.close()
    assert errors == []
    wait_for(lambda: not serving.containers(stopping), "the stopped job's container to go")
