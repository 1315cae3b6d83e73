"""Behaviours Dask's own ``test_client.py`` showed to differ between the stock scheduler and
rask, each checked on both: worker names that are ints in ``workers=``, a gone worker in
``has_what``/``ncores``/``processing``, ``restart``'s ``TimeoutError``, ``Client.run`` to an
address nobody listens on, the client heartbeat interval and the scheduler's own events on
the ``all`` topic.
"""

import socket

import pytest
from distributed import Client

from conftest import CLIENT_TIMEOUT, RESULT_TIMEOUT, wait_until
from e2e_remote import inc, pid


def free_address() -> str:
    """An address on which nothing listens (a port just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def worker_named(cluster, name: str):
    """Starts one worker with ``--name NAME`` (``dask worker`` turns "0" into the int 0)."""
    cluster.workers[name] = cluster.start_worker(name)
    cluster.wait_for_workers(len(cluster.workers))
    return {str(n): a for n, a in cluster.worker_addresses().items()}[name]


def stop_worker(cluster, name: str, address: str, client) -> None:
    """Kills a worker on purpose and waits until the scheduler has removed it."""
    cluster.workers[name].kill()
    wait_until(
        lambda: address not in client.scheduler_info(n_workers=-1)["workers"],
        f"the scheduler to remove {address}",
    )


def test_int_worker_names_in_workers_lists(cluster_factory):
    cluster = cluster_factory()
    address = worker_named(cluster, "0")
    other = worker_named(cluster, "w1")
    with cluster.client() as client:
        info = client.scheduler_info(n_workers=-1)["workers"]
        assert info[address]["name"] == 0

        # scatter resolves the name to its worker (Scheduler.coerce_address)
        for _ in range(4):
            future = client.scatter(41, workers=[0], hash=False)
            assert client.who_has([future])[future.key] == (address,)
            assert client.submit(inc, future).result(timeout=RESULT_TIMEOUT) == 42

        assert client.ncores(workers=[0]) == {address: 1}
        assert set(client.has_what(workers=[0])) == {address}
        assert client.processing(workers=[0]) == {address: ()}
        assert set(client.ncores()) == {address, other}

        # a task restricted to the worker named 0 runs there (the graph helper's names)
        x = client.submit(pid, workers=[0], pure=False)
        x.result(timeout=RESULT_TIMEOUT)
        assert client.who_has([x])[x.key] == (address,)


def test_gone_worker_in_has_what_ncores_processing(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(2)
    addresses = cluster.worker_addresses()
    gone, stays = addresses["w0"], addresses["w1"]
    with cluster.client() as client:
        stop_worker(cluster, "w0", gone, client)
        # has_what lists it with no keys (scheduler.py:7876); ncores leaves it out
        # (scheduler.py:7890); processing raises the KeyError of `self.workers[w]`
        assert {k: list(v) for k, v in client.has_what(workers=[gone, stays]).items()} == {
            gone: [],
            stays: [],
        }
        assert client.ncores(workers=[gone, stays]) == {stays: 1}
        with pytest.raises(KeyError):
            client.processing(workers=[gone])


def test_restart_timeout_raises_timeout_error(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(1)
    address = cluster.worker_addresses()["w0"]
    with cluster.client() as client:
        # a worker without a nanny is shut down and never comes back: the wait times out
        cluster.workers["w0"].expected_exit = True
        with pytest.raises(TimeoutError, match="have not returned") as info:
            client.restart(timeout=0.5)
        text = str(info.value)
        assert text.startswith("Waited for 1 worker(s) to reconnect after restarting but, after 0.5s")
        assert "not using Nannies were just shut down" in text
        # the workers it restarted (here: shut down) are an event on "all"
        restarted = actions(client.get_events("all"), "restart-workers")
        assert restarted == [{"action": "restart-workers", "workers": (address,), "client": None}]


def test_run_on_unreachable_address_is_a_connect_timeout(cluster_factory, monkeypatch):
    # the scheduler dials with `distributed.comm.timeouts.connect`; short, to keep it quick
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "1s")
    cluster = cluster_factory()
    cluster.add_workers(2)
    addresses = cluster.worker_addresses()
    live = addresses["w1"]
    with cluster.client() as client:
        # an address that is not a registered worker is dialled all the same
        nobody = free_address()
        with pytest.raises(OSError, match=f"Timed out trying to connect to {nobody} after 1 s"):
            client.run(pid, workers=[nobody])
        out = client.run(pid, workers=[nobody, live], on_error="return")
        assert isinstance(out[nobody], OSError)
        assert isinstance(out[live], int)
        assert client.run(pid, workers=[nobody, live], on_error="ignore").keys() == {live}

        # a worker that is gone (killed, then removed): the same error
        gone = addresses["w0"]
        stop_worker(cluster, "w0", gone, client)
        with pytest.raises(OSError, match=f"Timed out trying to connect to {gone}"):
            client.run(pid, workers=[gone])


def test_client_heartbeat_interval_follows_the_number_of_clients(cluster_factory):
    cluster = cluster_factory()
    with cluster.client() as client:
        heartbeat = client._periodic_callbacks["heartbeat"]
        initial = heartbeat.callback_time
        others = [Client(cluster.address, timeout=CLIENT_TIMEOUT, set_as_default=False) for _ in range(12)]
        try:
            # more than 10 clients: heartbeat_interval(n) * 10 = 10 s (scheduler.py:5843)
            wait_until(lambda: heartbeat.callback_time > initial, "a longer heartbeat interval", timeout=60)
            assert heartbeat.callback_time == 10_000
        finally:
            for c in others:
                c.close(timeout=10)
        wait_until(lambda: heartbeat.callback_time == initial, "the initial interval again", timeout=60)


def actions(events, action):
    return [msg for _, msg in events if isinstance(msg, dict) and msg.get("action") == action]


def test_scheduler_events_on_all(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(1)
    with cluster.client() as client:
        address = cluster.worker_addresses()["w0"]
        # a worker's arrival: on "all" with its address, on its own topic without
        added = actions(client.get_events("all"), "add-worker")
        assert {"action": "add-worker", "worker": address} in added
        assert actions(client.get_events(address), "add-worker") == [{"action": "add-worker"}]

        # a client's arrival and departure: on "all" and on the client's topic
        other = Client(cluster.address, timeout=CLIENT_TIMEOUT, set_as_default=False)
        other_id = other.id
        other.close(timeout=10)
        assert {"action": "add-client", "client": client.id} in actions(client.get_events("all"), "add-client")
        wait_until(
            lambda: {"action": "remove-client", "client": other_id}
            in actions(client.get_events("all"), "remove-client"),
            "the remove-client event",
        )
        assert actions(client.get_events(other_id), "add-client") == [
            {"action": "add-client", "client": other_id}
        ]

        # scatter and gather
        future = client.scatter(7)
        assert client.gather(future) == 7
        assert {"action": "scatter", "client": client.id, "count": 1} in actions(
            client.get_events("all"), "scatter"
        )
        assert {"action": "gather", "count": 1} in actions(client.get_events("all"), "gather")

        # a worker's departure, with what it cost
        scattered = future.key
        stop_worker(cluster, "w0", address, client)
        removed = wait_until(lambda: actions(client.get_events("all"), "remove-worker"), "remove-worker")
        (event,) = removed
        assert event["worker"] == address
        assert event["lost-scattered-tasks"] == {scattered}
        assert event["lost-computed-tasks"] == set()
        assert event["processing-tasks"] == set()
        assert event["expected"] is False
        assert isinstance(event["stimulus_id"], str)
        (own,) = actions(client.get_events(address), "remove-worker")
        assert "worker" not in own and own["lost-scattered-tasks"] == {scattered}
