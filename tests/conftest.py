"""Shared fixtures: real services started once per session on free ports."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.redis_ha",
    "tests.fixtures.cluster",
    "tests.fixtures.images",
    "tests.fixtures.real_node",
    "tests.fixtures.timings",
    "tests.fixtures.parallel",
]
