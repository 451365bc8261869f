"""Signed result receipts: what ran, on what, and what came out, signed by the provider.

A receipt is EIP-712 typed data (domain ``tidewater``, :data:`VERSION`, the chain id of the
job's orders, verifying contract the zero address) stating the job, its owner, environment and
resource share, each input (DID, service, order tx, sha256 of the bytes the algorithm saw),
the algorithm (DID and order tx, or sha256 of its raw code), the image the container really
ran, start and end times, exit code, final status, and every result's name, type, size and
sha256. ``receipt.json`` is the standard EIP-712 JSON (``types``, ``primaryType``, ``domain``,
``message``) plus ``signature`` and ``signer``, so anyone can check it with eth-account alone:

>>> from eth_account import Account
>>> from eth_account.messages import encode_typed_data
>>> key = "0x" + "11" * 32
>>> receipt = sign(key, _example_facts(), chain_id=8996)
>>> typed = {k: receipt[k] for k in ("types", "primaryType", "domain", "message")}
>>> signer = Account.recover_message(encode_typed_data(full_message=typed),
...                                  signature=receipt["signature"])
>>> signer == Account.from_key(key).address == receipt["signer"]
True
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from contracts_abi.checksums import digest_hex

VERSION = "1"
RECEIPT_FILE = "receipt.json"
RESULT_TYPE = "receipt"
ZERO_ADDRESS = "0x" + "0" * 40
ZERO_HASH = "0x" + "0" * 64

TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Share": [
        {"name": "cpuMillis", "type": "uint256"},
        {"name": "memoryBytes", "type": "uint256"},
        {"name": "diskBytes", "type": "uint256"},
        {"name": "gpus", "type": "uint256"},
    ],
    "Input": [
        {"name": "did", "type": "string"},
        {"name": "serviceId", "type": "string"},
        {"name": "orderTx", "type": "string"},
        {"name": "sha256", "type": "bytes32"},
    ],
    "Algorithm": [
        {"name": "did", "type": "string"},
        {"name": "orderTx", "type": "string"},
        {"name": "rawCodeSha256", "type": "bytes32"},
    ],
    "Result": [
        {"name": "name", "type": "string"},
        {"name": "type", "type": "string"},
        {"name": "size", "type": "uint256"},
        {"name": "sha256", "type": "bytes32"},
    ],
    "Receipt": [
        {"name": "jobId", "type": "string"},
        {"name": "owner", "type": "address"},
        {"name": "environment", "type": "string"},
        {"name": "share", "type": "Share"},
        {"name": "inputs", "type": "Input[]"},
        {"name": "algorithm", "type": "Algorithm"},
        {"name": "image", "type": "string"},
        {"name": "startedAt", "type": "uint256"},
        {"name": "finishedAt", "type": "uint256"},
        {"name": "exitCode", "type": "int256"},
        {"name": "status", "type": "uint256"},
        {"name": "results", "type": "Result[]"},
    ],
}


@dataclass
class ReceiptFacts:
    """What the engine observed about one job, gathered stage by stage (JSON in its folder)."""

    job_id: str
    owner: str
    environment: str
    share: dict[str, int] = field(default_factory=dict)
    inputs: list[dict[str, str]] = field(default_factory=list)
    algorithm: dict[str, str] = field(default_factory=dict)
    image: str = ""
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = -1
    status: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReceiptFacts:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _hex32(value: str | None) -> str:
    """A sha256 hex digest (with or without ``0x``/``sha256:``) as a 0x bytes32."""
    if not value:
        return ZERO_HASH
    text = digest_hex(value)
    return "0x" + bytes.fromhex(text).rjust(32, b"\0").hex()


def typed_data(facts: ReceiptFacts, chain_id: int) -> dict[str, Any]:
    """The EIP-712 full message of ``facts`` on ``chain_id``."""
    message = {
        "jobId": facts.job_id,
        "owner": facts.owner,
        "environment": facts.environment,
        "share": {
            "cpuMillis": int(facts.share.get("cpuMillis", 0)),
            "memoryBytes": int(facts.share.get("memoryBytes", 0)),
            "diskBytes": int(facts.share.get("diskBytes", 0)),
            "gpus": int(facts.share.get("gpus", 0)),
        },
        "inputs": [
            {
                "did": i.get("did", ""),
                "serviceId": i.get("serviceId", ""),
                "orderTx": i.get("orderTx", ""),
                "sha256": _hex32(i.get("sha256")),
            }
            for i in facts.inputs
        ],
        "algorithm": {
            "did": facts.algorithm.get("did", ""),
            "orderTx": facts.algorithm.get("orderTx", ""),
            "rawCodeSha256": _hex32(facts.algorithm.get("rawCodeSha256")),
        },
        "image": facts.image,
        "startedAt": int(facts.started_at),
        "finishedAt": int(facts.finished_at),
        "exitCode": int(facts.exit_code),
        "status": int(facts.status),
        "results": [
            {
                "name": r["name"],
                "type": r["type"],
                "size": int(r["size"]),
                "sha256": _hex32(r["sha256"]),
            }
            for r in facts.results
        ],
    }
    return {
        "types": TYPES,
        "primaryType": "Receipt",
        "domain": {
            "name": "tidewater",
            "version": VERSION,
            "chainId": int(chain_id),
            "verifyingContract": ZERO_ADDRESS,
        },
        "message": message,
    }


def sign(private_key: Any, facts: ReceiptFacts, *, chain_id: int) -> dict[str, Any]:
    """``receipt.json``'s content: the typed data, its signature and the signer's address."""
    full = typed_data(facts, chain_id)
    signed = Account.sign_message(encode_typed_data(full_message=full), private_key)
    account = Account.from_key(private_key)
    return {
        **full,
        "signature": "0x" + signed.signature.hex().removeprefix("0x"),
        "signer": account.address,
    }


def recover(receipt: dict[str, Any]) -> str:
    """The address that signed ``receipt`` (raises ``ValueError`` when it cannot be read)."""
    typed = {k: receipt[k] for k in ("types", "primaryType", "domain", "message")}
    return str(
        Account.recover_message(
            encode_typed_data(full_message=typed), signature=receipt["signature"]
        )
    )


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def verify(
    receipt: dict[str, Any], *, results_dir: Path | None = None, provider: str | None = None
) -> list[tuple[bool, str]]:
    """Check ``receipt``: its signature (by ``signer``, and by ``provider`` when given) and,
    with ``results_dir``, each result file's size and sha256. One (ok, line) per finding."""
    findings: list[tuple[bool, str]] = []
    try:
        signer = recover(receipt)
    except (KeyError, TypeError, ValueError) as exc:
        return [(False, f"signature: cannot be checked ({type(exc).__name__}: {exc})")]
    claimed = str(receipt.get("signer", ""))
    if signer.lower() != claimed.lower():
        findings.append((False, f"signature: signed by {signer}, not by the named {claimed}"))
    else:
        findings.append((True, f"signature: valid, signed by {signer}"))
    if provider is not None:
        ok = signer.lower() == provider.lower()
        findings.append((ok, f"provider: {'is' if ok else 'is not'} {provider}"))
    if results_dir is not None:
        for result in receipt["message"]["results"]:
            name = str(result["name"])
            path = results_dir / name
            if not path.is_file() or results_dir.resolve() not in path.resolve().parents:
                findings.append((False, f"{name}: missing from {results_dir}"))
                continue
            size, sha = file_digest(path)
            ok = size == int(result["size"]) and "0x" + sha == str(result["sha256"]).lower()
            findings.append((ok, f"{name}: {'matches' if ok else 'does not match'} (sha256 {sha})"))
    return findings


def _example_facts() -> ReceiptFacts:
    return ReceiptFacts(
        job_id="j1",
        owner="0x" + "ab" * 20,
        environment="env",
        share={"cpuMillis": 1000, "memoryBytes": 2**30, "diskBytes": 2**30, "gpus": 0},
        inputs=[{"did": "did:op:1", "serviceId": "s", "orderTx": "0x1", "sha256": "00" * 32}],
        algorithm={"did": "", "orderTx": "", "rawCodeSha256": "11" * 32},
        image="sha256:" + "22" * 32,
        started_at=1,
        finished_at=2,
        exit_code=0,
        status=70,
        results=[{"name": "out.txt", "type": "output", "size": 3, "sha256": "33" * 32}],
    )
