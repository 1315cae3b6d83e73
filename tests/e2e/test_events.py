"""The event log (``Client.log_event``/``get_events``/``subscribe_topic``, ``Worker.log_event``,
``distributed.print`` from tasks) and the scheduler-side Python entry points
(``Client.run_on_scheduler``, scheduler plugins).

Topics carry a fresh uuid so tests sharing the module's cluster never see each other's
events.
"""

import time
import uuid

import pytest

from conftest import RESULT_TIMEOUT, wait_until
from e2e_remote import (
    EventCountingPlugin,
    count_of_plugin,
    has_scheduler_plugin,
    log_worker_event,
    remote_print,
    scheduler_address,
    scheduler_side_sum,
)



def topic_name(label: str) -> str:
    return f"e2e-{label}-{uuid.uuid4().hex[:8]}"


def test_client_log_event_and_get_events(client):
    topic = topic_name("client")
    client.log_event(topic, {"n": 1, "text": "first"})
    client.log_event(topic, "second")
    client.log_event([topic, topic + "-other"], [1, 2, 3])

    events = client.get_events(topic)
    assert [msg for _, msg in events] == [{"n": 1, "text": "first"}, "second", (1, 2, 3)]
    stamps = [ts for ts, _ in events]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 60
    assert [msg for _, msg in client.get_events(topic + "-other")] == [(1, 2, 3)]
    assert client.get_events(topic_name("never-logged")) == ()

    everything = client.get_events()
    assert everything[topic] == events
    assert topic_name("never-logged") not in everything


def test_worker_log_event_from_a_task(client):
    topic = topic_name("worker")
    address = client.submit(log_worker_event, topic, {"from": "task"}, pure=False).result(
        timeout=RESULT_TIMEOUT
    )
    client.submit(log_worker_event, topic, "plain", pure=False).result(timeout=RESULT_TIMEOUT)

    events = wait_until(lambda: len(client.get_events(topic)) == 2 and client.get_events(topic), "two events")
    msgs = [msg for _, msg in events]
    # dicts logged by a worker get its address (Scheduler.log_worker_event)
    assert msgs == [{"from": "task", "worker": address}, "plain"]
    assert address in client.scheduler_info()["workers"]


def test_subscribe_and_unsubscribe(client):
    topic = topic_name("sub")
    received = []
    client.subscribe_topic(topic, received.append)

    # The subscription travels on the client's stream, the task's event on the worker's:
    # keep logging until the first one arrives.
    def delivered():
        if not received:
            client.submit(log_worker_event, topic, {"i": len(received)}, pure=False).result(
                timeout=RESULT_TIMEOUT
            )
            time.sleep(0.2)
        return received

    wait_until(delivered, "a subscribed event")
    ts, msg = received[0]
    assert isinstance(ts, float) and msg["i"] == 0 and "worker" in msg

    client.log_event(topic, "from the client")
    wait_until(lambda: any(m == "from the client" for _, m in received), "the client's event")

    client.unsubscribe_topic(topic)
    time.sleep(1.0)  # the unsubscription reaches the scheduler
    seen = len(received)
    client.log_event(topic, "after unsubscribe")
    client.submit(log_worker_event, topic, "task after unsubscribe", pure=False).result(
        timeout=RESULT_TIMEOUT
    )
    wait_until(
        lambda: any(m == "task after unsubscribe" for _, m in client.get_events(topic)),
        "the event in the log",
    )
    time.sleep(1.0)
    assert len(received) == seen
    # still logged, just not delivered
    assert [m for _, m in client.get_events(topic)][-2:] == ["after unsubscribe", "task after unsubscribe"]


def test_distributed_print_reaches_the_client(client, capsys):
    marker = uuid.uuid4().hex
    n = client.submit(remote_print, "hello from a task", marker, sep="|", pure=False).result(
        timeout=RESULT_TIMEOUT
    )
    assert n == 2
    out = []

    def printed():
        out.append(capsys.readouterr().out)
        return f"hello from a task|{marker}\n" in "".join(out)

    wait_until(printed, "the task's print on the client's stdout")
    events = client.get_events("print")
    assert any(m.get("args") == ("hello from a task", marker) for _, m in events)


def test_run_on_scheduler_plain_function(client):
    assert client.run_on_scheduler(scheduler_side_sum, 1, 2) == 3
    assert client.run_on_scheduler(scheduler_side_sum, 1, 2, scale=10) == 30
    assert client.run_on_scheduler(lambda: {"a": [1, 2]}) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        client.run_on_scheduler(scheduler_side_sum, 1, "x")
    # the cluster keeps working
    assert client.run_on_scheduler(scheduler_side_sum, 2, 2) == 4


def test_run_on_scheduler_with_dask_scheduler(client):
    assert client.run_on_scheduler(scheduler_address) == client.scheduler.address
    assert client.run_on_scheduler(scheduler_side_sum, 1, 1) == 2


def test_scheduler_plugin_sees_logged_events(client):
    plugin = EventCountingPlugin()
    client.register_plugin(plugin)
    try:
        assert client.run_on_scheduler(has_scheduler_plugin, plugin.name)
        topic = topic_name("counted")
        for i in range(3):
            client.log_event(topic, i)
        # the hook runs for every event logged (the scheduler's own ones too)
        wait_until(
            lambda: client.run_on_scheduler(count_of_plugin, plugin.name) >= 3,
            "the plugin counted the logged events",
        )
    finally:
        client.unregister_scheduler_plugin(plugin.name)
    assert not client.run_on_scheduler(has_scheduler_plugin, plugin.name)
    with pytest.raises(ValueError, match="Could not find plugin 'never-registered'"):
        client.unregister_scheduler_plugin("never-registered")
    # the client and cluster keep working
    topic = topic_name("after-plugin")
    client.log_event(topic, "ok")
    assert [m for _, m in client.get_events(topic)] == ["ok"]
