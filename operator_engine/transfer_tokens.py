"""One-time job tokens for the internal transfer endpoints (``/internal/jobs/<id>/…``).

A job pod that cannot see the provider's data dir pulls its inputs and pushes its outputs over
HTTP, each with its own token: scoped to one job and one direction (``inputs`` or
``outputs``), expiring, single-use. Only the token's sha256 is stored, as the name of a small
JSON file under ``<data_dir>/transfer-tokens/`` (the data dir is shared by the API and the
engine; a file keeps this off the database schema). Redeeming renames the file to
``<hash>.used`` first: a rename happens once, so of two requests with one token exactly one
wins and the other gets 409.

An ``outputs`` token may be minted *unarmed*: it is refused with 409 ``not_armed`` (and stays
valid) until the engine arms it, which it does once it has seen the algorithm container end —
so nothing is accepted as results while the algorithm could still be writing or talking.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

DIRECTIONS = ("inputs", "outputs")
_FOLDER = "transfer-tokens"
_USED = ".used"


class TransferDenied(Exception):
    """A token was refused: ``status`` (401, 403, 409) and a ``code`` the client can act on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Grant:
    """What a token allows: one ``direction`` of one job, until ``expires`` (Unix seconds)."""

    job_id: str
    direction: str
    expires: float
    armed: bool = True
    max_bytes: int = 0  # outputs: what may be uploaded (the job's disk share)
    max_entries: int = 0  # outputs: how many files and folders


def _folder(data_dir: Path) -> Path:
    folder = Path(data_dir) / _FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def token_hash(token: str) -> str:
    """The stored name of ``token``: its sha256, hex.

    >>> token_hash("abc")[:16]
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(token.encode()).hexdigest()


def _write(path: Path, grant: Grant) -> None:
    tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(grant), handle)
    os.replace(tmp, path)


def _read(path: Path) -> Grant:
    with open(path) as handle:
        return Grant(**json.load(handle))


def mint(
    data_dir: Path,
    job_id: str,
    direction: str,
    ttl: float,
    *,
    armed: bool = True,
    max_bytes: int = 0,
    max_entries: int = 0,
) -> str:
    """A new token for ``direction`` of ``job_id``, valid ``ttl`` seconds (returned once:
    only its hash is kept); an outputs token carries the upload's limits."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    token = secrets.token_urlsafe(32)
    grant = Grant(job_id, direction, time.time() + ttl, armed, max_bytes, max_entries)
    _write(_folder(data_dir) / token_hash(token), grant)
    return token


def arm(data_dir: Path, token: str) -> None:
    """Let an unarmed token be redeemed (a no-op once it is used or gone)."""
    path = _folder(data_dir) / token_hash(token)
    try:
        grant = _read(path)
    except FileNotFoundError:
        return
    _write(path, replace(grant, armed=True))


def _used() -> TransferDenied:
    return TransferDenied(409, "token_used", "this transfer token was already used")


def redeem(data_dir: Path, job_id: str, direction: str, token: str | None) -> Grant:
    """Spend ``token`` on ``direction`` of ``job_id``, or raise :class:`TransferDenied`:
    401 missing, unknown or expired; 403 another job's or direction's; 409 already used, or
    not armed yet (then it stays valid)."""
    if not token or len(token) > 200:
        raise TransferDenied(401, "no_token", "send the job's transfer token as a Bearer token")
    path = _folder(data_dir) / token_hash(token)
    try:
        grant = _read(path)
    except FileNotFoundError:
        if path.with_name(path.name + _USED).exists():
            raise _used() from None
        raise TransferDenied(401, "unknown_token", "unknown transfer token") from None
    if grant.job_id != job_id or grant.direction != direction:
        raise TransferDenied(403, "wrong_scope", f"this token is not valid for {direction} of job")
    if grant.expires < time.time():
        raise TransferDenied(401, "token_expired", "this transfer token has expired")
    if not grant.armed:
        raise TransferDenied(
            409, "not_armed", "outputs are accepted once the engine has seen the algorithm end"
        )
    try:
        os.rename(path, path.with_name(path.name + _USED))
    except FileNotFoundError:  # another request with the same token won the rename
        raise _used() from None
    return grant


def revoke_job(data_dir: Path, job_id: str) -> int:
    """Drop every token (used or not) of ``job_id`` and every expired one; the count dropped."""
    dropped = 0
    now = time.time()
    for path in _folder(data_dir).iterdir():
        with contextlib.suppress(OSError, ValueError, TypeError):
            grant = _read(path)
            if grant.job_id == job_id or grant.expires < now:
                path.unlink()
                dropped += 1
    return dropped
