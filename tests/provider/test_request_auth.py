"""provider.request_auth: each signed-message layout, signed with eth-account and verified by
the server's checks; the client (``tidewater.client``) signs with the same builders."""

from __future__ import annotations

import doctest
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine as SqlEngine
from werkzeug.serving import make_server

import provider.request_auth as request_auth
import tidewater.client as client_module
from datastore.engine import make_engine
from datastore.migrate import upgrade
from operator_engine.api import Engine
from operator_engine.statuses import JobStatus
from provider.errors import RequestValidationError, SignatureError
from provider.nonces import NonceStore
from provider.request_auth import (
    COMMANDS,
    Layout,
    command_text,
    compute_start_text,
    decrypt_text,
    download_text,
    job_text,
    logs_text,
    result_text,
    unsigned_nonce_stop_text,
    verify_command,
    verify_request,
    verify_with_next_nonce,
)
from tests.engine.conftest import FileServer
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    OUTPUTS,
    app_fixture,
    engine_fixture,
    files_fixture,
    settings_fixture,
    submit,
)
from tidewater.client import ProviderClient, ProviderHTTPError

KEY = "0x" + "66" * 32
ADDRESS = Account.from_key(KEY).address
OTHER_KEY = "0x" + "77" * 32
JOB = "4f1c0b7e9d2a4e3f8a6b5c4d3e2f1a0b"
DID = "did:op:" + "ab" * 32
TX = "0x" + "12" * 32
NFT = "0x" + "cd" * 20


def eth_sign(key: str, text: str) -> str:
    """What ocean.py / ocean.js 3 send: eth-account's personal_sign of keccak(utf8(text))."""
    signed = Account.sign_message(encode_defunct(primitive=keccak(text=text)), private_key=key)
    return "0x" + bytes(signed.signature).hex()


def ethers_sign(key: str, text: str) -> str:
    """What ocean.js 8 sends: personal_sign of keccak(utf8(text)) without its leading zeros."""
    digest = keccak(text=text).lstrip(b"\0")
    signed = Account.sign_message(encode_defunct(primitive=digest), private_key=key)
    return "0x" + bytes(signed.signature).hex()


@pytest.fixture(name="migrated", scope="module")
def migrated_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty store at the current schema, made once (each test copies it)."""
    path = tmp_path_factory.mktemp("auth") / "template.db"
    db: SqlEngine = make_engine(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    return path


@pytest.fixture(name="store")
def store_fixture(migrated: Path, tmp_path: Path) -> Iterator[NonceStore]:
    db: SqlEngine = make_engine(f"sqlite:///{shutil.copy(migrated, tmp_path / 'n.db')}")
    yield NonceStore(db)
    db.dispose()


def test_doctests() -> None:
    assert doctest.testmod(request_auth).failed == 0


#: Every V4 layout with its fields bound, and the text the wire format says it signs for nonce 7.
V4_LAYOUTS: dict[str, tuple[Layout, str]] = {
    "compute start": (partial(compute_start_text, ADDRESS, DID), ADDRESS + DID + "7"),
    "stop/delete": (partial(job_text, ADDRESS, JOB, DID), ADDRESS + JOB + DID + "7"),
    "stop/delete, no did": (partial(job_text, ADDRESS, JOB, None), ADDRESS + JOB + "7"),
    "computeResult": (partial(result_text, ADDRESS, JOB, 3), ADDRESS + JOB + "3" + "7"),
    "computeLogs": (partial(logs_text, ADDRESS, JOB), ADDRESS + JOB + "7"),
    "download": (partial(download_text, DID), DID + "7"),
    "decrypt (tx)": (partial(decrypt_text, TX, ADDRESS, 8996), TX + ADDRESS + "8996" + "7"),
    "decrypt (nft)": (partial(decrypt_text, NFT, ADDRESS, "8996"), NFT + ADDRESS + "89967"),
}


@pytest.mark.parametrize("name", sorted(V4_LAYOUTS))
def test_v4_layout_is_the_wire_text(name: str) -> None:
    layout, expected = V4_LAYOUTS[name]
    assert layout("7") == expected


def test_the_nonceless_layouts() -> None:
    assert unsigned_nonce_stop_text(ADDRESS, JOB) == ADDRESS + JOB
    assert command_text(ADDRESS, "7", "startCompute") == ADDRESS + "7startCompute"
    assert command_text(ADDRESS, "7", "") == ADDRESS + "7"  # invalidateAuthToken


@pytest.mark.parametrize("name", sorted(V4_LAYOUTS))
def test_v4_round_trip_with_eth_account(store: NonceStore, name: str) -> None:
    layout, _expected = V4_LAYOUTS[name]
    forged = eth_sign(OTHER_KEY, layout("7"))
    with pytest.raises(SignatureError, match="signer is not consumerAddress"):
        verify_request(ADDRESS, forged, "7", layout, store=store)
    assert store.get(ADDRESS) == "1"  # a forged signature moves no nonce
    signature = eth_sign(KEY, layout("7"))
    assert verify_request(ADDRESS, signature, "7", layout, store=store) == "7"
    assert store.get(ADDRESS) == "7"
    with pytest.raises(SignatureError, match="expected nonce"):  # a replay
        verify_request(ADDRESS, signature, "7", layout, store=store)


def test_v4_v_as_zero_or_one_and_the_nonce_as_sent(store: NonceStore) -> None:
    layout = partial(result_text, ADDRESS, JOB, 0)
    signature = eth_sign(KEY, layout("10.50"))
    ocean_py = signature[:-2] + f"{int(signature[-2:], 16) - 27:02x}"
    assert verify_request(ADDRESS, ocean_py, "10.50", layout, store=store) == "10.50"


def test_delete_without_a_nonce_signs_stored_plus_one(store: NonceStore) -> None:
    store.consume(ADDRESS, "41")
    layout = partial(job_text, ADDRESS, JOB, DID)
    signature = eth_sign(KEY, layout("42"))
    assert verify_with_next_nonce(ADDRESS, signature, layout, store=store) == "42"
    with pytest.raises(SignatureError):  # replay: stored is now 42, so 43 is expected
        verify_with_next_nonce(ADDRESS, signature, layout, store=store)


@pytest.mark.parametrize("command", sorted(COMMANDS | {""}))
def test_v2_round_trip_with_eth_account(store: NonceStore, command: str) -> None:
    text = command_text(ADDRESS, "5", command)
    with pytest.raises(SignatureError):
        verify_command(ADDRESS, ethers_sign(OTHER_KEY, text), "5", command, store=store)
    with pytest.raises(SignatureError):  # a V4 signature of the v2 text is not accepted
        verify_command(ADDRESS, eth_sign(KEY, text + "x"), "5", command, store=store)
    assert verify_command(ADDRESS, ethers_sign(KEY, text), "5", command, store=store) == "5"
    assert store.get(ADDRESS) == "5"


def test_v2_result_also_takes_the_v4_layout(store: NonceStore) -> None:
    v4 = partial(result_text, ADDRESS, JOB, 1)
    signature = eth_sign(KEY, v4("3"))
    with pytest.raises(SignatureError):  # without the V4 layout only the v2 text counts
        verify_command(ADDRESS, signature, "3", "getComputeResult", store=store)
    assert (
        verify_command(ADDRESS, signature, "3", "getComputeResult", store=store, v4_layout=v4)
        == "3"
    )


@settings(max_examples=25, deadline=None)
@given(job=st.text(max_size=80), index=st.integers(0, 10**6), nonce=st.integers(2, 10**15))
def test_result_layout_round_trips_any_fields(job: str, index: int, nonce: int) -> None:
    layout = partial(result_text, ADDRESS, job, index)
    signature = eth_sign(KEY, layout(str(nonce)))
    assert request_auth.signer_matches(ADDRESS, signature, layout(str(nonce)))
    assert not request_auth.signer_matches(ADDRESS, signature, layout(str(nonce + 1)))


@pytest.mark.parametrize(
    ("signature", "nonce", "field", "message"),
    [
        (None, "2", "signature", "The signature field is required."),
        ("", "2", "signature", "The signature field is required."),
        ("0xsig", None, "nonce", "The nonce field is required."),
        ("0xsig", "", "nonce", "The nonce field is required."),
        ("0xsig", True, "nonce", "The nonce field must be a number."),
    ],
)
def test_missing_fields(
    store: NonceStore, signature: object, nonce: object, field: str, message: str
) -> None:
    with pytest.raises(RequestValidationError) as info:
        verify_request(ADDRESS, signature, nonce, partial(download_text, DID), store=store)
    assert info.value.errors == {field: [message]}


# -- the client and the server sign and check one layout -------------------------------------
def test_the_client_signs_with_the_servers_builders() -> None:
    for name in ("compute_start_text", "job_text", "logs_text", "result_text"):
        assert getattr(client_module, name) is getattr(request_auth, name)


@pytest.fixture(name="served")
def served_fixture(app: Flask) -> Iterator[ProviderClient]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = ProviderClient(f"http://127.0.0.1:{server.server_port}", timeout=60)
    yield client
    client.close()
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_clients_signed_requests_pass_the_servers_checks(
    served: ProviderClient, engine: Engine, files: FileServer, tmp_path: Path
) -> None:
    consumer = Account.from_key(KEY)
    job = submit(engine, consumer.address, files)
    [status] = served.status(consumer.address, job.job_id)
    names = {r["filename"]: r["index"] for r in status["results"]}
    path = served.download_result(consumer, job.job_id, names["note.txt"], tmp_path)
    assert path.read_bytes() == OUTPUTS["note.txt"]
    with served.follow_logs(consumer, job.job_id) as stream:  # the job has ended: the log so far
        assert b"fake run" in stream.content
    other = Account.from_key(OTHER_KEY)
    with pytest.raises(ProviderHTTPError) as refused:  # signed, but not the owner
        served.download_result(other, job.job_id, 0, tmp_path)
    assert refused.value.status == 404
    assert served.stop(consumer, job.job_id)[0]["status"] == int(JobStatus.FINISHED)
    assert served.delete(consumer, job.job_id)[0]["status"] == int(JobStatus.DELETED)
