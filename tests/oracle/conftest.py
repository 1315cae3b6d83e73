# The root conftest.py of dask/distributed (its fixtures and options), for running its test
# files from a copy; see scripts/oracle.
from __future__ import annotations

import pytest

from distributed.utils_test import *  # noqa: F401,F403


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="need --runslow option to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


pytest_plugins = ["distributed.pytest_resourceleaks"]
