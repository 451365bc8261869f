"""Several chains in one provider: discovery, chain selection, and a chain that is down.

Fakes stand in for the nodes (only ``eth.chain_id`` is read here); the real two-chain compute
flow is in ``test_multichain_flow.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ecies
import pytest
from eth_account import Account
from flask.testing import FlaskClient
from web3 import Web3

from operator_engine.api import Engine
from provider.app import create_app
from provider.chains import ChainUnavailableError
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    FAKE_OCEAN,
    OTHER_KEY,
    PROVIDER_KEY,
    engine_fixture,
    fake_web3,
    make_settings,
    settings_fixture,
)
from tidewater.settings import Settings

OCEAN_A = Web3.to_checksum_address("0x" + "a1" * 20)
OCEAN_B = Web3.to_checksum_address("0x" + "b2" * 20)


class Node:
    """A fake node that can be stopped and started again (only its chain id is read)."""

    def __init__(self, chain_id: int) -> None:
        self.up = True
        self._chain_id = chain_id
        self.eth = self

    def contract(self, **_kwargs: Any) -> Any:
        return SimpleNamespace()

    def get_code(self, address: str) -> bytes:
        if not self.up:
            raise ConnectionRefusedError("connection refused")
        return b"" if int(address, 16) == 0 else b"\x60\x80"

    @property
    def chain_id(self) -> int:
        if not self.up:
            raise ConnectionRefusedError("connection refused")
        return self._chain_id


def two_chain_settings(tmp_path: Path, **changes: Any) -> Settings:
    settings = make_settings(tmp_path)
    envs = json.loads(Path(str(settings.environments_file)).read_text())
    envs[1]["feeToken"] = {"8996": OCEAN_A, "58008": OCEAN_B}
    Path(str(settings.environments_file)).write_text(json.dumps(envs))
    return settings.with_(
        network_urls={8996: "http://127.0.0.1:9", 58008: "http://127.0.0.1:9"},
        provider_private_keys={8996: PROVIDER_KEY, 58008: OTHER_KEY},
        **changes,
    )


@pytest.fixture
def nodes() -> dict[int, Node]:
    return {8996: Node(8996), 58008: Node(58008)}


@pytest.fixture
def client(tmp_path: Path, engine: Engine, nodes: dict[int, Node]) -> FlaskClient:
    return create_app(two_chain_settings(tmp_path), engine=engine, web3=nodes).test_client()


def test_root_lists_every_chain_and_its_provider_address(client: FlaskClient) -> None:
    body = client.get("/").json
    assert body["chainIds"] == [8996, 58008]
    assert body["providerAddresses"] == {
        "8996": Account.from_key(PROVIDER_KEY).address,
        "58008": Account.from_key(OTHER_KEY).address,
    }


def test_environments_are_listed_per_chain_with_that_chains_fee_token(
    client: FlaskClient,
) -> None:
    every = client.get("/api/services/computeEnvironments").json
    assert set(every) == {"8996", "58008"}
    paid = {chain: {e["id"]: e for e in envs}["paid"] for chain, envs in every.items()}
    assert paid["8996"]["feeToken"] == OCEAN_A and paid["58008"]["feeToken"] == OCEAN_B
    free_b = {e["id"]: e for e in every["58008"]}["free"]
    assert free_b["consumerAddress"] == Account.from_key(OTHER_KEY).address
    one = client.get("/api/services/computeEnvironments?chainId=58008").json
    assert list(one) == ["58008"]
    assert [e["feeToken"] for e in one["58008"]] == [e["feeToken"] for e in every["58008"]]


@pytest.mark.parametrize(
    ("route", "method", "body"),
    [
        ("/api/services/computeEnvironments?chainId=1", "get", None),
        ("/api/services/encrypt?chainId=1", "post", b"x"),
        (
            "/api/services/initializeCompute",
            "post",
            {
                "datasets": [{"documentId": "did:op:" + "ab" * 32, "serviceId": "s"}],
                "algorithm": {"meta": {}},
                "compute": {"env": "free", "validUntil": 9999999999},
                "consumerAddress": "0x" + "12" * 20,
                "chainId": 1,
            },
        ),
    ],
)
def test_a_chain_not_served_is_400_naming_the_served_ones(
    client: FlaskClient, route: str, method: str, body: Any
) -> None:
    send = getattr(client, method)
    reply = send(route, json=body) if isinstance(body, dict) else send(route, data=body)
    assert reply.status_code == 400
    assert reply.json == {"error": "Unsupported chain ID 1: this provider serves 8996, 58008"}


def test_a_chain_id_that_is_not_a_number_is_a_validation_error(client: FlaskClient) -> None:
    reply = client.get("/api/services/computeEnvironments?chainId=mainnet")
    assert reply.status_code == 400
    assert reply.json["errors"] == {"chainId": ["The chainId field must be an integer."]}


def test_encrypt_uses_the_key_of_the_requested_chain(client: FlaskClient) -> None:
    reply = client.post("/api/services/encrypt?chainId=58008", data=b"secret files")
    assert reply.status_code == 201
    blob = bytes.fromhex(reply.get_data(as_text=True)[2:])
    assert ecies.decrypt(OTHER_KEY, blob) == b"secret files"
    with pytest.raises(ValueError):
        ecies.decrypt(PROVIDER_KEY, blob)


def _initialize(client: FlaskClient, chain_id: int | None, did: str = "did:op:" + "ab" * 32) -> Any:
    body: dict[str, Any] = {
        "datasets": [{"documentId": did, "serviceId": "s"}],
        "algorithm": {"meta": {}},
        "compute": {"env": "free", "validUntil": 9999999999},
        "consumerAddress": "0x" + "12" * 20,
    }
    if chain_id is not None:
        body["chainId"] = chain_id
    return client.post("/api/services/initializeCompute", json=body)


def test_a_chain_that_is_down_fails_only_its_own_requests(
    client: FlaskClient, nodes: dict[int, Node]
) -> None:
    nodes[58008].up = False
    down = _initialize(client, 58008)
    assert down.status_code == 503
    assert down.json["error"].startswith("chain 58008 is unavailable: its RPC endpoint did not")
    up = _initialize(client, 8996)  # served: no asset here, so the asset's own error
    assert up.status_code == 400 and up.json == {"error": {"datasets[0]": "did_not_found"}}
    assert client.get("/").status_code == 200
    nodes[58008].up = True
    assert _initialize(client, 58008).json == {"error": {"datasets[0]": "did_not_found"}}


def test_a_did_on_no_served_chain_is_not_found(client: FlaskClient) -> None:
    reply = _initialize(client, None, "did:op:" + "cd" * 32)
    assert reply.status_code == 400
    assert reply.json == {"error": {"datasets[0]": "did_not_found"}}


def test_start_up_with_a_chain_down_serves_the_others(
    tmp_path: Path, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    down = Node(58008)
    down.up = False
    with caplog.at_level(logging.WARNING, logger="provider.app"):
        app = create_app(
            two_chain_settings(tmp_path), engine=engine, web3={8996: Node(8996), 58008: down}
        )
    assert any("chain 58008" in r.getMessage() and "503" in r.getMessage() for r in caplog.records)
    client = app.test_client()
    assert client.get("/").json["chainIds"] == [8996, 58008]
    assert _initialize(client, 58008).status_code == 503
    assert _initialize(client, 8996).status_code == 400
    # its fee tokens could not be checked yet: not listed, and 503 when asked for by chain id
    listed = client.get("/api/services/computeEnvironments").json
    assert listed["58008"] == [] and len(listed["8996"]) == 2
    asked = client.get("/api/services/computeEnvironments?chainId=58008")
    assert asked.status_code == 503 and "chain 58008" in asked.json["error"]
    down.up = True
    listed = client.get("/api/services/computeEnvironments").json
    tokens = [e["feeToken"] for e in listed["58008"]]
    assert tokens == [Web3.to_checksum_address(FAKE_OCEAN), OCEAN_B]


def test_a_node_answering_another_chain_id_stops_start_up(tmp_path: Path, engine: Engine) -> None:
    with pytest.raises(ChainUnavailableError, match=r"node for chain 58008 .* is chain 1"):
        create_app(
            two_chain_settings(tmp_path),
            engine=engine,
            web3={8996: fake_web3(8996), 58008: fake_web3(1)},
        )


def test_each_chains_client_turns_its_outages_into_503_naming_it(tmp_path: Path) -> None:
    from contracts_abi.devchain import free_port
    from provider.chain import ChainUnavailable
    from provider.chains import build_chains

    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: both nodes are down
    settings = two_chain_settings(tmp_path).with_(network_urls={8996: down, 58008: down})
    chains = build_chains(settings)
    for chain_id, chain in chains.items():
        with pytest.raises(ChainUnavailable, match=f"^chain {chain_id} is unavailable") as caught:
            chain.web3.eth.get_block("latest")  # any RPC call made mid-request
        assert caught.value.status_code == 503 and down not in caught.value.message


def test_serve_starts_when_a_chain_of_a_json_network_url_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from contracts_abi.devchain import free_port
    from tidewater.commands.serve import preflight

    down = f"http://127.0.0.1:{free_port()}"
    settings = two_chain_settings(tmp_path).with_(
        network_urls={8996: down, 58008: down}, environments_file=None
    )
    with caplog.at_level(logging.WARNING, logger="tidewater.serve"):
        assert preflight(settings, engine=False) == []
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "chain 8996" in logged and "chain 58008" in logged and "unreachable" in logged


def test_an_aquarius_resolver_answers_each_chain_only_its_own_assets() -> None:
    from provider.asset import Asset
    from provider.assets import ChainFilter

    def asset(chain_id: int) -> Asset:
        return Asset("did:op:x", {}, 0, "0x" + "00" * 20, "", chain_id)

    class Shared:
        def __init__(self, found: Asset) -> None:
            self.found = found

        def resolve(self, did: str) -> Asset:
            return self.found

    assert ChainFilter(Shared(asset(58008)), 58008).resolve("did:op:x") is not None
    assert ChainFilter(Shared(asset(58008)), 8996).resolve("did:op:x") is None
    assert ChainFilter(Shared(asset(0)), 8996).resolve("did:op:x") is not None  # names no chain


def test_a_did_is_found_on_its_chain_whatever_the_others_state(
    tmp_path: Path, engine: Engine, nodes: dict[int, Node]
) -> None:
    from provider.asset import Asset
    from provider.chain import ChainUnavailable

    known, unknown = "did:op:" + "0a" * 32, "did:op:" + "0b" * 32

    class Fixed:
        def __init__(self, assets: dict[str, Asset]) -> None:
            self.assets = assets

        def resolve(self, did: str) -> Asset | None:
            return self.assets.get(did)

    svc = create_app(two_chain_settings(tmp_path), engine=engine, web3=nodes).extensions[
        "tidewater"
    ]
    svc.chains[8996].resolver = Fixed({known: Asset(known, {}, 0, "0x" + "00" * 20, "", 8996)})
    svc.chains[58008].resolver = Fixed({})
    nodes[58008].up = False
    assert svc.chain_of(known) is svc.chains[8996]  # the other chain's outage does not matter
    # no reachable chain knows it, and 58008 might: unknown is not the answer while it is down
    with pytest.raises(ChainUnavailable, match=r"^chain 58008 is unavailable"):
        svc.chain_of(unknown)
    nodes[58008].up = True
    assert svc.chain_of(unknown) is None
