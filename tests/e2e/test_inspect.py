"""Looking inside the cluster from a client: the scheduler's and the workers' logs
(``get_scheduler_logs``, ``get_worker_logs``), profiles (``Client.profile``), call stacks
(``Client.call_stack``), cluster dumps (``Client.dump_cluster_state``), hardware benchmarks
(``Client.benchmark_hardware``) and requests proxied to a worker (``scheduler.proxy``).

Every test checks what a user would look at, the same on both schedulers: shapes, entries per
worker, counts that grow with work, a dump file that loads.
"""

import gzip
import time
import uuid

import msgpack
import pytest
import yaml

from conftest import RESULT_TIMEOUT, wait_until
from e2e_remote import sleep_until_file, slow_inc

LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def is_log_line(entry) -> bool:
    return (
        isinstance(entry, (tuple, list))
        and len(entry) == 2
        and entry[0] in LEVELS
        and isinstance(entry[1], str)
        and entry[1] != ""
    )


# ---- logs ------------------------------------------------------------------------------------


def test_scheduler_logs_are_level_text_pairs_and_show_a_worker_arriving(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(1)
    address = cluster.worker_addresses()["w0"]
    with cluster.client() as client:
        logs = client.get_scheduler_logs()
        assert logs and all(is_log_line(e) for e in logs), logs[:5]
        # the registration of the worker is logged with its address
        wait_until(
            lambda: any(address in text for _, text in client.get_scheduler_logs()),
            "the worker's arrival in the scheduler's logs",
        )
        assert len(client.get_scheduler_logs(n=1)) == 1
        # newest first: the client's own connection came after the worker's registration
        texts = [text for _, text in client.get_scheduler_logs()]
        first_worker_line = next(i for i, t in enumerate(texts) if address in t)
        assert first_worker_line > 0
        stamped = client.sync(client.scheduler.get_logs, timestamps=True, n=3)
        assert len(stamped) == 3
        for created, level, text in stamped:
            assert level in LEVELS and isinstance(text, str)
            assert abs(created - time.time()) < 3600


def test_scheduler_logs_keep_at_most_log_length_lines(cluster_factory, monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__ADMIN__LOG_LENGTH", "3")
    cluster = cluster_factory()
    cluster.add_workers(1)
    with cluster.client() as client:
        # the start, the worker's registration and two clients' connections were logged
        assert len(client.get_scheduler_logs()) == 3


def test_worker_logs_have_an_entry_per_worker(client, cluster):
    addresses = set(cluster.worker_addresses().values())
    logs = client.get_worker_logs()
    assert set(logs) == addresses
    for address, lines in logs.items():
        assert lines and all(is_log_line(e) for e in lines), (address, lines[:5])
    one = client.get_worker_logs(n=1)
    assert set(one) == addresses and all(len(lines) == 1 for lines in one.values())
    some = sorted(addresses)[:1]
    assert set(client.get_worker_logs(workers=some)) == set(some)


def test_worker_logs_from_nannies(cluster_factory):
    cluster = cluster_factory()
    # (all workers with a nanny: where some have none, the stock scheduler files the
    # nannies' answers under the wrong workers, scheduler.py:6719 zips workers with nannies)
    cluster.add_workers(1, nanny=True)
    (address,) = cluster.worker_addresses().values()
    with cluster.client() as client:
        logs = client.get_worker_logs(nanny=True)
        assert set(logs) == {address}
        assert logs[address] and all(is_log_line(e) for e in logs[address])


# ---- profile ---------------------------------------------------------------------------------


def test_profile_after_some_work_counts_samples(client, cluster):
    futures = client.map(slow_inc, range(6), delay=0.3, key=[f"prof-{uuid.uuid4().hex[:6]}-{i}" for i in range(6)])
    assert client.gather(futures) == list(range(1, 7))

    def sampled():
        p = client.profile()
        return p if p["count"] > 0 else None

    prof = wait_until(sampled, "a profile with samples")
    assert prof["identifier"] == "root"
    assert prof["children"], prof
    assert set(prof["description"]) == {"filename", "name", "line_number", "line"}
    # the merged count is the sum of the workers' counts
    per_worker = client.profile(merge_workers=False)
    assert set(per_worker) <= set(cluster.worker_addresses().values())
    assert all(p["identifier"] == "root" for p in per_worker.values())
    one = sorted(per_worker)[0]
    assert client.profile(workers=[one])["identifier"] == "root"


def test_profile_of_no_worker_is_empty(client):
    prof = client.profile(workers=["tcp://127.0.0.1:1"])
    assert prof == {
        "count": 0,
        "children": {},
        "identifier": "root",
        "description": {"filename": "", "name": "", "line_number": 0, "line": ""},
    }


# ---- call stack ------------------------------------------------------------------------------


def test_call_stack_shows_a_running_task(client, tmp_path):
    flag = tmp_path / f"release-{uuid.uuid4().hex}"
    future = client.submit(sleep_until_file, str(flag), key=f"stuck-{uuid.uuid4().hex[:8]}")
    try:
        wait_until(
            lambda: future.key in {k for ks in client.processing().values() for k in ks},
            "the task to run",
        )

        def stacks():
            s = client.call_stack()
            return s if any(future.key in per_key for per_key in s.values()) else None

        everything = wait_until(stacks, "the task's call stack")
        (worker,) = [w for w, per_key in everything.items() if future.key in per_key]
        frames = everything[worker][future.key]
        assert frames and all(isinstance(f, str) for f in frames)
        assert any("sleep_until_file" in f for f in frames), frames

        by_future = client.call_stack([future])
        assert set(by_future) == {worker}
        assert future.key in by_future[worker]
    finally:
        flag.touch()
    assert future.result(timeout=RESULT_TIMEOUT) is True
    # nothing is running now: no worker has anything to show for the key
    assert client.call_stack(keys=[future.key]) == {}


# ---- cluster dump ----------------------------------------------------------------------------


def test_dump_cluster_state_writes_a_file_that_loads(client, cluster, tmp_path):
    futures = client.map(slow_inc, range(3), delay=0, key=[f"dump-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)])
    client.gather(futures)
    addresses = set(cluster.worker_addresses().values())

    client.dump_cluster_state(str(tmp_path / "dump"))
    with gzip.open(tmp_path / "dump.msgpack.gz") as f:
        state = msgpack.unpack(f, strict_map_key=False)
    assert set(state) == {"scheduler", "workers", "versions"}
    assert set(state["workers"]) == addresses
    assert set(state["versions"]) == {"scheduler", "workers"}
    scheduler = state["scheduler"]
    for key in ("type", "id", "address", "status", "tasks", "workers", "clients"):
        assert key in scheduler, key
    assert scheduler["address"] == cluster.address
    assert set(scheduler["workers"]) == addresses
    for f in futures:
        task = scheduler["tasks"][f.key]
        assert task["state"] == "memory"
    # the worker side is each worker's own dump_state
    for address, worker in state["workers"].items():
        assert worker["address"] == address

    from distributed.cluster_dump import DumpArtefact

    dump = DumpArtefact.from_url(str(tmp_path / "dump.msgpack.gz"))
    in_memory = {t["key"] for t in dump.scheduler_tasks_in_state("memory")}
    assert {f.key for f in futures} <= in_memory
    assert dump.missing_workers() == []


def test_dump_cluster_state_as_yaml(client, cluster, tmp_path):
    future = client.submit(slow_inc, 1, delay=0, key=f"yaml-{uuid.uuid4().hex[:6]}")
    future.result(timeout=RESULT_TIMEOUT)
    client.dump_cluster_state(str(tmp_path / "dump"), format="yaml", exclude=["run_spec", "log"])
    with open(tmp_path / "dump.yaml") as f:
        state = yaml.safe_load(f)
    assert set(state) == {"scheduler", "workers", "versions"}
    assert set(state["workers"]) == set(cluster.worker_addresses().values())
    task = state["scheduler"]["tasks"][future.key]
    assert task["state"] == "memory" and "run_spec" not in task


def test_dump_cluster_state_to_a_url_is_written_by_the_scheduler(client, cluster, tmp_path):
    # a URL (with "://") is written from the scheduler (dump_cluster_state_to_url)
    client.dump_cluster_state(f"file://{tmp_path}/remote-dump")
    with gzip.open(tmp_path / "remote-dump.msgpack.gz") as f:
        state = msgpack.unpack(f, strict_map_key=False)
    assert set(state) == {"scheduler", "workers", "versions"}
    assert set(state["workers"]) == set(cluster.worker_addresses().values())
    with pytest.raises(ValueError, match="Unsupported format"):
        client.dump_cluster_state(f"file://{tmp_path}/bad", format="json")


def test_scheduler_dump_state(client):
    state = client.sync(client.scheduler.dump_state)
    assert state["type"] == "Scheduler" and state["status"] == "running"
    assert "id" not in client.sync(client.scheduler.dump_state, exclude=["id"])


# ---- benchmark, proxy ------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_benchmark_hardware_averages_every_mode(client):
    result = client.benchmark_hardware()
    assert set(result) == {"disk", "memory", "network"}
    for mode in ("disk", "memory", "network"):
        assert result[mode], mode
        assert all(isinstance(size, str) and bw > 0 for size, bw in result[mode].items()), result[mode]


def test_proxy_forwards_a_request_to_a_worker(client, cluster):
    address = cluster.worker_addresses()["w0"]
    identity = client.sync(client.scheduler.proxy, msg={"op": "identity"}, worker=address)
    assert identity["type"] == "Worker" and identity["id"]
    versions = client.sync(client.scheduler.proxy, msg={"op": "versions"}, worker=address)
    assert "distributed" in versions["packages"]
