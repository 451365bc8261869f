"""Receipts: sign → verify round-trips; any changed byte of a result, the signature or the
claimed image makes ``tidewater receipt verify`` fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from operator_engine.receipts import ReceiptFacts, file_digest, sign
from tidewater.cli import main

KEY = "0x" + "42" * 32


def _receipt(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    (results / "sub").mkdir(parents=True)
    (results / "sub" / "out.csv").write_bytes(b"a,b\n1,2\n")
    (results / "algorithm.log").write_bytes(b"done\n")
    entries = []
    for name, type_ in (("sub/out.csv", "output"), ("algorithm.log", "algorithmLog")):
        size, sha = file_digest(results / name)
        entries.append({"name": name, "type": type_, "size": size, "sha256": sha})
    facts = ReceiptFacts(
        job_id="job1",
        owner="0x" + "ab" * 20,
        environment="free",
        share={"cpuMillis": 500, "memoryBytes": 2**29, "diskBytes": 2**30, "gpus": 0},
        inputs=[
            {
                "did": "did:op:" + "1" * 64,
                "serviceId": "c",
                "orderTx": "0x" + "9" * 64,
                "sha256": "ee" * 32,
            }
        ],
        algorithm={"did": "", "orderTx": "", "rawCodeSha256": "dd" * 32},
        image="sha256:" + "cc" * 32,
        started_at=1_700_000_000,
        finished_at=1_700_000_005,
        exit_code=0,
        status=70,
        results=entries,
    )
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(sign(KEY, facts, chain_id=8996)))
    return path, results


def _verify(path: Path, *extra: str) -> int:
    return main(["receipt", "verify", str(path), *extra])


def test_a_receipt_verifies_with_its_results_and_provider(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path, results = _receipt(tmp_path)
    provider = Account.from_key(KEY).address
    assert _verify(path, "--results", str(results), "--provider", provider) == 0
    out = capsys.readouterr().out
    assert f"signed by {provider}" in out and "sub/out.csv: matches" in out


def test_a_changed_result_byte_fails(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path, results = _receipt(tmp_path)
    (results / "sub" / "out.csv").write_bytes(b"a,b\n1,3\n")
    assert _verify(path, "--results", str(results)) == 1
    assert "FAIL sub/out.csv: does not match" in capsys.readouterr().out


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.update(
            signature=r["signature"][:-4]
            + ("00" if r["signature"][-4:-2] != "00" else "01")
            + r["signature"][-2:]
        ),
        lambda r: r["message"].update(image="sha256:" + "cd" * 32),
        lambda r: r["message"]["results"][0].update(sha256="0x" + "00" * 32),
        lambda r: r["message"].update(status=71),
    ],
    ids=["signature", "image", "result-hash", "status"],
)
def test_tampering_fails(tmp_path: Path, tamper) -> None:  # type: ignore[no-untyped-def]
    path, _ = _receipt(tmp_path)
    receipt = json.loads(path.read_text())
    tamper(receipt)
    path.write_text(json.dumps(receipt))
    assert _verify(path, "--provider", Account.from_key(KEY).address) == 1


def test_another_provider_fails_and_garbage_is_exit_2(tmp_path: Path) -> None:
    path, _ = _receipt(tmp_path)
    assert _verify(path, "--provider", "0x" + "12" * 20) == 1
    (tmp_path / "bad.json").write_text("{not json")
    assert _verify(tmp_path / "bad.json") == 2
