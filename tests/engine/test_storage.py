"""storage.py: every HTTP storage type through loopback gateways, fileinfo answers, the SSRF
guard on gateways, malformed file objects (smartcontract files run on ganache in
tests/provider/test_storage_types.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from operator_engine.fetch import FetchError
from operator_engine.storage import (
    StorageConfig,
    fetch_bytes,
    fetch_to_file,
    file_info,
    rpc_urls_of,
)
from tests.fixtures.gateways import Gateways, gateways
from tidewater.engine_config import storage_config
from tidewater.settings import Settings, SettingsError

CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
TX = "bNbA3TEQVL60xlgCcqdz4ZPHFZ711cZ3hmkpGttDt_U"
QUERY = "query { assets { id } }"


@pytest.fixture
def gw() -> Iterator[Gateways]:
    with gateways() as server:
        server.ipfs[CID] = b"ipfs bytes\n" * 100
        server.ipfs[f"{CID}/readme.txt"] = b"a file in a directory"
        server.arweave[TX] = b"arweave bytes"
        yield server


def config(gw: Gateways, *, allow: bool = True) -> StorageConfig:
    return StorageConfig(
        allow_non_public=allow,
        timeout=30.0,
        ipfs_gateway=gw.base_url + "/",
        arweave_gateway=gw.base_url,
    )


def files(gw: Gateways) -> list[tuple[dict[str, Any], bytes]]:
    return [
        ({"type": "ipfs", "hash": CID}, gw.ipfs[CID]),
        ({"type": "arweave", "transactionId": TX}, gw.arweave[TX]),
        (
            {"type": "graphql", "url": gw.base_url + "/graphql", "query": QUERY},
            Gateways.graphql_answer(QUERY),
        ),
    ]


def test_each_type_is_fetched_from_its_gateway(gw: Gateways, tmp_path: Path) -> None:
    for n, (file_obj, body) in enumerate(files(gw)):
        size, sha = fetch_to_file(file_obj, tmp_path / str(n), config(gw), max_bytes=10_000)
        assert (tmp_path / str(n)).read_bytes() == body
        assert (size, sha) == (len(body), hashlib.sha256(body).hexdigest())
    assert [r[:2] for r in gw.requests] == [
        ("GET", f"/ipfs/{CID}"),
        ("GET", f"/{TX}"),
        ("POST", "/graphql"),
    ]


def test_graphql_sends_headers_and_userdata_as_variables(gw: Gateways) -> None:
    file_obj = {
        "type": "graphql",
        "url": gw.base_url + "/graphql",
        "query": QUERY,
        "headers": {"Authorization": "Bearer x"},
    }
    data = fetch_bytes(file_obj, config(gw), max_bytes=1000, userdata={"first": 2})
    assert data == Gateways.graphql_answer(QUERY, {"first": 2})


def test_file_info_with_and_without_checksum(gw: Gateways) -> None:
    for file_obj, body in files(gw):
        plain = file_info(file_obj, config(gw))
        assert plain["valid"] is True and "checksum" not in plain
        info = file_info(file_obj, config(gw), checksum=True)
        assert info["checksum"] == hashlib.sha256(body).hexdigest()
        assert info["checksumType"] == "sha256"
        assert info["contentLength"] == str(len(body))
        assert info["type"] == file_obj["type"]
    named = file_info({"type": "ipfs", "hash": f"{CID}/readme.txt"}, config(gw))
    assert named["filename"] == "readme.txt"


def test_checksum_skipped_over_the_cap(gw: Gateways) -> None:
    info = file_info({"type": "ipfs", "hash": CID}, config(gw), checksum=True, max_checksum_bytes=5)
    assert info["valid"] is True and "checksum" not in info
    assert info["contentLength"] == str(len(gw.ipfs[CID]))


def test_missing_content_is_invalid(gw: Gateways) -> None:
    assert file_info({"type": "arweave", "transactionId": "nope"}, config(gw))["valid"] is False
    with pytest.raises(FetchError, match="404"):
        fetch_bytes({"type": "ipfs", "hash": "QmMissing"}, config(gw), max_bytes=10)


def test_loopback_gateways_refused_without_allow(gw: Gateways) -> None:
    for file_obj, _body in files(gw):
        with pytest.raises(FetchError, match="non-public"):
            fetch_bytes(file_obj, config(gw, allow=False), max_bytes=1000)
        assert file_info(file_obj, config(gw, allow=False))["valid"] is False
    assert gw.requests == []  # refused before connecting


def test_size_cap_applies_to_gateways(gw: Gateways) -> None:
    with pytest.raises(FetchError, match="limit"):
        fetch_bytes({"type": "ipfs", "hash": CID}, config(gw), max_bytes=10)


@pytest.mark.parametrize(
    ("abi", "match"),
    [
        ({"name": "mint", "type": "function", "stateMutability": "nonpayable"}, "view"),
        ({"type": "function", "stateMutability": "view"}, "name"),
        ({"name": "x", "type": "event"}, "function"),
        (
            {
                "name": "balanceOf",
                "type": "function",
                "stateMutability": "view",
                "inputs": [{"name": "account", "type": "address"}],
            },
            "userdata",
        ),
    ],
)
def test_smartcontract_refusals(abi: dict[str, Any], match: str) -> None:
    file_obj = {"type": "smartcontract", "address": "0x" + "1" * 40, "abi": abi, "chainId": 8996}
    cfg = StorageConfig(False, 30.0, rpc_urls={8996: "http://127.0.0.1:9"})
    with pytest.raises(FetchError, match=match):
        fetch_bytes(file_obj, cfg, max_bytes=100)


def test_smartcontract_on_an_unserved_chain() -> None:
    abi = {"name": "name", "type": "function", "stateMutability": "view", "inputs": []}
    file_obj = {"type": "smartcontract", "address": "0x" + "1" * 40, "abi": abi, "chainId": 5}
    cfg = StorageConfig(False, 30.0, rpc_urls={8996: "http://127.0.0.1:9"})
    with pytest.raises(FetchError, match="chain 5 is not served"):
        fetch_bytes(file_obj, cfg, max_bytes=100)


def test_config_from_settings() -> None:
    settings = Settings.from_env(
        {
            "IPFS_GATEWAY": "http://127.0.0.1:8080/",
            "ARWEAVE_GATEWAY": "http://127.0.0.1:1984",
            "NETWORK_URL": "http://127.0.0.1:8545",
        }
    )
    cfg = storage_config(settings)
    assert cfg.timeout == settings.fetch_timeout
    assert storage_config(settings, timeout=3).timeout == 3
    assert cfg.ipfs_gateway == "http://127.0.0.1:8080"
    assert cfg.arweave_gateway == "http://127.0.0.1:1984"
    assert cfg.default_rpc_url == "http://127.0.0.1:8545" and cfg.rpc_urls == {}
    assert Settings.from_env({}).ipfs_gateway == "https://ipfs.io"
    with pytest.raises(SettingsError, match="IPFS_GATEWAY"):
        Settings.from_env({"IPFS_GATEWAY": "ipfs.io"})
    assert rpc_urls_of({"8996": "http://a", 58008: "http://b"}) == (
        {8996: "http://a", 58008: "http://b"},
        None,
    )
    # NETWORK_URL as a per-chain map: every chain's URL (the first one is also the default,
    # used only for a chain id its node answers)
    multi = Settings.from_env({"NETWORK_URL": '{"8996": "http://a:1", "58008": "http://b:2"}'})
    cfg = storage_config(multi)
    assert cfg.rpc_urls == {8996: "http://a:1", 58008: "http://b:2"}
    assert rpc_urls_of('{"8996": "http://a"}') == ({8996: "http://a"}, None)


def test_engine_job_reads_gateway_files_configured_in_settings(
    tmp_path: Path, gw: Gateways
) -> None:
    """The engine builds its StorageConfig from Settings alone (as `tidewater engine` does)."""
    from operator_engine.backends.fake import FakeBackend
    from tests.engine.helpers import did, env, request, settings_for
    from tidewater.engine_config import build_engine

    seen: dict[str, bytes] = {}

    def algo(_spec: Any, dirs: dict[str, Path], _killed: Any) -> tuple[int, bool, bytes]:
        for path in sorted((dirs["inputs"] / did(1)[7:]).iterdir()):
            seen[path.name] = path.read_bytes()
        return 0, False, b""

    settings = settings_for(
        tmp_path,
        [env()],
        allow_non_public_ip=True,
        ipfs_gateway=gw.base_url,
        arweave_gateway=gw.base_url,
    )
    engine = build_engine(settings, backend=FakeBackend(algo))
    try:
        job = engine.submit(request(files=[f for f, _body in files(gw)]))
        engine.run_until_idle()
        assert engine.get(job.job_id).status == 70  # type: ignore[union-attr]
    finally:
        engine.shutdown()
    assert seen == {str(n): body for n, (_f, body) in enumerate(files(gw))}
