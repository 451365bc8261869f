"""Stages 20→30: image, dataset files, DDOs, algorithm and custom data into the job folder.

Dataset failures end at 31, algorithm and image failures at 32. Messages written to the logs
never contain file URLs (they are the publisher's secret, and logs are served to the consumer).
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

from contracts_abi.checksums import is_sha256_digest
from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.credentials import registry_login
from operator_engine.environments import job_share
from operator_engine.fetch import FetchError
from operator_engine.runner import ImageError, RunnerError
from operator_engine.storage import fetch_to_file
from operator_engine.workspace import UnsafeName, did_dirname

#: The largest algorithm accepted, one number for the provider (which fetches published
#: algorithm files to check ``filesChecksum`` when a job starts) and the engine (which fetches
#: the algorithm into the job folder, or writes raw code).
MAX_ALGORITHM_BYTES = 16 * 1024**2


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def image_allowed(allowed: tuple[str, ...], image: str, tag: str | None) -> bool:
    """True when the environment has no allow-list or ``image``/``image:tag`` matches one."""
    if not allowed:
        return True
    names = {image, f"{image}:{tag or 'latest'}"}
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in allowed)


def provision_image(ctx: JobContext) -> Outcome:
    container = ctx.request.algorithm.container or {}
    image, tag = container.get("image"), container.get("tag")
    checksum, entrypoint = container.get("checksum"), container.get("entrypoint")
    if not isinstance(image, str) or not image or not isinstance(entrypoint, str):
        return Outcome(Kind.ALGO_FAILED, "algorithm container needs an image and an entrypoint")
    if checksum and not is_sha256_digest(str(checksum)):
        return Outcome(Kind.ALGO_FAILED, "algorithm container checksum must start with sha256:")
    if not image_allowed(ctx.env.allowed_images, image, tag):
        return Outcome(
            Kind.ALGO_FAILED, f"image {image} is not allowed in environment {ctx.env.id}"
        )
    try:
        auth = registry_login(ctx.registry_credential, image)
        ctx.state["image_id"] = ctx.runner.resolve_image(image, tag, checksum or None, auth)
    except ImageError as exc:
        return Outcome(Kind.ALGO_FAILED, str(exc))
    except RunnerError as exc:
        return Outcome(Kind.ALGO_FAILED, f"image check failed: {exc}")
    ctx.configure_log(f"image {image}:{tag or 'latest'} resolved to {ctx.state['image_id']}")
    return Outcome.ok()


def provision_data(ctx: JobContext) -> Outcome:
    _cpus, _ram, budget = job_share(ctx.env)
    for dataset in ctx.request.datasets:
        try:
            folder = ctx.folder.inputs / did_dirname(dataset.did)
        except UnsafeName as exc:
            return Outcome(Kind.DATA_FAILED, str(exc))
        folder.mkdir(mode=0o755, exist_ok=True)
        if not dataset.files:
            return Outcome(Kind.DATA_FAILED, f"dataset {dataset.did} has no files")
        for n, file_obj in enumerate(dataset.files):
            if ctx.is_cancelled():
                return Outcome(Kind.CANCELLED)
            try:
                size, sha = fetch_to_file(
                    file_obj,
                    folder / str(n),
                    ctx.storage_config,
                    max_bytes=budget,
                    userdata=dataset.userdata,
                )
            except FetchError as exc:
                return Outcome(Kind.DATA_FAILED, f"dataset {dataset.did} file {n}: {exc.public}")
            os.chmod(folder / str(n), 0o644)
            budget -= size
            ctx.configure_log(f"dataset {dataset.did} file {n}: {size} bytes, sha256 {sha}")
        if dataset.ddo:
            _write(ctx.folder.ddos / did_dirname(dataset.did), json.dumps(dataset.ddo).encode())
    ctx.state["disk_left"] = budget
    return Outcome.ok()


def provision_algorithm(ctx: JobContext) -> Outcome:
    algo = ctx.request.algorithm
    target = ctx.folder.algorithm
    if algo.rawcode is not None:
        code = algo.rawcode.encode()
        if len(code) > MAX_ALGORITHM_BYTES:
            return Outcome(
                Kind.ALGO_FAILED,
                f"algorithm raw code is {len(code)} bytes, over {MAX_ALGORITHM_BYTES} bytes",
            )
        _write(target, code, 0o755)
        ctx.state["disk_left"] = ctx.state.get("disk_left", 0) - len(code)
        ctx.configure_log(f"algorithm: raw code, {len(algo.rawcode.encode())} bytes")
    elif algo.files:
        try:
            size, sha = fetch_to_file(
                algo.files[0],
                target,
                ctx.storage_config,
                max_bytes=min(MAX_ALGORITHM_BYTES, max(ctx.state.get("disk_left", 0), 0)),
                userdata=algo.userdata,
            )
        except FetchError as exc:
            return Outcome(Kind.ALGO_FAILED, f"algorithm file: {exc.public}")
        os.chmod(target, 0o755)
        ctx.state["disk_left"] = ctx.state.get("disk_left", 0) - size
        ctx.configure_log(f"algorithm {algo.did}: {size} bytes, sha256 {sha}")
    else:
        return Outcome(Kind.ALGO_FAILED, "algorithm has neither raw code nor files")
    try:
        if algo.did and algo.ddo:
            _write(ctx.folder.ddos / did_dirname(algo.did), json.dumps(algo.ddo).encode())
    except UnsafeName as exc:
        return Outcome(Kind.ALGO_FAILED, str(exc))
    if algo.algocustomdata is not None:
        _write(ctx.folder.inputs / "algoCustomData.json", json.dumps(algo.algocustomdata).encode())
    return Outcome.ok()


def provision(ctx: JobContext) -> Outcome:
    """Image first (no dataset is copied for a job that cannot run), then data, then code."""
    for step in (provision_image, provision_data, provision_algorithm):
        outcome = step(ctx)
        if outcome.kind is not Kind.OK:
            return outcome
    return Outcome.ok()
