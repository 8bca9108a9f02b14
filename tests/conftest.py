"""Shared fixtures live in tests/fixtures/*, one module per real component they start."""

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.sandbox",
]
