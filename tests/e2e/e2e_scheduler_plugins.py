"""Scheduler plugins and scheduler-side functions of ``test_scheduler_python.py``.

Like ``e2e_remote.py`` this module is importable by every process of the cluster (conftest
puts this directory on ``PYTHONPATH``), so ``distributed`` pickles these classes and functions
by reference: the stock scheduler unpickles them in its own process, rask in its plugin host.
Keep it free of test-only imports.
"""

from __future__ import annotations

import os
import time

from distributed.diagnostics.plugin import SchedulerPlugin


class TransitionCounter(SchedulerPlugin):
    """Counts ``processing -> memory`` transitions and notes the workers that joined and left
    while it was registered."""

    def __init__(self, name: str):
        self.name = name
        self.count = 0
        self.started = False
        self.added: list[str] = []
        self.removed: list[str] = []

    async def start(self, scheduler):
        self.started = True

    def transition(self, key, start, finish, *args, **kwargs):
        if start == "processing" and finish == "memory":
            self.count += 1

    def add_worker(self, scheduler, worker):
        self.added.append(worker)

    def remove_worker(self, scheduler, worker, *, stimulus_id, **kwargs):
        self.removed.append(worker)


class RaisingTransition(SchedulerPlugin):
    """A buggy plugin: every ``transition`` hook raises (after counting the call)."""

    def __init__(self, name: str):
        self.name = name
        self.calls = 0

    def transition(self, key, start, finish, *args, **kwargs):
        self.calls += 1
        raise RuntimeError(f"e2e plugin bug in transition {start} -> {finish}")


# --------------------------------------------------------------------------------------------
# functions for ``Client.run_on_scheduler`` that want the scheduler object


def plugin_attribute(name: str, attribute: str, dask_scheduler=None):
    """An attribute of a registered scheduler plugin."""
    return getattr(dask_scheduler.plugins[name], attribute)


def plugin_names(dask_scheduler=None) -> list[str]:
    return list(dask_scheduler.plugins)


def plugin_types(dask_scheduler=None) -> dict[str, str]:
    """{plugin name: its class name}."""
    return {name: type(p).__name__ for name, p in dask_scheduler.plugins.items()}


def scheduler_pid(dask_scheduler=None) -> int:
    """The pid of the process that holds the scheduler object (rask: its plugin host)."""
    return os.getpid()


def task_view(key, dask_scheduler=None) -> dict:
    """What a user reads of a task on the scheduler."""
    ts = dask_scheduler.tasks[key]
    return {
        "state": ts.state,
        "who_has": sorted(ws.address for ws in (ts.who_has or ())),
        "dependencies": sorted(str(dep.key) for dep in ts.dependencies),
        "processing_on": ts.processing_on.address if ts.processing_on else None,
    }


def worker_view(dask_scheduler=None) -> dict:
    """{address: (name, nthreads)} of the workers the scheduler object knows."""
    return {addr: (ws.name, ws.nthreads) for addr, ws in dask_scheduler.workers.items()}


def add_task_stream_plugin(name: str, dask_scheduler=None) -> None:
    """What the dashboard does: a ``TaskStreamPlugin`` built on the scheduler and added."""
    from distributed.diagnostics.task_stream import TaskStreamPlugin

    dask_scheduler.add_plugin(TaskStreamPlugin(dask_scheduler), name=name)


def task_stream_rows(name: str, dask_scheduler=None) -> list[dict]:
    """The rows a ``TaskStreamPlugin`` collected (``collect()`` as the dashboard reads it)."""
    return [
        {
            "key": row["key"],
            "worker": row.get("worker"),
            "status": row.get("status"),
            "actions": sorted({s["action"] for s in row["startstops"]}),
        }
        for row in dask_scheduler.plugins[name].collect()
    ]


def remove_plugin(name: str, dask_scheduler=None) -> None:
    dask_scheduler.remove_plugin(name=name)


def import_and_call(module: str, x, dask_scheduler=None):
    """Imports a module (one ``upload_file`` sent) in the scheduler's process and calls it."""
    import importlib

    return importlib.import_module(module).answer(x)


def slow_square(x, delay=0.05):
    time.sleep(delay)
    return x * x
