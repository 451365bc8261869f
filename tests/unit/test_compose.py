"""docker-compose.yml is checked by a real Compose parser and against tidewater's own CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.requirements import unavailable
from tidewater.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    if shutil.which("docker-compose") is None:
        unavailable("docker-compose (Debian package) is not installed")
    out = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env={"PROVIDER_PRIVATE_KEY": "0x" + "11" * 32, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_has_the_four_services_with_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"chain", "provider", "engine", "postgres"}
    for name, service in services.items():
        assert "healthcheck" in service, name


def test_engine_gets_the_docker_socket_and_shares_the_data_dir(compose: dict) -> None:
    engine = compose["services"]["engine"]
    provider = compose["services"]["provider"]
    mounts = " ".join(engine["volumes"])
    assert "/var/run/docker.sock" in mounts
    for service in (engine, provider):
        assert service["environment"]["TIDEWATER_DB"].startswith("postgresql+psycopg://")
        assert "/var/lib/tidewater:/var/lib/tidewater:rw" in service["volumes"]


@pytest.mark.parametrize("service", ["chain", "provider", "engine"])
def test_service_commands_are_valid_tidewater_commands(compose: dict, service: str) -> None:
    argv = compose["services"][service]["command"]
    build_parser().parse_args(argv)  # exits (SystemExit) on an unknown command or flag
