"""Diagnostics a user reads from the scheduler: the task stream (``get_task_stream``, as a
context manager and as ``Client.get_task_stream``), task prefix states, stories
(``Client.story``), task metadata (``get_task_metadata``), ``recreate_error_locally`` /
``recreate_task_locally`` and the ``MemorySampler``.

As on the stock scheduler without a dashboard, the task stream records only once it was first
asked for; each test asks before it computes. Keys are made unique (``pure=False``) so tests
sharing the module's cluster never see each other's tasks.
"""

from __future__ import annotations

import uuid

import pytest
from distributed import get_task_stream, wait
from distributed.client import get_task_metadata
from distributed.diagnostics import MemorySampler

from conftest import RESULT_TIMEOUT
from e2e_remote import fail, inc


def worker_addresses(client) -> set[str]:
    return set(client.scheduler_info()["workers"])


def check_row(row: dict, workers: set[str], status: str) -> None:
    """What a task stream row tells a user: where the task ran and when."""
    assert row["worker"] in workers, row
    assert row["status"] == status, row
    assert isinstance(row["thread"], int), row
    computes = [s for s in row["startstops"] if s["action"] == "compute"]
    assert computes, row
    for s in computes:
        assert s["start"] <= s["stop"], row


def test_task_stream_context_manager_has_a_row_per_task(client):
    with get_task_stream(client=client) as ts:
        futures = client.map(inc, range(6), pure=False)
        assert client.gather(futures, errors="raise") == list(range(1, 7))
    rows = ts.data
    assert sorted(r["key"] for r in rows) == sorted(f.key for f in futures)
    workers = worker_addresses(client)
    for row in rows:
        check_row(row, workers, "OK")
        assert row["typename"] == "int"
        assert row["nbytes"] > 0


def test_get_task_stream_with_start_and_count(client):
    client.get_task_stream()  # starts recording, as the stock docstring says
    futures = client.map(inc, range(100, 104), pure=False)
    wait(futures, timeout=RESULT_TIMEOUT)
    keys = {f.key for f in futures}

    # every row of these tasks finished after the oldest of them started
    rows = [r for r in client.get_task_stream(start=0) if r["key"] in keys]
    assert sorted(r["key"] for r in rows) == sorted(keys)
    first_start = min(s["start"] for r in rows for s in r["startstops"])
    later = client.get_task_stream(start=first_start)
    assert keys <= {r["key"] for r in later}
    assert len(client.get_task_stream(count=2)) == 2
    workers = worker_addresses(client)
    for row in rows:
        check_row(row, workers, "OK")


def test_an_erred_task_is_in_the_task_stream(client):
    with get_task_stream(client=client) as ts:
        f = client.submit(fail, 1, pure=False)
        wait(f, timeout=RESULT_TIMEOUT)
    assert f.status == "error"
    (row,) = [r for r in ts.data if r["key"] == f.key]
    check_row(row, worker_addresses(client), "error")
    assert "intentional failure 1" in row["exception_text"]


def test_task_prefix_states(client):
    futures = client.map(inc, range(200, 203), pure=False)
    wait(futures, timeout=RESULT_TIMEOUT)
    states = client.sync(client.scheduler.get_task_prefix_states)
    assert states["inc"]["memory"] >= 3
    assert set(states["inc"]) == {"memory", "erred", "released", "processing", "waiting"}


def test_task_metadata_of_the_tasks_of_a_block(client):
    with get_task_metadata() as tm:
        x = client.submit(inc, 300, pure=False)
        y = client.submit(fail, 2, pure=False)
        wait([x, y], timeout=RESULT_TIMEOUT)
    assert tm.state == {x.key: "memory", y.key: "erred"}
    assert tm.metadata == {x.key: None, y.key: None}


def test_story_of_a_key(client):
    x = client.submit(inc, 400, pure=False)
    assert x.result(timeout=RESULT_TIMEOUT) == 401
    story = client.story(x.key)
    scheduler = [s[1:] for s in story if s[0] == "scheduler"]
    moves = [(key, start, finish) for key, start, finish, *_ in scheduler]
    assert (x.key, "processing", "memory") in moves
    assert moves[0] == (x.key, "released", "waiting")
    for key, start, finish, recommendations, stimulus_id, timestamp in scheduler:
        assert isinstance(recommendations, dict) and isinstance(stimulus_id, str)
        assert timestamp > 0
    # the worker's own story comes along (stock broadcast of get_story)
    assert any(s[0] in worker_addresses(client) for s in story)


def test_recreate_error_and_task_locally(client):
    f = client.submit(fail, 3, pure=False)
    wait(f, timeout=RESULT_TIMEOUT)
    with pytest.raises(ValueError, match="intentional failure 3"):
        client.recreate_error_locally(f)
    g = client.submit(inc, 500, pure=False)
    assert client.recreate_task_locally(g) == 501


def test_memory_sampler_samples_cluster_memory(client):
    ms = MemorySampler()
    label = f"run-{uuid.uuid4().hex[:8]}"
    with ms.sample(label, client=client, interval=0.05):
        client.submit(inc, 600, pure=False).result(timeout=RESULT_TIMEOUT)
    samples = ms.samples[label]
    assert samples
    assert all(nbytes > 0 for _, nbytes in samples)
    with ms.sample(label + "-optimistic", client=client, measure="optimistic", interval=0.05):
        pass
    assert ms.samples[label + "-optimistic"]


def test_an_unlimited_log_length_is_accepted(cluster_factory, monkeypatch, tmp_path):
    """``low-level-log-length: null`` is Dask's ``deque(maxlen=None)``: no limit, and the
    scheduler starts."""
    conf = tmp_path / "dask-conf"
    conf.mkdir()
    (conf / "rask-test.yaml").write_text("distributed:\n  admin:\n    low-level-log-length: null\n")
    monkeypatch.setenv("DASK_CONFIG", str(conf))
    cluster = cluster_factory()
    cluster.add_workers(1)
    with cluster.client() as c:
        for i in range(3):
            c.log_event("unlimited", i)
        assert len(c.get_events("unlimited")) == 3
        x = c.submit(inc, 1, pure=False)
        assert x.result(timeout=RESULT_TIMEOUT) == 2
        assert any(s[0] == "scheduler" for s in c.story(x.key))
