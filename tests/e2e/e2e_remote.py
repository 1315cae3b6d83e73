"""Functions executed on the workers.

This module is importable on every process of the cluster (conftest puts this directory on
PYTHONPATH), so ``distributed`` pickles these functions by reference, like user code from a
package.  Keep it free of test-only imports.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def inc(x):
    return x + 1


def double(x):
    return 2 * x


def add(x, y):
    return x + y


def slow_inc(x, delay=0.1):
    time.sleep(delay)
    return x + 1


def sleep_and_return(delay, value):
    time.sleep(delay)
    return value


def fail(x):
    raise ValueError(f"intentional failure {x}")


def flaky_inc(counter_file, failures, x):
    """Fails ``failures`` times (counted in ``counter_file``), then returns ``x + 1``."""
    path = Path(counter_file)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n < failures:
        raise RuntimeError(f"flaky attempt {n + 1}")
    return x + 1


def worker_address(*args):
    from distributed import get_worker

    return get_worker().address


def inc_on(x):
    """``(x + 1, address of the worker that ran it)``."""
    return x + 1, worker_address()


def pid():
    return os.getpid()


def total(xs):
    return sum(xs)


def run_address(dask_worker):
    """For ``Client.run``: the address of the worker it runs on."""
    return dask_worker.address


def sleep_until_file(path, max_wait=30.0):
    """Blocks until ``path`` exists (or ``max_wait`` passes); returns whether it appeared.

    Used for tasks that must still be running when the test acts on them, without leaving a
    worker thread busy for long after the test is done with them."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.02)
    return False


def key_state_on_worker(key, dask_worker):
    """For ``Client.run``: the worker-side state of ``key`` (None if the worker forgot it)."""
    ts = dask_worker.state.tasks.get(key)
    return None if ts is None else ts.state


class CustomError(Exception):
    pass


def raise_custom(msg):
    raise CustomError(msg)


def fail_if(x, bad):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


def slow_inc_on(x, delay=0.1):
    """``(x + 1, address of the worker)`` after sleeping ``delay`` seconds."""
    time.sleep(delay)
    return x + 1, worker_address()


class ExitOnUnpickle:
    """Unpickling this ends the process that does it (used to crash rask's graph helper,
    which unpickles submitted graphs; the stock scheduler would die the same way)."""

    def __reduce__(self):
        import os

        return (os._exit, (13,))


def _slow_value(seconds, value):
    import time

    time.sleep(seconds)
    return value


class SlowToUnpickle:
    """Unpickles to ``value`` after ``seconds``: a graph that takes a while to materialize."""

    def __init__(self, seconds, value):
        self.seconds, self.value = seconds, value

    def __reduce__(self):
        return (_slow_value, (self.seconds, self.value))


def exit_worker():
    """Ends the worker process that runs it, as a segfaulting extension would."""
    import os

    os._exit(1)


# ---- events / run_on_scheduler (test_events.py) ---------------------------------------------


def log_worker_event(topic, msg):
    """Logs ``msg`` under ``topic`` from inside a task (``Worker.log_event``)."""
    from distributed import get_worker

    get_worker().log_event(topic, msg)
    return get_worker().address


def remote_print(*args, **kwargs):
    """``distributed.print`` inside a task: the client prints it too."""
    from distributed import print as dprint

    dprint(*args, **kwargs)
    return len(args)


def scheduler_side_sum(x, y, scale=1):
    """A plain function for ``Client.run_on_scheduler``."""
    return (x + y) * scale


def scheduler_address(dask_scheduler=None):
    """Wants the scheduler object, as the ``run_on_scheduler`` docs suggest."""
    return dask_scheduler.address


def has_scheduler_plugin(name, dask_scheduler=None):
    return name in dask_scheduler.plugins


from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402


def count_of_plugin(name, dask_scheduler=None):
    """The ``count`` of a scheduler plugin."""
    return dask_scheduler.plugins[name].count


class EventCountingPlugin(SchedulerPlugin):
    """Counts events seen by the scheduler (``SchedulerPlugin.log_event``)."""

    name = "e2e-event-counting-plugin"

    def __init__(self):
        self.count = 0

    def log_event(self, topic, msg):
        self.count += 1


# ---- coordination primitives (test_coordination.py) -----------------------------------------


def variable_put_from_task(name, value):
    """Sets a ``Variable`` from inside a task."""
    from distributed import Variable

    Variable(name).set(value)
    return value


def variable_get_in_task(name, timeout=30):
    """Reads a ``Variable`` from inside a task (a future's result, or the value)."""
    from distributed import Future, Variable

    v = Variable(name).get(timeout=timeout)
    return v.result(timeout=timeout) if isinstance(v, Future) else v


def queue_put_from_task(name, items):
    from distributed import Queue

    q = Queue(name)
    for x in items:
        q.put(x, timeout=30)
    return len(items)


def queue_get_in_task(name, n, timeout=30):
    from distributed import Queue

    q = Queue(name)
    return [q.get(timeout=timeout) for _ in range(n)]


def event_wait_in_task(name, timeout):
    """Waits for an ``Event`` inside a task; returns whether it was set in time."""
    from distributed import Event

    return Event(name).wait(timeout=timeout)


def locked_increment(path, lock_name, i):
    """Read-modify-write of a counter file under a distributed ``Lock``."""
    import time

    from distributed import Lock

    with Lock(lock_name):
        n = int(open(path).read() or "0")
        time.sleep(0.01)
        with open(path, "w") as f:
            f.write(str(n + 1))
    return i


def hold_semaphore_forever(name, max_leases):
    """Takes a lease and never gives it back (the worker is killed while it sleeps)."""
    import time

    from distributed import Semaphore

    sem = Semaphore(max_leases=max_leases, name=name)
    sem.acquire(timeout=30)
    time.sleep(3600)


def slow_frame(i, n=200, delay=0.3):
    """One partition of a dataframe that takes `delay` seconds to produce."""
    import time

    import pandas as pd

    time.sleep(delay)
    return pd.DataFrame({"k": [(i * n + j) % 23 for j in range(n)], "v": list(range(i * n, (i + 1) * n))})
