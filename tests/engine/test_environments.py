"""Environment files: defaults, JSON and YAML, and errors that name the file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from datastore.engine import make_engine
from datastore.jobs import JobStore
from datastore.migrate import upgrade
from operator_engine.environments import (
    EnvironmentConfigError,
    EnvironmentRegistry,
    FeeTokenRule,
    default_environment,
    job_share,
    load_file,
)


def test_default_environment_is_free_and_small() -> None:
    env = default_environment()
    assert (env.id, env.cpu_number, env.ram_gb, env.max_jobs, env.max_job_duration) == (
        "tidewater-free",
        1,
        1.0,
        2,
        600,
    )
    assert env.to_ocean(0, 0)["priceMin"] == 0
    cpus, ram, _disk = job_share(env)
    assert cpus * env.max_jobs == 1 and ram * env.max_jobs == 1024**3


def test_yaml_and_json_files(tmp_path: Path) -> None:
    yml = tmp_path / "envs.yaml"
    yml.write_text(
        "environments:\n  - id: big\n    cpuNumber: 4\n    ramGB: 8\n    maxJobs: 2\n"
        "    allowedImages: ['tidewater/*']\n    egress: {maxBytes: 100, maxFiles: 2}\n"
    )
    (env,) = load_file(yml)
    assert (env.cpu_number, env.ram_gb, env.allowed_images, env.egress.max_files) == (
        4,
        8.0,
        ("tidewater/*",),
        2,
    )
    js = tmp_path / "envs.json"
    js.write_text('[{"id": "a", "priceMin": 1.5, "feeToken": "0x01"}]')
    assert load_file(js)[0].price_min == 1.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"id": "a", "cpuNumber": "two"}]', "cpuNumber must be a number"),
        ('[{"id": "a", "maxJobs": 0}]', "maxJobs must be at least 1"),
        ('[{"id": "a", "ramGb": 1}]', "unknown field 'ramGb'"),
        ('[{"cpuNumber": 1}]', "id is missing"),
        ('[{"id": "a"}, {"id": "a"}]', "appears twice"),
        ('[{"id": "a", "egress": {"maxBytez": 1}}]', "unknown egress field"),
        ("{not json", "not valid"),
        ("[]", "non-empty list"),
    ],
)
def test_malformed_files_name_file_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "envs.json"
    path.write_text(content)
    with pytest.raises(EnvironmentConfigError, match=message) as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_registry_merges_file_and_store_fresh_each_time(tmp_path: Path) -> None:
    store = JobStore(make_engine(f"sqlite:///{tmp_path / 's.db'}"))
    upgrade(store.engine)
    registry = EnvironmentRegistry(None, store)
    assert list(registry.entries()) == ["tidewater-free"]
    store.environments.put("api", {"maxJobs": 3})
    store.environments.put("tidewater-free", {"maxJobs": 99})  # cannot shadow a file environment
    entries = registry.entries()
    assert entries["api"].env.max_jobs == 3 and entries["tidewater-free"].env.max_jobs == 2
    store.environments.put("bad", {"maxJobs": "x"})
    assert registry.entries()["bad"].status == "INVALID"


# -- fee tokens: always a real ERC-20 on the chain (issue 9, item 1) ---------------------------

OCEAN = "0x" + "0c" * 20
OTHER_TOKEN = "0x" + "7e" * 20
NO_CODE = "0x" + "de" * 20


class _Chain:
    """``get_code`` of a chain where only OCEAN and OTHER_TOKEN are contracts; counts calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def get_code(self, address: str) -> bytes:
        self.calls.append(address.lower())
        return b"\x60\x80" if address.lower() in (OCEAN, OTHER_TOKEN) else b""


def _rule(chain: _Chain, default: str | None = OCEAN) -> FeeTokenRule:
    return FeeTokenRule(default, chain.get_code, "chain 8996")


def test_default_environment_gets_the_chains_ocean_token(tmp_path: Path) -> None:
    chain = _Chain()
    registry = EnvironmentRegistry(None, _empty_store(tmp_path), _rule(chain))
    env = registry.entries()["tidewater-free"].env
    assert env.fee_token == to_checksum_address(OCEAN)
    assert env.to_ocean(0, 0)["feeToken"] == to_checksum_address(OCEAN)
    registry.entries()
    assert chain.calls == [OCEAN]  # a token found once is not checked again


@pytest.mark.parametrize(
    ("configured", "expected"),
    [(None, OCEAN), ("0x" + "0" * 40, OCEAN), (OTHER_TOKEN, OTHER_TOKEN)],
    ids=["absent", "zero-address", "own-token"],
)
def test_file_environment_fee_token(tmp_path: Path, configured: str | None, expected: str) -> None:
    path = tmp_path / "envs.json"
    entry: dict[str, object] = {"id": "a", "priceMin": 1}
    if configured is not None:
        entry["feeToken"] = configured
    path.write_text(json.dumps([entry]))
    registry = EnvironmentRegistry(path, _empty_store(tmp_path), _rule(_Chain()))
    assert registry.entries()["a"].env.fee_token == to_checksum_address(expected)


@pytest.mark.parametrize(
    ("token", "default", "message"),
    [
        (NO_CODE, OCEAN, "has no contract code on chain 8996"),
        ("0x01", OCEAN, "is not an address"),
        (None, None, "no feeToken, and the address file has no Ocean token for chain 8996"),
    ],
    ids=["no-code", "malformed", "no-default"],
)
def test_file_environment_with_a_bad_fee_token_is_refused(
    tmp_path: Path, token: str | None, default: str | None, message: str
) -> None:
    path = tmp_path / "envs.json"
    path.write_text(json.dumps([{"id": "a"} | ({"feeToken": token} if token else {})]))
    registry = EnvironmentRegistry(path, _empty_store(tmp_path), _rule(_Chain(), default))
    with pytest.raises(EnvironmentConfigError, match=message) as info:
        registry.entries()
    assert str(path) in str(info.value) and "'a'" in str(info.value)


def test_store_environment_with_a_bad_fee_token_is_invalid(tmp_path: Path) -> None:
    store = _empty_store(tmp_path)
    registry = EnvironmentRegistry(None, store, _rule(_Chain()))
    store.environments.put("api", {"maxJobs": 1, "feeToken": NO_CODE})
    entry = registry.entries()["api"]
    assert entry.status == "INVALID" and "no contract code" in str(entry.message)
    assert registry.entries()["tidewater-free"].accepts_jobs


def test_unreachable_chain_is_reported_and_not_remembered(tmp_path: Path) -> None:
    answers: list[bytes | Exception] = [ConnectionError("down"), b"\x60"]

    def get_code(_address: str) -> bytes:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    rule = FeeTokenRule(OCEAN, get_code, "chain 8996")
    with pytest.raises(
        EnvironmentConfigError, match=r"env: cannot check feeToken .*\(ConnectionError\)"
    ):
        rule.token_for(None, "env")
    assert rule.token_for(None, "env") == to_checksum_address(OCEAN)


def _empty_store(tmp_path: Path) -> JobStore:
    store = JobStore(make_engine(f"sqlite:///{tmp_path / 'fees.db'}"))
    upgrade(store.engine)
    return store
