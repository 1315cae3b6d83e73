"""Actors (`actor=True`): the worker that ran the constructor keeps the object; the client
gets an `Actor` whose method calls and attribute reads run on that worker. An actor's state
cannot be recomputed, so losing its worker errs its future."""

import os

import pytest
from distributed import Actor, as_completed, wait

from conftest import RESULT_TIMEOUT, wait_until
from e2e_actors import Counter, total_of


def test_submit_actor_returns_an_actor_running_on_a_worker(client):
    fut = client.submit(Counter, actor=True)
    counter = fut.result(timeout=RESULT_TIMEOUT)
    assert isinstance(counter, Actor)
    assert counter.increment().result(timeout=RESULT_TIMEOUT) == 1
    assert counter.add(10).result(timeout=RESULT_TIMEOUT) == 11
    assert counter.n == 11  # attribute read, from the worker
    # the object lives in a worker process, not in the client
    assert counter.where().result(timeout=RESULT_TIMEOUT) != os.getpid()
    assert counter._address in client.scheduler_info()["workers"]


def test_actor_state_is_shared_by_every_handle(client):
    fut = client.submit(Counter, 5, actor=True)
    a = fut.result(timeout=RESULT_TIMEOUT)
    b = fut.result(timeout=RESULT_TIMEOUT)
    a.increment().result(timeout=RESULT_TIMEOUT)
    assert b.increment().result(timeout=RESULT_TIMEOUT) == 7


def test_map_makes_one_actor_per_item(client):
    futs = client.map(Counter, [0, 100], actor=True)
    wait(futs, timeout=RESULT_TIMEOUT)
    counters = [f.result(timeout=RESULT_TIMEOUT) for f in futs]
    assert all(isinstance(c, Actor) for c in counters)
    assert [c.increment().result(timeout=RESULT_TIMEOUT) for c in counters] == [1, 101]


def test_actor_futures_in_as_completed(client):
    futs = client.map(Counter, [1, 2, 3], actor=True)
    done = list(as_completed(futs, timeout=RESULT_TIMEOUT))
    assert sorted(f.key for f in done) == sorted(f.key for f in futs)
    assert sorted(f.result().n for f in done) == [1, 2, 3]


def test_compute_and_persist_with_actors(client):
    from dask import delayed

    d = delayed(Counter)(3)
    fut = client.compute(d, actors=True)
    counter = fut.result(timeout=RESULT_TIMEOUT)
    assert isinstance(counter, Actor)
    assert counter.increment().result(timeout=RESULT_TIMEOUT) == 4

    (persisted,) = client.persist([delayed(Counter)(7)], actors=True)
    fut = client.compute(persisted)
    counter = fut.result(timeout=RESULT_TIMEOUT)
    assert isinstance(counter, Actor)
    assert counter.n == 7


def test_a_task_can_call_an_actor_it_depends_on(client):
    actor_fut = client.submit(Counter, actor=True)
    total = client.submit(total_of, actor_fut, 3)
    assert total.result(timeout=RESULT_TIMEOUT) == 1 + 2 + 3
    assert actor_fut.result(timeout=RESULT_TIMEOUT).n == 3


def test_losing_the_actors_worker_errs_its_future(cluster_factory):
    c = cluster_factory()
    c.add_workers(2)
    with c.client() as client:
        fut = client.submit(Counter, actor=True)
        counter = fut.result(timeout=RESULT_TIMEOUT)
        assert counter.increment().result(timeout=RESULT_TIMEOUT) == 1
        holder = next(n for n, a in c.worker_addresses().items() if a == counter._address)
        c.workers[holder].kill()
        wait_until(lambda: fut.status == "error", "the actor's future to err")
        with pytest.raises(RuntimeError, match="Worker holding Actor was lost"):
            fut.result(timeout=RESULT_TIMEOUT)
        # the rest of the cluster keeps working, new actors included
        again = client.submit(Counter, 1, actor=True).result(timeout=RESULT_TIMEOUT)
        assert again.increment().result(timeout=RESULT_TIMEOUT) == 2
