"""The shared fixtures live in tests/support/fixtures.py (built with tests/support/cluster.py)."""

pytest_plugins = ["tests.support.fixtures"]
