"""``tidewater engine``'s flags override the settings they name, and only those."""

from __future__ import annotations

import argparse

from tidewater.commands.engine import add_arguments, with_arguments
from tidewater.settings import Settings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_left_out_keep_the_settings() -> None:
    settings = Settings.from_env({"TIDEWATER_LEASE_SECONDS": "12", "TIDEWATER_WORKERS": "3"})
    assert with_arguments(settings, parse()) == settings


def test_flags_override_their_settings() -> None:
    settings = Settings.from_env({"TIDEWATER_LEASE_SECONDS": "12"})
    got = with_arguments(
        settings,
        parse("--lease-seconds", "5", "--poll-seconds", "0.1", "--workers", "4", "--no-pull"),
    )
    assert (got.lease_seconds, got.poll_seconds, got.workers, got.pull_images) == (5, 0.1, 4, False)
    assert got.with_(lease_seconds=12, poll_seconds=0.5, workers=2, pull_images=True) == settings
