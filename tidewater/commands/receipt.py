"""``tidewater receipt verify``: check a job's signed receipt, and optionally its result files.

Exit 0 when every check passes, 1 when one fails (each finding is one line), 2 when the file
cannot be read as a receipt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from operator_engine.receipts import verify
from tidewater.errors import CommandError

HELP = "verify a job's signed receipt (receipt.json), and its result files with --results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("verify", help="check the signature, the signer and result hashes")
    check.add_argument("receipt", type=Path, help="the receipt.json the provider returned")
    check.add_argument("--results", type=Path, help="folder holding the downloaded results")
    check.add_argument("--provider", help="the provider address the receipt must be signed by")


def run(args: argparse.Namespace) -> int:
    try:
        receipt = json.loads(args.receipt.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"{args.receipt}: not a readable receipt ({exc})") from None
    if not isinstance(receipt, dict) or not isinstance(receipt.get("message"), dict):
        raise CommandError(f"{args.receipt}: not a receipt (no EIP-712 message)")
    if args.results is not None and not args.results.is_dir():
        raise CommandError(f"--results {args.results}: not a folder")
    findings = verify(receipt, results_dir=args.results, provider=args.provider)
    for ok, line in findings:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
    return 0 if all(ok for ok, _ in findings) else 1
