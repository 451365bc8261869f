"""Administer a running provider: compute environments, batches and admin tokens."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidewater.errors import CommandError

HELP = "administer compute environments, batches and admin tokens"
DEFAULT_URL = "http://127.0.0.1:8030"
TIMEOUT_S = 30.0

#: CLI flag -> API config key
_CONFIG_FLAGS = {
    "cpu": "cpu",
    "ram_gb": "ramGB",
    "disk_gb": "diskGB",
    "gpu": "gpu",
    "max_jobs": "maxJobs",
    "max_job_duration": "maxJobDuration",
    "storage_expiry": "storageExpiry",
    "price_min": "priceMin",
    "fee_token": "feeToken",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"provider URL (default {DEFAULT_URL})")
    parser.add_argument("--token", help="admin token (default: $TIDEWATER_ADMIN_TOKEN)")
    area = parser.add_subparsers(dest="area", required=True)

    envs = area.add_parser("envs", help="compute environments").add_subparsers(
        dest="action", required=True
    )
    envs.add_parser("list", help="list environments")
    for name in ("show", "primary"):
        envs.add_parser(name).add_argument("env_id")
    delete = envs.add_parser("delete", help="delete an environment")
    delete.add_argument("env_id")
    delete.add_argument("--drain", action="store_true", help="let running jobs end first")
    for name in ("create", "update"):
        cmd = envs.add_parser(name, help=f"{name} an environment")
        cmd.add_argument("name")
        cmd.add_argument("--description", default="")
        cmd.add_argument("--platform", default="docker")
        cmd.add_argument("--config", help="JSON object of config fields (merged with flags)")
        for flag, key in _CONFIG_FLAGS.items():
            kind = (
                str
                if flag == "fee_token"
                else float
                if key in ("ramGB", "diskGB", "priceMin")
                else int
            )
            cmd.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind)

    batches = area.add_parser("batches", help="jobs per environment").add_subparsers(
        dest="action", required=True
    )
    batches.add_parser("list")
    for name in ("show", "jobs"):
        batches.add_parser(name).add_argument("env_id")
    bdel = batches.add_parser("delete", help="stop and delete an environment's jobs")
    bdel.add_argument("env_id", nargs="?", help="omit with --all to delete every batch")
    bdel.add_argument("--all", action="store_true")

    for alias in ("tokens", "token"):
        tokens = area.add_parser(alias, help="admin tokens (works on the store directly)")
        sub = tokens.add_subparsers(dest="action", required=True)
        sub.add_parser("create").add_argument("--name", required=True)
        sub.add_parser("list")
        sub.add_parser("revoke").add_argument("name_or_id")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as left-aligned columns under ``headers``."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


class Client:
    """The admin HTTP API with a bearer token; failures become :class:`CommandError`."""

    def __init__(self, url: str, token: str | None) -> None:
        if not token:
            raise CommandError(
                "no admin token: pass --token or set TIDEWATER_ADMIN_TOKEN "
                "(create one with `tidewater admin token create --name NAME`)"
            )
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message")
            except (ValueError, AttributeError):
                message = None
            raise CommandError(
                f"{method} {path}: HTTP {exc.code}: {message or exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CommandError(f"cannot reach the provider at {self.url} ({reason})") from None
        return json.loads(raw) if raw else None


def _env_body(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if args.config:
        try:
            config = json.loads(args.config)
        except ValueError as exc:
            raise CommandError(f"--config is not valid JSON: {exc}") from None
        if not isinstance(config, dict):
            raise CommandError("--config must be a JSON object")
    for flag, key in _CONFIG_FLAGS.items():
        if getattr(args, flag) is not None:
            config[key] = getattr(args, flag)
    return {
        "computeEnv": {
            "name": args.name,
            "description": args.description,
            "platform": args.platform,
            "config": config,
        }
    }


def _tokens(args: argparse.Namespace) -> int:
    from datastore.engine import make_engine
    from datastore.migrate import schema_lock, upgrade
    from provider.admin.tokens import TokenError, TokenStore
    from tidewater.settings import Settings

    settings = Settings.from_env(os.environ)
    engine = make_engine(settings.db_url)
    with schema_lock(Path(settings.data_dir)):  # a token may be made before the first serve
        upgrade(engine)
    store = TokenStore(engine)
    if args.action == "create":
        try:
            token = store.create(args.name)
        except TokenError as exc:
            raise CommandError(str(exc)) from None
        print(token)
        return 0
    if args.action == "list":
        rows = [
            (
                t.id,
                t.name,
                t.date_created.isoformat(timespec="seconds"),
                t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else None,
            )
            for t in store.list()
        ]
        print(table(("ID", "NAME", "CREATED", "REVOKED"), rows))
        return 0
    if not store.revoke(args.name_or_id):
        raise CommandError(f"no live token named or with id {args.name_or_id!r}")
    print(f"revoked {args.name_or_id}")
    return 0


def _envs(client: Client, args: argparse.Namespace) -> int:
    if args.action == "list":
        envs = client.call("GET", "/api/compute-envs")["computeEnvs"]
        rows = [
            (
                e["id"],
                e["platform"],
                e["status"],
                "yes" if e["primary"] else "",
                e.get("source"),
                e["lastUsed"],
                e["message"],
            )
            for e in envs
        ]
        print(
            table(("ID", "PLATFORM", "STATUS", "PRIMARY", "SOURCE", "LAST USED", "MESSAGE"), rows)
        )
    elif args.action == "show":
        print(json.dumps(client.call("GET", f"/api/compute-envs/{args.env_id}"), indent=2))
    elif args.action == "create":
        print(client.call("POST", "/api/compute-envs", _env_body(args))["computeEnvId"])
    elif args.action == "update":
        client.call("PUT", f"/api/compute-envs/{args.name}", _env_body(args))
        print(f"updated {args.name}")
    elif args.action == "primary":
        client.call("POST", f"/api/compute-envs/{args.env_id}/primary")
        print(f"{args.env_id} is primary")
    else:
        suffix = "?drain=true" if args.drain else ""
        client.call("DELETE", f"/api/compute-envs/{args.env_id}{suffix}")
        print(f"{'draining' if args.drain else 'deleted'} {args.env_id}")
    return 0


def _batches(client: Client, args: argparse.Namespace) -> int:
    if args.action == "list":
        rows = [
            (
                b["batch_id"],
                b["batch_tool"]["tool_id"],
                b["n_jobs"],
                b["hardware"]["cpu"],
                b["hardware"]["memory"],
            )
            for b in client.call("GET", "/api/batches")
        ]
        print(table(("BATCH", "TOOL", "JOBS", "CPU", "MEMORY MB"), rows))
    elif args.action == "show":
        counts = client.call("GET", f"/api/batches/{args.env_id}")
        print(table(("STATE", "JOBS"), list(counts.items())))
    elif args.action == "jobs":
        job_rows = [
            (
                j["job_id"],
                j["status"],
                j["statusCode"],
                j["create_time"],
                j["stop_time"],
                j["reason"],
            )
            for j in client.call("GET", f"/api/batches/{args.env_id}/jobs")
        ]
        print(table(("JOB", "STATE", "STATUS", "CREATED", "STOPPED", "REASON"), job_rows))
    else:
        if args.all == bool(args.env_id):
            raise CommandError("batches delete: give an environment id, or --all")
        client.call("DELETE", "/api/batches" if args.all else f"/api/batches/{args.env_id}")
        print("deleted")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.area in ("tokens", "token"):
        return _tokens(args)
    client = Client(args.url, args.token or os.environ.get("TIDEWATER_ADMIN_TOKEN"))
    if args.area == "envs":
        return _envs(client, args)
    return _batches(client, args)
