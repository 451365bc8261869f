"""Write a job's signed receipt (``receipt.json``) beside its results, as one more result.

Called when the job's results are recorded: at 70, and at any terminal failure once the
algorithm has run (status 40 or later). The facts come from what the engine saw: the inputs
still on disk are hashed here (before they are removed), the image is the id the container was
created from, the times and exit code are the store's and the run's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from datastore.jobs import JobStore, ResultRecord
from operator_engine.context import JobContext
from operator_engine.environments import gpu_share, job_share
from operator_engine.models import utcnow
from operator_engine.publish import hash_file
from operator_engine.receipts import RECEIPT_FILE, RESULT_TYPE, ReceiptFacts, sign
from operator_engine.workspace import did_dirname

#: signs facts for a chain id (``None``: the signer's default chain) → receipt.json content
Signer = Callable[[ReceiptFacts, int | None], dict[str, Any]]


def _input_facts(ctx: JobContext) -> list[dict[str, str]]:
    facts = []
    for dataset in ctx.request.datasets:
        folder = ctx.folder.inputs / did_dirname(dataset.did)
        found = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        files: list[Path | None] = [*found] or [None]
        for path in files:
            facts.append(
                {
                    "did": dataset.did,
                    "serviceId": dataset.service_id,
                    "orderTx": dataset.transfer_tx_id or "",
                    "sha256": hash_file(path)[1] if path is not None else "",
                }
            )
    return facts


def gather(
    ctx: JobContext, store: JobStore, records: list[ResultRecord], status: int
) -> ReceiptFacts:
    """The receipt facts of ``ctx``'s job ending at ``status`` with ``records``."""
    cpus, ram, disk = job_share(ctx.env)
    algo = ctx.request.algorithm
    row = store.row(ctx.job_id)
    started = getattr(row, "date_started", None) or getattr(row, "date_created", None)
    exit_code = ctx.state.get("exit_code")
    return ReceiptFacts(
        job_id=ctx.job_id,
        owner=ctx.request.owner,
        environment=ctx.env.id,
        share={
            "cpuMillis": round(cpus * 1000),
            "memoryBytes": ram,
            "diskBytes": disk,
            "gpus": gpu_share(ctx.env)[0],
        },
        inputs=_input_facts(ctx),
        algorithm={
            "did": algo.did or "",
            "orderTx": algo.transfer_tx_id or "",
            "rawCodeSha256": hashlib.sha256(algo.rawcode.encode()).hexdigest()
            if algo.rawcode is not None
            else "",
        },
        image=str(ctx.state.get("image_id", "")),
        started_at=int(started.timestamp()) if started is not None else 0,
        finished_at=int(utcnow().timestamp()),
        exit_code=int(exit_code) if exit_code is not None else -1,
        status=int(status),
        results=[
            {"name": r.filename, "type": r.type, "size": r.filesize, "sha256": r.sha256}
            for r in records
        ],
    )


def with_receipt(
    ctx: JobContext, store: JobStore, records: list[ResultRecord], status: int
) -> list[ResultRecord]:
    """``records`` plus the signed receipt of the job (unchanged when no signer is set)."""
    if ctx.receipt_signer is None:
        return records
    receipt = ctx.receipt_signer(gather(ctx, store, records, status), ctx.chain_id)
    path = ctx.folder.root / RECEIPT_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(receipt, handle, indent=1)
    size, sha = hash_file(path)
    return [*records, ResultRecord(RECEIPT_FILE, size, RESULT_TYPE, sha, RECEIPT_FILE)]


def provider_signer(
    private_key: str | None, per_chain: Mapping[int, str] | None = None
) -> Signer | None:
    """A signer with the provider key (None without a key: jobs get no receipt). With
    ``per_chain`` keys (a JSON ``PROVIDER_PRIVATE_KEY``) a job is signed with its chain's key.
    A job whose request names no chain is signed for chain id 0 (with the first key)."""
    keys = dict(per_chain or {})
    if not private_key and not keys:
        return None

    def signer(facts: ReceiptFacts, chain_id: int | None) -> dict[str, Any]:
        key = keys.get(chain_id or 0) or private_key or next(iter(keys.values()))
        return sign(key, facts, chain_id=chain_id or 0)

    return signer
