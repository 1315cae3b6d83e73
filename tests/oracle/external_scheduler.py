"""A pytest plugin that runs Dask's own test files against a scheduler in another process.

`distributed`'s tests start the stock `Scheduler` inside the test process (`gen_cluster`'s
`start_cluster`) or in a `multiprocessing` child (`cluster()`, behind the `client`, `s`, `a`,
`b` fixtures). This plugin replaces both with a scheduler binary started as a subprocess:
`rask scheduler` or, for the reference count under the same plumbing, `dask scheduler`
(`ORACLE_SCHEDULER=rask|dask`). Workers and clients stay what the tests make them.

The scheduler gets the test's Dask config (`config_for_cluster_tests` plus the test's own
`config=`) as a YAML file in `DASK_CONFIG`, which both schedulers read at start.

A test that reads the scheduler's internals (any attribute of `s` but its address), that
passes scheduler-only arguments (`scheduler_kwargs`, TLS), or that builds a `Scheduler` in
its own process (`LocalCluster`, `Scheduler(...)`) tests no external scheduler: it is
skipped as "not applicable", with the reason in the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import dask
import pytest
import yaml

import distributed.scheduler
import distributed.utils_test as ut
from distributed.core import rpc

KIND = os.environ.get("ORACLE_SCHEDULER", "rask")
RASK_BIN = os.environ.get("RASK_BIN", "rask")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_DIR = Path(os.environ.get("ORACLE_LOG_DIR", tempfile.gettempdir()))

# gen_cluster's own scheduler_kwargs: the external scheduler has no dashboard and its own
# transition counter
_DEFAULT_SCHEDULER_KWARGS = {"dashboard", "dashboard_address", "transition_counter_max"}

# Schedulers started and not yet stopped: a test that ends on an error or a skip before its
# cluster's teardown ran leaves one, which the test's own teardown stops.
_RUNNING: set = set()


def not_applicable(why: str) -> pytest.skip.Exception:
    return pytest.skip.Exception(f"not applicable to an external scheduler: {why}")


class ExternalScheduler:
    """The scheduler process, standing in for `s`. Only its address can be read."""

    def __init__(self, config: dict):
        self._dir = Path(tempfile.mkdtemp(prefix="oracle-scheduler-"))
        (self._dir / "dask.yaml").write_text(yaml.safe_dump(config))
        sched_file = self._dir / "scheduler.json"
        if KIND == "rask":
            argv = [RASK_BIN, "scheduler", "--python", sys.executable]
        else:
            argv = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        argv += ["--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
        argv += ["--scheduler-file", str(sched_file)]
        # The stock scheduler in the test process can unpickle what the test module
        # defines; the external one gets the test process's import path for that.
        path = os.pathsep.join(p for p in sys.path if p)
        env = dict(os.environ, DASK_CONFIG=str(self._dir), PYTHONPATH=path)
        env.pop("DASK_SCHEDULER_FILE", None)
        name = os.environ.get("PYTEST_CURRENT_TEST", "test").split(" ")[0]
        safe = "".join(c if c.isalnum() else "_" for c in name)[-150:]
        self.log_path = LOG_DIR / f"{KIND}-{safe}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        _RUNNING.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{KIND} scheduler exited with {self.proc.returncode} at start; "
                    f"see {self.log_path}"
                )
            try:
                self.address = json.loads(sched_file.read_text())["address"]
                break
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{KIND} scheduler did not start; see {self.log_path}")
            time.sleep(0.05)

    # `s.address` is all a test may use; `get_events` and `validate` are what gen_cluster's
    # own checks read.
    def get_events(self, topic=None):
        return []

    validate = False

    def __getattr__(self, name):
        raise not_applicable(f"reads the scheduler's internals (s.{name})")

    def __getitem__(self, name):
        # `cluster()` yields {"address": ...}
        if name == "address":
            return self.address
        raise not_applicable(f"reads the scheduler's internals (s[{name!r}])")

    def stop(self):
        _RUNNING.discard(self)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
        self._log.close()

    async def close(self, *args, **kwargs):
        await asyncio.get_running_loop().run_in_executor(None, self.stop)


def _config_now() -> dict:
    """The current Dask config, without what YAML cannot carry (Python objects)."""

    def plain(v):
        if isinstance(v, dict):
            return {str(k): p for k, x in v.items() if (p := plain(x)) is not _DROP}
        if isinstance(v, (list, tuple)):
            return [p for x in v if (p := plain(x)) is not _DROP]
        if v is None or isinstance(v, (str, int, float, bool)):
            return v
        return _DROP

    return plain(dask.config.config)


_DROP = object()


async def _wait_for_workers(address: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with rpc(address) as s:
        while len(await s.ncores_running()) < n:
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not register with the external scheduler")
            await asyncio.sleep(0.02)


async def start_cluster(
    nthreads,
    scheduler_addr,
    security=None,
    Worker=ut.Worker,
    scheduler_kwargs=None,
    worker_kwargs=None,
    timeout=ut._TEST_TIMEOUT // 4,
):
    extra = set(scheduler_kwargs or {}) - _DEFAULT_SCHEDULER_KWARGS
    if extra:
        raise not_applicable(f"scheduler_kwargs {sorted(extra)}")
    if security:
        raise not_applicable("TLS security objects are passed to an in-process scheduler")
    worker_kwargs = worker_kwargs or {}
    loop = asyncio.get_running_loop()
    s = await loop.run_in_executor(None, ExternalScheduler, _config_now())
    try:
        workers = [
            Worker(
                s.address,
                nthreads=ncore[1],
                name=i,
                host=ncore[0],
                **(ut.merge(worker_kwargs, ncore[2]) if len(ncore) > 2 else worker_kwargs),
            )
            for i, ncore in enumerate(nthreads)
        ]
        await asyncio.gather(*workers)
        await _wait_for_workers(s.address, len(nthreads), timeout)
    except BaseException:
        await s.close()
        raise
    return s, workers


async def end_cluster(s, workers):
    async def end_worker(w):
        with contextlib.suppress(asyncio.TimeoutError, OSError, ut.CommClosedError):
            await w.close()

    await asyncio.gather(*(end_worker(w) for w in workers))
    await s.close()


_validate_state = ut.validate_state


def validate_state(*servers):
    _validate_state(*(x for x in servers if not isinstance(x, ExternalScheduler)))


@contextlib.contextmanager
def cluster(
    nworkers=2,
    nanny=False,
    worker_kwargs=None,
    active_rpc_timeout=10,
    scheduler_kwargs=None,
    config=None,
):
    """`utils_test.cluster` with the scheduler as an external process; the workers are
    started as stock does, in `multiprocessing` children."""
    if scheduler_kwargs:
        raise not_applicable(f"scheduler_kwargs {sorted(scheduler_kwargs)}")
    worker_kwargs = worker_kwargs or {}
    config = config or {}
    with ut.config_for_cluster_tests(**config):
        s = ExternalScheduler(_config_now())
    ctx = ut.get_mp_context()
    processes = []
    scheduler_q = ctx.Queue()
    q = ctx.Queue()
    try:
        for _ in range(nworkers):
            scheduler_q.put(s.address)
        run = ut.run_nanny if nanny else ut.run_worker
        workers_by_pid = {}
        for _ in range(nworkers):
            kwargs = ut.merge(
                {"nthreads": 1, "memory_limit": ut.system.MEMORY_LIMIT}, worker_kwargs
            )
            proc = ctx.Process(
                name="Dask cluster test: Worker", target=run, args=(q, scheduler_q, config), kwargs=kwargs
            )
            proc.start()
            processes.append(proc)
            workers_by_pid[proc.pid] = {"proc": proc}
        for _ in range(nworkers):
            pid, addr = q.get(timeout=START_TIMEOUT)
            if isinstance(addr, Exception):
                raise addr
            workers_by_pid[pid]["address"] = addr
        ut._run_and_close_tornado(_wait_for_workers, s.address, nworkers, START_TIMEOUT)
        yield (
            {"address": s.address},
            [
                {"address": w["address"], "proc": weakref.ref(w["proc"])}
                for w in workers_by_pid.values()
            ],
        )
    finally:
        ut._kill_join_processes(processes)
        ut._close_queue(q)
        ut._close_queue(scheduler_q)
        s.stop()
        with contextlib.suppress(ValueError):
            ut.default_client().close()


def _in_process_scheduler(self, *args, **kwargs):
    raise not_applicable("builds a Scheduler in the test process")


def pytest_runtest_teardown(item, nextitem):
    for s in list(_RUNNING):
        s.stop()


def pytest_configure(config):
    ut.start_cluster = start_cluster
    ut.end_cluster = end_cluster
    ut.validate_state = validate_state
    ut.cluster = cluster
    distributed.scheduler.Scheduler.__init__ = _in_process_scheduler
    config.addinivalue_line("markers", "oracle: external scheduler oracle")
