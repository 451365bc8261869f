"""Environment files: defaults, JSON and YAML, and errors that name the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from operator_engine.db import make_engine
from operator_engine.environments import (
    EnvironmentConfigError,
    EnvironmentRegistry,
    default_environment,
    job_share,
    load_file,
)
from operator_engine.store import JobStore


def test_default_environment_is_free_and_small() -> None:
    env = default_environment()
    assert (env.id, env.cpu_number, env.ram_gb, env.max_jobs, env.max_job_duration) == (
        "tidewater-free",
        1,
        1.0,
        2,
        600,
    )
    assert env.to_ocean(0, 0)["priceMin"] == 0
    cpus, ram, _disk = job_share(env)
    assert cpus * env.max_jobs == 1 and ram * env.max_jobs == 1024**3


def test_yaml_and_json_files(tmp_path: Path) -> None:
    yml = tmp_path / "envs.yaml"
    yml.write_text(
        "environments:\n  - id: big\n    cpuNumber: 4\n    ramGB: 8\n    maxJobs: 2\n"
        "    allowedImages: ['tidewater/*']\n    egress: {maxBytes: 100, maxFiles: 2}\n"
    )
    (env,) = load_file(yml)
    assert (env.cpu_number, env.ram_gb, env.allowed_images, env.egress.max_files) == (
        4,
        8.0,
        ("tidewater/*",),
        2,
    )
    js = tmp_path / "envs.json"
    js.write_text('[{"id": "a", "priceMin": 1.5, "feeToken": "0x01"}]')
    assert load_file(js)[0].price_min == 1.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"id": "a", "cpuNumber": "two"}]', "cpuNumber must be a number"),
        ('[{"id": "a", "maxJobs": 0}]', "maxJobs must be at least 1"),
        ('[{"id": "a", "ramGb": 1}]', "unknown field 'ramGb'"),
        ('[{"cpuNumber": 1}]', "id is missing"),
        ('[{"id": "a"}, {"id": "a"}]', "appears twice"),
        ('[{"id": "a", "egress": {"maxBytez": 1}}]', "unknown egress field"),
        ("{not json", "not valid"),
        ("[]", "non-empty list"),
    ],
)
def test_malformed_files_name_file_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "envs.json"
    path.write_text(content)
    with pytest.raises(EnvironmentConfigError, match=message) as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_registry_merges_file_and_store_fresh_each_time(tmp_path: Path) -> None:
    store = JobStore(make_engine(f"sqlite:///{tmp_path / 's.db'}"))
    store.create_tables()
    registry = EnvironmentRegistry(None, store)
    assert list(registry.entries()) == ["tidewater-free"]
    store.put_env("api", {"maxJobs": 3})
    store.put_env("tidewater-free", {"maxJobs": 99})  # cannot shadow a file environment
    entries = registry.entries()
    assert entries["api"].env.max_jobs == 3 and entries["tidewater-free"].env.max_jobs == 2
    store.put_env("bad", {"maxJobs": "x"})
    assert registry.entries()["bad"].status == "INVALID"
