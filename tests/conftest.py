"""Shared pytest wiring.

Integration fixtures need a real Docker engine, a real ganache or a real PostgreSQL. Locally a
missing one skips those tests with the reason; with ``TIDEWATER_REQUIRE_INTEGRATION=1`` (set by
``.ci/run``) it fails them instead, so CI can never go green by skipping.
"""

pytest_plugins = [
    "tests.fixtures.requirements",
    "tests.fixtures.docker_engine",
    "tests.fixtures.chain",
    "tests.fixtures.postgres",
    "tests.fixtures.escrow",
    "tests.fixtures.mounts",
]
