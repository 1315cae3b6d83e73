"""Failures: task exceptions with tracebacks, propagation to dependents, retries,
Client.retry, and a graph the scheduler cannot unpickle."""

import importlib
import pickle
import sys
import textwrap
import traceback

import dask
import pytest
from dask import delayed

from conftest import RESULT_TIMEOUT, wait_until
import e2e_remote as remote
from e2e_remote import CustomError, add, fail, fail_if, flaky_inc, inc, raise_custom


def test_exception_type_message_traceback(client):
    f = client.submit(fail, 1)
    with pytest.raises(ValueError, match="intentional failure 1"):
        f.result(timeout=RESULT_TIMEOUT)
    assert f.status == "error"

    exc = f.exception(timeout=RESULT_TIMEOUT)
    assert type(exc) is ValueError
    assert str(exc) == "intentional failure 1"

    tb = f.traceback(timeout=RESULT_TIMEOUT)
    assert tb is not None
    text = "".join(traceback.format_tb(tb))
    assert "e2e_remote.py" in text and "in fail" in text, text

    g = client.submit(raise_custom, "custom message")
    with pytest.raises(CustomError, match="custom message"):
        g.result(timeout=RESULT_TIMEOUT)

    # the cluster keeps working
    assert client.submit(inc, 1).result(timeout=RESULT_TIMEOUT) == 2


def test_dependents_err(client):
    f = client.submit(fail, 2)
    g = client.submit(inc, f)
    h = client.submit(add, g, 1)
    for fut in (g, h):
        with pytest.raises(ValueError, match="intentional failure 2"):
            fut.result(timeout=RESULT_TIMEOUT)
        assert fut.status == "error"

    # a graph submitted later that depends on the erred key errs too
    later = client.submit(inc, f)
    with pytest.raises(ValueError, match="intentional failure 2"):
        later.result(timeout=RESULT_TIMEOUT)

    # delayed graph with one failing node: compute raises, independent parts unaffected
    parts = [delayed(fail_if)(i, 3) for i in range(6)]
    total = delayed(sum)(parts)
    with pytest.raises(ValueError, match="bad value 3"):
        total.compute()
    assert dask.compute(parts[:3])[0] == [0, 1, 2]

    futs = client.map(fail_if, range(6), bad=4)
    assert client.gather(futs, errors="skip") == [0, 1, 2, 3, 5]
    with pytest.raises(ValueError, match="bad value 4"):
        client.gather(futs)


def test_retries(client, tmp_path):
    counter = tmp_path / "counter-a"
    f = client.submit(flaky_inc, str(counter), 2, 10, retries=2, pure=False)
    assert f.result(timeout=RESULT_TIMEOUT) == 11
    assert counter.read_text() == "3"

    # not enough retries: the last failure is reported
    counter_b = tmp_path / "counter-b"
    g = client.submit(flaky_inc, str(counter_b), 3, 10, retries=1, pure=False)
    with pytest.raises(RuntimeError, match="flaky attempt 2"):
        g.result(timeout=RESULT_TIMEOUT)
    assert counter_b.read_text() == "2"

    # retries through annotations on a collection
    counter_c = tmp_path / "counter-c"
    with dask.annotate(retries=1):
        d = delayed(flaky_inc)(str(counter_c), 1, 5)
    assert client.compute(d, optimize_graph=False).result(timeout=RESULT_TIMEOUT) == 6
    assert counter_c.read_text() == "2"


def test_client_retry(client, tmp_path):
    counter = tmp_path / "counter"
    f = client.submit(flaky_inc, str(counter), 1, 20, pure=False)
    with pytest.raises(RuntimeError, match="flaky attempt 1"):
        f.result(timeout=RESULT_TIMEOUT)
    dep = client.submit(inc, f)
    with pytest.raises(RuntimeError, match="flaky attempt 1"):
        dep.result(timeout=RESULT_TIMEOUT)

    client.retry([f])
    assert f.result(timeout=RESULT_TIMEOUT) == 21
    assert counter.read_text() == "2"

    # Future.retry on a dependent re-runs the erred dependency as well
    counter2 = tmp_path / "counter2"
    f2 = client.submit(flaky_inc, str(counter2), 1, 30, pure=False)
    dep2 = client.submit(inc, f2)
    with pytest.raises(RuntimeError, match="flaky attempt 1"):
        dep2.result(timeout=RESULT_TIMEOUT)
    dep2.retry()
    assert dep2.result(timeout=RESULT_TIMEOUT) == 32
    assert f2.result(timeout=RESULT_TIMEOUT) == 31


@pytest.fixture
def client_only_module(tmp_path, monkeypatch):
    """A module importable by the client only (not by the scheduler or the workers)."""
    name = f"client_only_{tmp_path.name.replace('-', '_').replace('[', '_').replace(']', '_')}"
    moddir = tmp_path / "client-only"
    moddir.mkdir()
    (moddir / f"{name}.py").write_text(textwrap.dedent("""
        def secret_inc(x):
            return x + 1
    """))
    monkeypatch.syspath_prepend(str(moddir))
    mod = importlib.import_module(name)
    yield mod
    sys.modules.pop(name, None)


def test_graph_not_unpicklable_on_scheduler(client, client_only_module):
    mod = client_only_module
    # pickled by reference (importable module, not __main__)
    payload = pickle.dumps(mod.secret_inc)
    assert mod.__name__.encode() in payload and b"__main__" not in payload

    f = client.submit(mod.secret_inc, 1)
    with pytest.raises(RuntimeError, match="(?i)deserializ") as info:
        f.result(timeout=RESULT_TIMEOUT)
    assert f.status == "error"
    # what the stock scheduler says:
    #   "Error during deserialization of the task graph. This frequently occurs if the
    #    Scheduler and Client have different environments. ..."
    assert "task graph" in str(info.value)

    d = delayed(add)(delayed(mod.secret_inc)(1), delayed(inc)(2))
    with pytest.raises(RuntimeError, match="(?i)deserializ"):
        client.compute(d).result(timeout=RESULT_TIMEOUT)

    # nothing else is affected
    assert client.submit(inc, 41).result(timeout=RESULT_TIMEOUT) == 42
    assert delayed(add)(delayed(inc)(1), 2).compute() == 4


def test_task_killing_its_workers_errs_with_killed_worker(cluster_factory, monkeypatch):
    """A task that takes its worker down every time errs with `KilledWorker` once more than
    `distributed.scheduler.allowed-failures` workers died running it (the scheduler reads
    the user's Dask config; here from the environment). Plain workers, allowed-failures 1:
    the task kills one, is rescheduled, kills a second and errs; the third is left. (Not
    nannies: a nanny whose worker dies while the nanny is still starting gives up instead
    of restarting, and that window cannot be observed from outside.)"""
    from distributed.scheduler import KilledWorker

    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "1")
    c = cluster_factory()
    c.add_workers(3)
    for w in c.workers.values():
        w.expected_exit = True  # the task ends two of them
    with c.client() as client:
        fut = client.submit(remote.exit_worker, key="kills-its-worker")
        with pytest.raises(KilledWorker, match="kills-its-worker"):
            fut.result(timeout=RESULT_TIMEOUT)
        # the cluster keeps working on the worker that is left. The scheduler can see the
        # second worker's connection close a moment before its process has exited, so its
        # exit is waited for.
        wait_until(
            lambda: sum(w.alive() for w in c.workers.values()) == 1, "two workers to have exited"
        )
        assert client.submit(remote.inc, 1).result(timeout=RESULT_TIMEOUT) == 2
