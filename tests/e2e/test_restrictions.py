"""Worker restrictions: workers=, allow_other_workers, resources (shared cluster: w0 plain,
w1 with --resources GPU=1)."""

import dask
import pytest
from dask import delayed

from conftest import RESULT_TIMEOUT
from e2e_remote import inc_on, worker_address


@pytest.fixture
def names(cluster):
    n = cluster.worker_addresses()
    assert set(n) == {"w0", "w1"}
    return n


def test_workers_restriction(client, names):
    for name, addr in names.items():
        futs = [client.submit(inc_on, i, workers=[addr], pure=False) for i in range(4)]
        assert client.gather(futs) == [(i + 1, addr) for i in range(4)]
        # worker names are valid aliases
        f = client.submit(worker_address, name, workers=[name], pure=False)
        assert f.result(timeout=RESULT_TIMEOUT) == addr
        assert client.who_has(f)[f.key] == (addr,)

    # dependencies held elsewhere are fetched to the restricted worker
    a = client.submit(inc_on, 1, workers=[names["w0"]], pure=False)
    b = client.submit(lambda pair: (pair[0] + 1, worker_address()), a, workers=[names["w1"]], pure=False)
    assert b.result(timeout=RESULT_TIMEOUT) == (3, names["w1"])

    # restrictions on whole collections
    ds = [delayed(inc_on)(i) for i in range(10, 14)]
    res = client.gather(client.compute(ds, workers=[names["w1"]]))
    assert res == [(i + 1, names["w1"]) for i in range(10, 14)]
    with dask.annotate(workers=[names["w0"]]):
        ds = [delayed(inc_on)(i) for i in range(20, 24)]
    assert list(dask.compute(*ds)) == [(i + 1, names["w0"]) for i in range(20, 24)]


def test_allow_other_workers(client, names):
    # the requested worker does not exist: with allow_other_workers the task runs anyway
    f = client.submit(inc_on, 1, workers=["tcp://127.0.0.1:1"], allow_other_workers=True, pure=False)
    value, where = f.result(timeout=RESULT_TIMEOUT)
    assert value == 2 and where in names.values()

    futs = [client.submit(inc_on, i, workers=[names["w0"]], allow_other_workers=True, pure=False)
            for i in range(6)]
    res = client.gather(futs)
    assert [r[0] for r in res] == [i + 1 for i in range(6)]
    assert all(r[1] in names.values() for r in res)


def test_resources(client, names):
    futs = [client.submit(inc_on, i, resources={"GPU": 1}, pure=False) for i in range(6)]
    assert client.gather(futs) == [(i + 1, names["w1"]) for i in range(6)]

    with dask.annotate(resources={"GPU": 1}):
        ds = [delayed(inc_on)(i) for i in range(30, 34)]
    assert list(dask.compute(*ds, optimize_graph=False)) == [(i + 1, names["w1"]) for i in range(30, 34)]

    # unrestricted work still uses both workers' data fine
    g = client.submit(lambda xs: sum(x for x, _ in xs), futs)
    assert g.result(timeout=RESULT_TIMEOUT) == sum(range(1, 7))
