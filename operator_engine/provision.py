"""Stages 20→30: image, dataset files, DDOs, algorithm and custom data into the job's
workspace (its ``inputs``, ``algorithm`` and ``ddos`` volumes).

Dataset failures end at 31, algorithm and image failures at 32. Messages written to the logs
never contain file URLs (they are the publisher's secret, and logs are served to the consumer).
"""

from __future__ import annotations

import fnmatch
import json

from contracts_abi.checksums import is_sha256_digest
from operator_engine.backends.base import ALGORITHM_FILE, BackendError, ImageError
from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.credentials import registry_login
from operator_engine.environments import job_share
from operator_engine.fetch import FetchError
from operator_engine.storage import stream
from operator_engine.workspace import UnsafeName, did_dirname

#: The largest algorithm accepted, one number for the provider (which fetches published
#: algorithm files to check ``filesChecksum`` when a job starts) and the engine (which fetches
#: the algorithm into the job folder, or writes raw code).
MAX_ALGORITHM_BYTES = 16 * 1024**2


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
        ctx.state.image = ctx.backend.resolve_image(image, tag, checksum or None, auth)
    except ImageError as exc:
        return Outcome(Kind.ALGO_FAILED, str(exc))
    except BackendError as exc:
        return Outcome(Kind.ALGO_FAILED, f"image check failed: {exc}")
    ctx.configure_log(f"image {image}:{tag or 'latest'} resolved to {ctx.state.image}")
    return Outcome.ok()


def provision_data(ctx: JobContext) -> Outcome:
    _cpus, _ram, budget = job_share(ctx.env)
    workspace = ctx.workspace
    for dataset in ctx.request.datasets:
        try:
            folder = did_dirname(dataset.did)
        except UnsafeName as exc:
            return Outcome(Kind.DATA_FAILED, str(exc))
        if not dataset.files:
            return Outcome(Kind.DATA_FAILED, f"dataset {dataset.did} has no files")
        for n, file_obj in enumerate(dataset.files):
            if ctx.is_cancelled():
                return Outcome(Kind.CANCELLED)
            chunks = stream(
                file_obj, ctx.storage_config, max_bytes=budget, userdata=dataset.userdata
            )
            try:
                size, sha = workspace.stage("inputs", f"{folder}/{n}", chunks)
            except FetchError as exc:
                return Outcome(Kind.DATA_FAILED, f"dataset {dataset.did} file {n}: {exc.public}")
            budget -= size
            ctx.configure_log(f"dataset {dataset.did} file {n}: {size} bytes, sha256 {sha}")
        if dataset.ddo:
            workspace.stage("ddos", folder, [json.dumps(dataset.ddo).encode()])
    ctx.state.disk_left = budget
    return Outcome.ok()


def provision_algorithm(ctx: JobContext) -> Outcome:
    algo = ctx.request.algorithm
    workspace = ctx.workspace
    disk_left = ctx.state.disk_left or 0
    if algo.rawcode is not None:
        code = algo.rawcode.encode()
        if len(code) > MAX_ALGORITHM_BYTES:
            return Outcome(
                Kind.ALGO_FAILED,
                f"algorithm raw code is {len(code)} bytes, over {MAX_ALGORITHM_BYTES} bytes",
            )
        workspace.stage("algorithm", ALGORITHM_FILE, [code], executable=True)
        ctx.state.disk_left = disk_left - len(code)
        ctx.configure_log(f"algorithm: raw code, {len(code)} bytes")
    elif algo.files:
        chunks = stream(
            algo.files[0],
            ctx.storage_config,
            max_bytes=min(MAX_ALGORITHM_BYTES, max(disk_left, 0)),
            userdata=algo.userdata,
        )
        try:
            size, sha = workspace.stage("algorithm", ALGORITHM_FILE, chunks, executable=True)
        except FetchError as exc:
            return Outcome(Kind.ALGO_FAILED, f"algorithm file: {exc.public}")
        ctx.state.disk_left = disk_left - size
        ctx.configure_log(f"algorithm {algo.did}: {size} bytes, sha256 {sha}")
    else:
        return Outcome(Kind.ALGO_FAILED, "algorithm has neither raw code nor files")
    try:
        if algo.did and algo.ddo:
            workspace.stage("ddos", did_dirname(algo.did), [json.dumps(algo.ddo).encode()])
    except UnsafeName as exc:
        return Outcome(Kind.ALGO_FAILED, str(exc))
    if algo.algocustomdata is not None:
        custom = json.dumps(algo.algocustomdata).encode()
        workspace.stage("inputs", "algoCustomData.json", [custom])
    return Outcome.ok()


def provision(ctx: JobContext) -> Outcome:
    """Image first (no dataset is copied for a job that cannot run), then data, then code."""
    for step in (provision_image, provision_data, provision_algorithm):
        outcome = step(ctx)
        if outcome.kind is not Kind.OK:
            return outcome
    return Outcome.ok()
