"""Builders shared by the engine tests."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from operator_engine.models import AlgorithmInput, DatasetInput, JobRequest
from tidewater.settings import Settings

OWNER = "0xAbC0000000000000000000000000000000000001"


def did(n: int) -> str:
    return "did:op:" + hashlib.sha256(f"asset-{n}".encode()).hexdigest()


def request(
    *,
    files: list[dict[str, Any]] | None = None,
    rawcode: str | None = "print('hi')",
    algo_files: list[dict[str, Any]] | None = None,
    image: str = "tidewater/fake",
    tag: str = "1",
    checksum: str | None = None,
    entrypoint: str = "python3 $ALGO",
    environment: str = "test-env",
    agreement_id: str | None = None,
    owner: str = OWNER,
    customdata: dict[str, Any] | None = None,
) -> JobRequest:
    container: dict[str, Any] = {"image": image, "tag": tag, "entrypoint": entrypoint}
    if checksum:
        container["checksum"] = checksum
    return JobRequest(
        owner=owner,
        environment=environment,
        datasets=[
            DatasetInput(
                did=did(1),
                ddo={"id": did(1), "metadata": {"type": "dataset"}},
                service_id="svc",
                files=files if files is not None else [{"type": "url", "url": "http://x/"}],
            )
        ],
        algorithm=AlgorithmInput(
            container=container,
            did=did(2) if algo_files else None,
            ddo={"id": did(2)} if algo_files else None,
            files=algo_files or [],
            rawcode=None if algo_files else rawcode,
            algocustomdata=customdata,
        ),
        agreement_id=agreement_id,
    )


def write_envs(path: Path, envs: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(envs))
    return path


def settings_for(tmp_path: Path, envs: list[dict[str, Any]], **extra: Any) -> Settings:
    envs_file = write_envs(tmp_path / "envs.json", envs)
    return Settings(
        data_dir=tmp_path / "data",
        db_url=f"sqlite:///{tmp_path / 'store.db'}",
        environments_file=envs_file,
        **{"pull_images": False, **extra},
    )


def env(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "test-env",
        "cpuNumber": 1,
        "ramGB": 0.5,
        "diskGB": 1,
        "maxJobs": 1,
        "maxJobDuration": 60,
        "storageExpiry": 3600,
        "priceMin": 0,
        "egress": {"maxBytes": 10_000_000, "maxFiles": 20},
    }
    base.update(overrides)
    return base


def docker_run_area(
    data_dir: Path, client: Any, image: str, disk_quota: str, budget: int
) -> tuple[Any, Any, Any, str]:
    """(a DockerBackend bound to ``data_dir``, job ``job``'s created workspace, its run area of
    ``budget`` bytes, the resolved id of ``image``) for tests of one container."""
    from operator_engine.backends.docker import DockerBackend

    backend = DockerBackend(client, pull=False, disk_quota=disk_quota)
    backend.bind(scope=f"test-{os.getpid()}", data_dir=data_dir)
    workspace = backend.workspace("job")
    workspace.create()
    area = workspace.open_run(budget, 100)
    return backend, workspace, area, backend.resolve_image(*image.rsplit(":", 1), None)
