"""DIDs, checksums, artifacts, address files, revert reasons: no chain needed."""

from __future__ import annotations

import doctest
import hashlib
import importlib
import json
from pathlib import Path

import pytest
from eth_abi import encode
from eth_utils import to_checksum_address

from contracts_abi import artifacts, load
from contracts_abi.checksums import container_section_checksum, files_checksum
from contracts_abi.deploy import read_address_file, write_address_file
from contracts_abi.did import compute_did, did_suffix, is_did
from contracts_abi.errors import AddressFileError
from contracts_abi.publish import encrypt_files_locally, public_key_address
from contracts_abi.tx import _reason


@pytest.mark.parametrize(
    "module", ["did", "fees", "checksums", "artifacts"], ids=lambda m: f"contracts_abi.{m}"
)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"contracts_abi.{module}"))
    assert result.attempted > 0 and result.failed == 0


def _ocean_generate_did(nft_address: str, chain_id: int) -> str:
    # ocean.js generateDid / ocean.py's DDO id: sha256(toChecksumAddress(nft) + chainId base 10)
    checksum = hashlib.sha256((to_checksum_address(nft_address) + str(chain_id)).encode("utf-8"))
    return "did:op:" + checksum.hexdigest()


@pytest.mark.parametrize(
    ("nft", "chain_id"),
    [
        ("0x5fbdb2315678afecb367f032d93f642f64180aa3", 8996),
        ("0xBB1081DbF3227bbB233Db68f7117114baBb43656", 137),
        ("0x0000000000000000000000000000000000000001", 1),
    ],
)
def test_did_agrees_with_ocean_formula(nft: str, chain_id: int) -> None:
    did = compute_did(nft, chain_id)
    assert did == _ocean_generate_did(nft, chain_id)
    assert (
        did
        == compute_did(nft.lower(), chain_id)
        == compute_did(nft.upper().replace("0X", "0x"), chain_id)
    )
    assert is_did(did) and not is_did(did.upper()) and not is_did("did:op:12")
    assert did_suffix(did) == did[7:]


def test_did_vector() -> None:
    assert (
        compute_did("0x5FbDB2315678afecb367f032d93F642f64180aa3", 8996)
        == "did:op:2d05d9481f04e4ba379d166ef4a8fc66aba6396b21051c3544f34f19c6a59ca2"
    )


def test_checksums() -> None:
    a, b = b"print('hi')\n", b"\x00\x01"
    assert files_checksum([a, b]) == hashlib.sha256(a).hexdigest() + hashlib.sha256(b).hexdigest()
    assert files_checksum([]) == ""
    container = {"entrypoint": "python $ALGO", "image": "x", "tag": "1", "checksum": "sha256:ab"}
    expected = hashlib.sha256(b"python $ALGOsha256:ab").hexdigest()
    assert container_section_checksum(container) == expected


def test_artifacts_come_from_the_package() -> None:
    art = load("ERC20Template")
    assert art is load("ERC20Template")  # cached
    assert any(e.get("name") == "startOrder" for e in art.abi)
    assert len(art.bytecode) > 1000 and art.bytecode.startswith("0x")
    assert "ERC721Factory" in artifacts.names()


def test_unknown_artifact_names_near_matches() -> None:
    with pytest.raises(KeyError, match="ERC721Factory"):
        load("ERC721Factroy")


def test_address_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "address.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"sepolia": {"chainId": 11155111, "ERC721Factory": "0x1"}}))
    addresses = {"ERC721Factory": "0xabc", "Router": "0xdef", "ERC20Template": {"1": "0x1"}}
    write_address_file(path, addresses, 8996)
    document = json.loads(path.read_text())
    assert set(document) == {"sepolia", "development"}  # other networks kept
    assert document["development"]["chainId"] == 8996
    assert read_address_file(path, 8996)["ERC721Factory"] == "0xabc"
    assert read_address_file(path, 11155111)["ERC721Factory"] == "0x1"


def test_bundled_ocean_address_file_reads(tmp_path: Path) -> None:
    bundled = Path(importlib.import_module("addresses").__path__[0]) / "address.json"
    entry = read_address_file(bundled, 11155111)
    for key in ("Ocean", "Router", "ERC721Factory", "FixedPrice", "Dispenser", "startBlock"):
        assert key in entry


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"development": {"chainId": 1, "ERC721Factory": "0x1"}}', "no entry for chain id 8996"),
        ('{"development": {"chainId": 8996}}', "no ERC721Factory"),
    ],
)
def test_address_file_errors_are_one_line(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "address.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(AddressFileError, match=message) as failure:
        read_address_file(path, 8996)
    assert "\n" not in str(failure.value)


class _RpcError(Exception):
    def __init__(self, error: dict[str, object]) -> None:
        super().__init__(str(error))
        self.rpc_response = {"error": error}


def test_revert_reasons_are_decoded() -> None:
    data = "0x08c379a0" + encode(["string"], ["Invalid provider fee"]).hex()
    assert _reason(_RpcError({"message": "VM Exception…", "data": data})) == "Invalid provider fee"
    message = "VM Exception while processing transaction: revert Expired"
    assert _reason(_RpcError({"message": message})) == "Expired"
    panic = "0x4e487b71" + (0x11).to_bytes(32, "big").hex()
    assert _reason(_RpcError({"message": "x", "data": panic})) == "panic 0x11"


def test_local_file_encryption_format() -> None:
    import ecies

    key = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
    from eth_keys import keys

    public = keys.PrivateKey(bytes.fromhex(key[2:])).public_key
    ciphertext = encrypt_files_locally(public.to_bytes(), {"files": []})
    raw = bytes.fromhex(ciphertext[2:])
    assert raw[0] == 4 and len(raw) == 65 + 16 + 16 + len(b'{"files":[]}')
    assert ecies.decrypt(key, raw) == b'{"files":[]}'
    assert public_key_address(public.to_bytes()) == public.to_checksum_address()


def test_the_address_file_keeps_every_chain(tmp_path: Path) -> None:
    path = tmp_path / "address.json"
    write_address_file(path, {"ERC721Factory": "0xA", "Ocean": "0x1"}, 8996)
    write_address_file(path, {"ERC721Factory": "0xB", "Ocean": "0x2"}, 58008)
    write_address_file(path, {"ERC721Factory": "0xC", "Ocean": "0x3"}, 8996)  # replaced
    document = json.loads(path.read_text())
    assert sorted(document) == ["development", "development-58008"]
    assert read_address_file(path, 8996)["ERC721Factory"] == "0xC"
    assert read_address_file(path, 58008)["ERC721Factory"] == "0xB"
