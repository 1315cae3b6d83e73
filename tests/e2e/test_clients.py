"""Several clients on one scheduler."""

import threading
import time

import dask.array as da
import numpy as np

from conftest import RESULT_TIMEOUT
from e2e_remote import inc, slow_inc, total


def test_two_clients_concurrently(client, cluster):
    other = cluster.client(set_as_default=False)
    try:
        results = {}

        def run(c, name, base):
            futs = c.map(slow_inc, range(base, base + 12), delay=0.05)
            results[name] = c.submit(total, futs).result(timeout=RESULT_TIMEOUT)

        threads = [
            threading.Thread(target=run, args=(client, "a", 0)),
            threading.Thread(target=run, args=(other, "b", 1000)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(RESULT_TIMEOUT)
        assert results == {
            "a": sum(range(1, 13)),
            "b": sum(range(1001, 1013)),
        }

        # the same (pure) key wanted by both clients
        fa = client.submit(inc, 12345)
        fb = other.submit(inc, 12345)
        assert fa.key == fb.key
        assert fa.result(timeout=RESULT_TIMEOUT) == fb.result(timeout=RESULT_TIMEOUT) == 12346

        # a computation of the first client is running while the second one leaves
        x = da.arange(2000, chunks=100)
        running = client.compute((x * 2).sum())
        slow = client.map(slow_inc, range(8), delay=0.1)
        other.close(timeout=10)

        assert running.result(timeout=RESULT_TIMEOUT) == int(np.arange(2000).sum() * 2)
        assert client.gather(slow) == list(range(1, 9))
        # the shared key is still held for the remaining client
        assert fa.result(timeout=RESULT_TIMEOUT) == 12346
        assert fa.key in client.who_has()
        assert client.submit(inc, fa).result(timeout=RESULT_TIMEOUT) == 12347
    finally:
        other.close(timeout=10)


def test_client_reconnects_after_close(cluster):
    """Clients come and go; keys of a closed client are released, others keep working."""
    c1 = cluster.client(set_as_default=False)
    f1 = c1.submit(inc, 777, key="e2e-released-with-client")
    assert f1.result(timeout=RESULT_TIMEOUT) == 778
    c1.close(timeout=10)

    c2 = cluster.client(set_as_default=False)
    try:
        f2 = c2.submit(inc, 1)
        assert f2.result(timeout=RESULT_TIMEOUT) == 2
        # the first client's data was released when it left
        deadline = time.monotonic() + 10
        while "e2e-released-with-client" in c2.who_has() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "e2e-released-with-client" not in c2.who_has()
    finally:
        c2.close(timeout=10)
