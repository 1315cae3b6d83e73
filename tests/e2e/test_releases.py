"""Clients of other ``distributed`` releases: the version check at ``register-client``.

Stock compares the client's ``versions`` (``get_versions()``) with the scheduler's and the
workers' and sends the table of mismatches in ``stream-start``'s ``warning``, which the
client raises as a ``VersionMismatchWarning`` (scheduler.py:5929, client.py:1594); rask does
the same, its scheduler side being the graph helper's environment. rask also logs which
releases it is tested with when a client or worker of another release connects.

A client "of another release" is this process's client with ``get_versions`` reporting
another ``distributed`` version (the suite itself runs on one release per environment; see
conftest's Releases).
"""

from __future__ import annotations

import copy
import warnings

import pytest
from distributed import Client
from distributed import versions as version_module

from conftest import CLIENT_TIMEOUT, DISTRIBUTED_RELEASE, RESULT_TIMEOUT, TESTED_RELEASES, wait_until
from e2e_remote import inc

UNTESTED = "2024.1.0"


def reporting(monkeypatch, release: str) -> None:
    """Makes this process's clients report ``distributed`` ``release`` when they register."""
    real = version_module.get_versions

    def get_versions(packages=None):
        v = copy.deepcopy(real(packages))
        v["packages"]["distributed"] = release
        return v

    monkeypatch.setattr(version_module, "get_versions", get_versions)


def test_client_of_another_release_gets_the_mismatch_table(cluster_factory, monkeypatch):
    cluster = cluster_factory()
    cluster.add_workers(1)
    reporting(monkeypatch, UNTESTED)
    with pytest.warns(version_module.VersionMismatchWarning) as record:
        client = Client(cluster.address, timeout=CLIENT_TIMEOUT, set_as_default=False)
    try:
        text = str(record[0].message)
        assert text.startswith("Mismatched versions found")
        row = next(line for line in text.splitlines() if line.startswith("| distributed "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        # Package, Client, Scheduler, Workers
        assert cells == ["distributed", UNTESTED, DISTRIBUTED_RELEASE, DISTRIBUTED_RELEASE]
        # the warning does not stop it working
        assert client.submit(inc, 1).result(timeout=RESULT_TIMEOUT) == 2
    finally:
        client.close()


def test_client_of_the_same_release_gets_no_warning(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        client = Client(cluster.address, timeout=CLIENT_TIMEOUT, set_as_default=False)
    try:
        mismatches = [w for w in record if issubclass(w.category, version_module.VersionMismatchWarning)]
        assert mismatches == []
        assert client.submit(inc, 2).result(timeout=RESULT_TIMEOUT) == 3
    finally:
        client.close()


def test_rask_logs_a_client_of_an_untested_release(cluster_factory, monkeypatch, scheduler_kind):
    if scheduler_kind != "rask":
        pytest.skip("the log line about rask's tested releases is rask's own")
    cluster = cluster_factory()
    log = cluster.scheduler.log_path
    # this environment's release is a tested one: no warning for it
    assert DISTRIBUTED_RELEASE in TESTED_RELEASES
    with Client(cluster.address, timeout=CLIENT_TIMEOUT, set_as_default=False) as client:
        wait_until(lambda: client.id in log.read_text(errors="replace"), "the client in the log")
    assert "rask is tested with" not in log.read_text(errors="replace")

    reporting(monkeypatch, UNTESTED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", version_module.VersionMismatchWarning)
        with Client(cluster.address, timeout=CLIENT_TIMEOUT, set_as_default=False) as client:
            name = client.id
            wait_until(
                lambda: "rask is tested with" in log.read_text(errors="replace"),
                "the untested-release warning in the log",
            )
    line = next(l for l in log.read_text(errors="replace").splitlines() if "rask is tested with" in l)
    assert "WARN" in line and name in line and UNTESTED in line
    for release in TESTED_RELEASES:
        assert release in line
