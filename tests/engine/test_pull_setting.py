"""TIDEWATER_PULL_IMAGES reaches the Docker runner the engine builds for itself."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from tests.engine.helpers import env, settings_for
from tidewater.engine_config import build_engine

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("pull", [True, False])
def test_engine_runner_pulls_only_when_the_setting_allows(
    tmp_path: Path, docker_client: docker.DockerClient, pull: bool
) -> None:
    engine = build_engine(settings_for(tmp_path, [env()], pull_images=pull))
    try:
        assert engine.backend.pull is pull  # type: ignore[attr-defined]
    finally:
        engine.shutdown()
        engine.backend.close()  # type: ignore[attr-defined]
        engine.db.dispose()
