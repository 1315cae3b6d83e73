"""Dask's coordination extensions through the scheduler: published datasets, Variable, Queue,
Event, Lock/Semaphore (with lease expiry) and MultiLock, used from clients and from tasks."""

from __future__ import annotations

import os
import signal
import time

import dask
import pytest
from distributed import Event, Lock, MultiLock, Queue, Semaphore, Variable, wait

import e2e_remote as remote
from conftest import RESULT_TIMEOUT, wait_until


# ---- published datasets -------------------------------------------------------------------


def test_publish_shared_between_clients(cluster, client):
    fut = client.submit(remote.inc, 41, key="coord-pub-inc")
    client.publish_dataset(answer=fut, plain=[1, 2, 3])
    assert sorted(client.list_datasets()) == ["answer", "plain"]
    with cluster.client() as other:
        got = other.get_dataset("answer")
        assert got.key == "coord-pub-inc"
        assert got.result(timeout=RESULT_TIMEOUT) == 42
        assert other.get_dataset("plain") == [1, 2, 3]
    # the published key outlives the publisher's own future
    del fut, got
    time.sleep(0.5)
    with cluster.client() as third:
        assert third.get_dataset("answer").result(timeout=RESULT_TIMEOUT) == 42
    with pytest.raises(KeyError):
        client.publish_dataset(answer=1)
    client.publish_dataset(answer=7, override=True)
    assert client.get_dataset("answer") == 7
    client.unpublish_dataset("answer")
    client.unpublish_dataset("plain")
    assert list(client.list_datasets()) == []
    with pytest.raises(KeyError):
        client.get_dataset("answer")
    assert client.get_dataset("answer", default=None) is None


# ---- Variable ------------------------------------------------------------------------------


def test_variable_values_futures_and_timeout(cluster, client):
    v = Variable("coord-var", client=client)
    with pytest.raises(TimeoutError):
        v.get(timeout=0.5)
    v.set({"a": [1, 2]})
    assert v.get(timeout=10) == {"a": (1, 2)}  # msgpack: lists come back as tuples
    fut = client.submit(remote.inc, 1, key="coord-var-inc")
    v.set(fut)
    del fut
    time.sleep(0.5)
    with cluster.client() as other:
        got = Variable("coord-var", client=other).get(timeout=10)
        assert got.key == "coord-var-inc"
        assert got.result(timeout=RESULT_TIMEOUT) == 2
    # a task reads the future from the variable
    assert client.submit(remote.variable_get_in_task, "coord-var", pure=False).result(
        timeout=RESULT_TIMEOUT
    ) == 2
    v.delete()


def test_variable_set_by_task(client):
    f = client.submit(remote.variable_put_from_task, "coord-var-task", 123, pure=False)
    assert Variable("coord-var-task", client=client).get(timeout=RESULT_TIMEOUT) == 123
    f.result(timeout=RESULT_TIMEOUT)
    Variable("coord-var-task", client=client).delete()


# ---- Queue ---------------------------------------------------------------------------------


def test_queue_put_get_batch_futures(cluster, client):
    q = Queue("coord-q", client=client)
    for i in range(3):
        q.put(i)
    assert q.qsize() == 3
    assert q.get(timeout=5) == 0
    assert q.get(batch=True) == [1, 2]
    assert q.get(batch=True) == []
    with pytest.raises(TimeoutError):
        q.get(timeout=0.3)
    fut = client.submit(remote.inc, 10, key="coord-q-inc")
    q.put(fut)
    del fut
    time.sleep(0.5)
    with cluster.client() as other:
        got = Queue("coord-q", client=other).get(timeout=10)
        assert got.key == "coord-q-inc"
        assert got.result(timeout=RESULT_TIMEOUT) == 11
    q.put(5)
    q.put(6)
    assert q.get(batch=2) == [5, 6]


def test_queue_between_tasks(client):
    q = Queue("coord-q-tasks", client=client)
    consumer = client.submit(remote.queue_get_in_task, "coord-q-tasks", 4, pure=False)
    producer = client.submit(remote.queue_put_from_task, "coord-q-tasks", [1, 2, 3, 4], pure=False)
    assert producer.result(timeout=RESULT_TIMEOUT) == 4
    assert consumer.result(timeout=RESULT_TIMEOUT) == [1, 2, 3, 4]
    assert q.qsize() == 0


def test_queue_maxsize_put_timeout(client):
    q = Queue("coord-q-max", maxsize=1, client=client)
    q.put(1)
    with pytest.raises(TimeoutError):
        q.put(2, timeout=0.3)
    assert q.get(timeout=5) == 1


# ---- Event ---------------------------------------------------------------------------------


def test_event_from_client_and_tasks(client):
    ev = Event("coord-ev", client=client)
    assert not ev.is_set()
    assert ev.wait(timeout=0.2) is False
    waiters = client.map(remote.event_wait_in_task, ["coord-ev"] * 2, [RESULT_TIMEOUT] * 2, pure=False)
    time.sleep(0.5)
    assert all(not f.done() for f in waiters)
    ev.set()
    assert client.gather(waiters) == [True, True]
    assert ev.is_set()
    assert ev.wait(timeout=1) is True
    ev.clear()
    assert not ev.is_set()


# ---- Lock / Semaphore / MultiLock ----------------------------------------------------------


def test_lock_around_counter_file(client, tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    futs = client.map(remote.locked_increment, [str(counter)] * 20, ["coord-lock"] * 20, range(20))
    wait(futs, timeout=RESULT_TIMEOUT)
    assert sorted(client.gather(futs)) == list(range(20))
    assert counter.read_text() == "20"


def test_lock_and_semaphore_from_client(client):
    lock = Lock("coord-lock-client")
    assert lock.acquire(timeout=5)
    assert lock.locked()
    other = Lock("coord-lock-client")
    assert other.acquire(timeout=0.3) is False
    lock.release()
    assert other.acquire(timeout=5)
    other.release()

    sem = Semaphore(max_leases=2, name="coord-sem")
    assert sem.acquire(timeout=5)
    assert sem.get_value() == 1
    sem2 = Semaphore(max_leases=2, name="coord-sem")
    assert sem2.acquire(timeout=5)
    sem3 = Semaphore(max_leases=2, name="coord-sem")
    assert sem3.acquire(timeout=0.3) is False
    sem.release()
    assert sem3.acquire(timeout=5)
    assert sem.get_value() == 2
    sem2.release()
    sem3.release()
    assert sem.get_value() == 0
    sem.close()


def test_multilock(client):
    a = MultiLock(names=["coord-ml-a", "coord-ml-b"], client=client)
    b = MultiLock(names=["coord-ml-b", "coord-ml-c"], client=client)
    c = MultiLock(names=["coord-ml-c"], client=client)
    assert a.acquire(timeout=5)
    assert b.acquire(timeout=0.3) is False
    assert c.acquire(timeout=5)  # b's timed-out request left nothing behind
    c.release()
    assert b.acquire(timeout=0.3, num_locks=1)  # c is free
    b.release()
    a.release()
    assert b.acquire(timeout=5)
    b.release()


def test_semaphore_lease_expires_when_holder_is_killed(cluster_factory, monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_TIMEOUT", "2s")
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_VALIDATION_INTERVAL", "0.5s")
    c = cluster_factory()
    c.add_workers(1)
    with c.client() as client, dask.config.set({"distributed.scheduler.locks.lease-timeout": "2s"}):
        sem = Semaphore(max_leases=1, name="coord-sem-kill")
        holder = client.submit(remote.hold_semaphore_forever, "coord-sem-kill", 1, pure=False)
        wait_until(lambda: sem.get_value() == 1, "the task to take the lease", timeout=RESULT_TIMEOUT)
        assert sem.acquire(timeout=0.3) is False
        worker = c.workers["w0"]
        worker.expected_exit = True
        os.kill(worker.pid, signal.SIGKILL)
        # nobody refreshes the lease now: it expires after ~2 s
        assert sem.acquire(timeout=30)
        assert sem.get_value() == 1
        sem.release()
        del holder
