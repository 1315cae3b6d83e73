"""The scheduler reads the user's Dask configuration from where Dask reads it: YAML in
``$DASK_CONFIG``, ``DASK_*`` variables, and ``DASK_INTERNAL_INHERIT_CONFIG`` (what SSH-style
launchers hand to the processes they start). Observed through a setting a client can see:
``distributed.admin.low-level-log-length`` bounds how many events a topic keeps. A value
that does not parse stops the scheduler at start."""

from __future__ import annotations

import time

import dask.config
import pytest

from conftest import STARTUP_TIMEOUT, scheduler_argv

EVENTS = 6


def kept_events(cluster) -> int:
    with cluster.client() as c:
        for i in range(EVENTS):
            c.log_event("config-probe", i)
        return len(c.get_events("config-probe"))


def test_defaults_keep_every_event(cluster_factory):
    cluster = cluster_factory()
    assert kept_events(cluster) == EVENTS


def test_yaml_in_dask_config_dir(cluster_factory, monkeypatch, tmp_path):
    conf = tmp_path / "dask-conf"
    conf.mkdir()
    (conf / "rask-test.yaml").write_text("distributed:\n  admin:\n    low-level-log-length: 2\n")
    monkeypatch.setenv("DASK_CONFIG", str(conf))
    assert kept_events(cluster_factory()) == 2


def test_dask_environment_variable(cluster_factory, monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH", "3")
    assert kept_events(cluster_factory()) == 3


def test_inherited_config(cluster_factory, monkeypatch):
    inherited = dask.config.serialize({"distributed": {"admin": {"low-level-log-length": 4}}})
    monkeypatch.setenv("DASK_INTERNAL_INHERIT_CONFIG", inherited)
    assert kept_events(cluster_factory()) == 4


@pytest.mark.parametrize(
    "variable, value",
    [
        ("DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL", "5 parsecs"),
        ("DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION", "-1"),
    ],
)
def test_a_malformed_value_stops_the_scheduler_at_start(
    scheduler_kind, procs, tmp_path, monkeypatch, variable, value
):
    monkeypatch.setenv(variable, value)
    argv = scheduler_argv(scheduler_kind, tmp_path / "never.json")
    proc = procs.start(f"bad-config-{scheduler_kind}", argv)
    proc.expected_exit = True
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while proc.alive():
        assert time.monotonic() < deadline, "the scheduler started with a malformed config value"
        time.sleep(0.1)
    assert proc.popen.returncode != 0
    assert not (tmp_path / "never.json").exists()
    if scheduler_kind == "rask":
        log = proc.log_path.read_text()
        key = variable.removeprefix("DASK_").lower().replace("__", ".").replace("_", "-")
        assert key in log, log
        assert value in log, log
