"""End-to-end fixtures: real schedulers (stock ``dask scheduler`` and ``rask scheduler``),
real ``dask worker`` processes and a stock ``distributed.Client``.

Every test that uses the ``scheduler_kind`` fixture (directly or through ``cluster``,
``client``, ``cluster_factory`` ...) runs once per scheduler; the test ids contain ``dask`` or
``rask`` so ``-k dask`` / ``-k rask`` select one side.  No test, module or fixture name may
contain those two words, or ``-k`` would select it for both sides.

Processes
    Every process is started in its own session/process group with stdout+stderr going to a
    log file under the test's tmp dir.  At teardown each group gets SIGTERM, then SIGKILL
    after a grace period.  Before stopping anything, every process that exited on its own
    while it was expected to be alive is reported and the test fails (with the tail of the
    log).  Tests that kill a process on purpose use ``ManagedProcess.kill()``, which marks the
    exit as expected.

User code on the cluster
    Functions executed remotely live in ``e2e_remote.py``.  ``distributed`` pickles them by
    reference (plain ``pickle`` first), exactly like user code from an importable module on a
    shared file system, so the scheduler (for the stock one: the process itself; for rask: its
    Python graph helper, which must inherit the environment) and the workers get this directory
    on ``PYTHONPATH``.

Releases
    The suite runs on the ``distributed`` of the interpreter that runs pytest: stock
    scheduler, workers and client come from that environment, and rask's graph helpers run
    it too (``--python``). ``scripts/setup`` builds ``.venv-<release>`` for the older tested
    releases; run ``.venv-2025.12.0/bin/python -m pytest ...`` to test one. A test that needs
    a feature of the tested release (``TESTED_RELEASE``) is marked ``needs_tested_release``
    and skipped on the others.

Configuration
    ``RASK_BIN``: path of the rask binary (default ``<repo>/target/debug/rask``); rask tests
    are skipped only when it does not exist.  Dask runs with its own default configuration
    (so dataframe shuffles use P2P, as they do for a user with a distributed client).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import distributed
import pytest
from distributed import Client

E2E_DIR = Path(__file__).resolve().parent
REPO = E2E_DIR.parents[1]
PYTHON = sys.executable
DASK_CLI = str(Path(PYTHON).parent / "dask") if (Path(PYTHON).parent / "dask").exists() else shutil.which("dask")


def _rask_bin() -> Path:
    value = os.environ.get("RASK_BIN")
    if not value:
        return REPO / "target" / "debug" / "rask"
    if os.sep not in value:  # a bare command name: look it up on PATH
        found = shutil.which(value)
        return Path(found) if found else Path(value)
    return Path(value).resolve()  # processes run with cwd=tmp dir: make it absolute


RASK_BIN = _rask_bin()

SCHEDULER_KINDS = ["dask", "rask"]

# The `distributed` release under test (that of the interpreter running pytest) and the one
# rask is pinned to (requirements.txt, rask_protocol::TESTED_DISTRIBUTED); the older tested
# releases are rask_protocol::TESTED_OLDER_DISTRIBUTED.
DISTRIBUTED_RELEASE = distributed.__version__
TESTED_RELEASE = "2026.8.0"
TESTED_RELEASES = [TESTED_RELEASE, "2026.3.0", "2025.12.0"]


def needs_tested_release(reason: str):
    """Skips a test on the older releases: it needs something only TESTED_RELEASE has."""
    return pytest.mark.skipif(
        DISTRIBUTED_RELEASE != TESTED_RELEASE,
        reason=f"needs distributed {TESTED_RELEASE} ({reason}); running {DISTRIBUTED_RELEASE}",
    )

STARTUP_TIMEOUT = 30.0  # scheduler file / workers registered
STOP_GRACE = 10.0  # SIGTERM -> SIGKILL
CLIENT_TIMEOUT = 30  # Client(..., timeout=)
RESULT_TIMEOUT = 60  # future.result(timeout=) in tests



def child_env() -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(
        [str(E2E_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RUST_BACKTRACE", "1")
    return env


def wait_until(predicate, what: str, timeout: float = 30.0, interval: float = 0.05):
    """Polls `predicate` until it returns something truthy (which is returned); fails the
    test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# process management


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], log_path: Path, popen: subprocess.Popen):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.popen = popen
        self.expected_exit = False
        self.tier = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def describe_exit(self) -> str:
        rc = self.popen.returncode
        if rc is None:
            return "running"
        if rc < 0:
            try:
                return f"killed by signal {signal.Signals(-rc).name}"
            except ValueError:
                return f"killed by signal {-rc}"
        return f"exited with code {rc}"

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"
        return "\n".join(text.splitlines()[-lines:])

    def report(self) -> str:
        return (
            f"process {self.name!r} (pid {self.pid}) {self.describe_exit()}\n"
            f"  argv: {' '.join(self.argv)}\n  log: {self.log_path}\n"
            f"----- last lines of the log -----\n{self.log_tail()}\n---------------------------------"
        )

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self, timeout: float = STOP_GRACE) -> None:
        """SIGKILL the whole process group on purpose (the exit is expected)."""
        self.expected_exit = True
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=timeout)


class ProcessManager:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[ManagedProcess] = []
        self.reported: set[ManagedProcess] = set()

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, tier: int = 0
    ) -> ManagedProcess:
        """Start ``argv``; at teardown lower tiers are stopped first."""
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "wb")
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env if env is not None else child_env(),
                cwd=str(self.log_dir),
                start_new_session=True,
            )
        finally:
            log.close()
        proc = ManagedProcess(name, argv, log_path, popen)
        proc.tier = tier
        self.procs.append(proc)
        return proc

    def crashed(self) -> list[ManagedProcess]:
        """Processes that exited by themselves while they were expected to be alive."""
        return [p for p in self.procs if not p.expected_exit and not p.alive()]

    def _crash_message(self, context: str) -> str | None:
        bad = self.crashed()
        if not bad:
            return None
        new = [p for p in bad if p not in self.reported]
        self.reported.update(bad)
        if not new:
            names = ", ".join(p.name for p in bad)
            return f"process(es) {names} died earlier (reported with the first failing test)"
        return f"{len(new)} process(es) died unexpectedly {context}:\n\n" + "\n\n".join(
            p.report() for p in new
        )

    def check_alive(self, context: str = "") -> None:
        msg = self._crash_message(context)
        if msg:
            pytest.fail(msg, pytrace=False)

    def stop_all(self) -> None:
        """Workers first (SIGTERM, grace period, SIGKILL), then schedulers: a worker whose
        scheduler vanishes at the same moment sometimes hangs in its shutdown."""
        for tier in sorted({p.tier for p in self.procs}):
            self._stop(list(reversed([p for p in self.procs if p.tier == tier])))

    @staticmethod
    def _stop(procs: list[ManagedProcess]) -> None:
        for p in procs:
            p._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for p in procs:
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[e2e] {p.name} ignored SIGTERM for {STOP_GRACE}s; sending SIGKILL", file=sys.stderr)
        for p in procs:
            # also reaps stragglers left in the group (e.g. helper processes)
            p._signal_group(signal.SIGKILL)
            try:
                p.popen.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass

    def finish(self) -> None:
        """Teardown: detect crashes first, then stop everything, then fail if needed."""
        fresh = [p for p in self.crashed() if p not in self.reported]
        msg = self._crash_message("during the test") if fresh else None
        self.stop_all()
        if msg:
            pytest.fail(msg, pytrace=False)


# --------------------------------------------------------------------------------------------
# clusters


def scheduler_argv(kind: str, scheduler_file: Path, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``extra`` goes last: it may end with ``-- PRELOAD_ARGV...``, which both CLIs take."""
    common = ["--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)]
    if kind == "dask":
        return [DASK_CLI, "scheduler", *common, *extra]
    if kind == "rask":
        return [str(RASK_BIN), "scheduler", *common, "--python", PYTHON, *extra]
    raise ValueError(kind)


class Cluster:
    """One scheduler (of ``kind``) plus any number of ``dask worker`` processes.

    ``scheduler_args``: more scheduler arguments (same spelling for both kinds), e.g.
    ``["--preload", path, "--", "--preload-option", value]``."""

    _counter = 0

    def __init__(
        self, kind: str, pm: ProcessManager, workdir: Path, scheduler_args: list[str] | tuple[str, ...] = ()
    ):
        self.kind = kind
        self.pm = pm
        self.workdir = workdir
        self.workers: dict[str, ManagedProcess] = {}
        self._control: Client | None = None
        Cluster._counter += 1
        self.tag = f"c{Cluster._counter}"
        scheduler_file = workdir / f"{self.tag}-scheduler.json"
        self.scheduler = pm.start(
            f"{self.tag}-scheduler-{kind}", scheduler_argv(kind, scheduler_file, scheduler_args), tier=1
        )
        self.address = self._wait_scheduler_file(scheduler_file)

    def _wait_scheduler_file(self, path: Path) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if not self.scheduler.alive():
                self.pm.reported.add(self.scheduler)
                pytest.fail(f"scheduler exited during startup:\n{self.scheduler.report()}", pytrace=False)
            if path.exists():
                try:
                    ident = json.loads(path.read_text())
                except (OSError, ValueError):
                    ident = None
                if isinstance(ident, dict) and isinstance(ident.get("address"), str):
                    return ident["address"]
            time.sleep(0.05)
        pytest.fail(
            f"scheduler file {path} with an 'address' did not appear within {STARTUP_TIMEOUT}s:\n"
            f"{self.scheduler.report()}",
            pytrace=False,
        )

    @property
    def control(self) -> Client:
        """A client owned by the fixture, used to wait for workers."""
        if self._control is None:
            self._control = Client(self.address, timeout=CLIENT_TIMEOUT, set_as_default=False)
        return self._control

    def add_workers(self, n: int = 1, *, nanny: bool = False, resources: str | None = None) -> list[str]:
        """Start ``n`` workers, wait until all of them are registered; returns their names."""
        names = []
        for _ in range(n):
            name = f"w{len(self.workers)}"
            self.workers[name] = self.start_worker(name, nanny=nanny, resources=resources)
            names.append(name)
        self.wait_for_workers(len(self.workers))
        return names

    def start_worker(self, name: str, *, nanny: bool = False, resources: str | None = None):
        """Start one single-thread ``dask worker`` without waiting for it to register."""
        argv = [
            DASK_CLI, "worker", self.address,
            "--nthreads", "1",
            "--no-dashboard",
            "--memory-limit", "2GB",
            "--name", name,
            "--local-directory", str(self.workdir / f"{self.tag}-{name}-space"),
            "--nanny" if nanny else "--no-nanny",
        ]
        if resources:
            argv += ["--resources", resources]
        return self.pm.start(f"{self.tag}-worker-{name}", argv)

    def wait_for_workers(self, n: int, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.pm.check_alive("while waiting for workers")
            try:
                self.control.wait_for_workers(n, timeout=1)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{n} workers did not register within {timeout}s\n"
                        + "\n\n".join(p.report() for p in [self.scheduler, *self.workers.values()]),
                        pytrace=False,
                    )

    def worker_addresses(self) -> dict[str, str]:
        """{worker name: worker address} as reported by the scheduler."""
        info = self.control.scheduler_info(n_workers=-1)
        return {ws["name"]: addr for addr, ws in info["workers"].items()}

    def client(self, **kwargs) -> Client:
        return Client(self.address, timeout=CLIENT_TIMEOUT, **kwargs)

    def close_control(self) -> None:
        if self._control is not None:
            try:
                self._control.close(timeout=10)
            except Exception:
                pass
            self._control = None


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session", params=SCHEDULER_KINDS)
def scheduler_kind(request) -> str:
    kind = request.param
    if kind == "rask" and not RASK_BIN.exists():
        pytest.skip(f"rask binary not found at {RASK_BIN} (build it with `cargo build` or set RASK_BIN)")
    if kind == "dask" and not DASK_CLI:
        pytest.skip("`dask` CLI not found next to the python interpreter or on PATH")
    return kind


@pytest.fixture
def procs(tmp_path):
    pm = ProcessManager(tmp_path)
    yield pm
    pm.finish()


@pytest.fixture
def cluster_factory(scheduler_kind, procs, tmp_path):
    """Function-scoped: ``cluster_factory()`` starts a fresh scheduler of the current kind
    (``cluster_factory(scheduler_args=[...])``: with more scheduler arguments); add workers
    with ``cluster.add_workers(n, ...)``."""
    made: list[Cluster] = []

    def make(scheduler_args: list[str] | tuple[str, ...] = ()) -> Cluster:
        c = Cluster(scheduler_kind, procs, tmp_path, scheduler_args)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close_control()


@pytest.fixture(scope="module")
def shared_cluster(scheduler_kind, tmp_path_factory):
    """Module-scoped scheduler + 2 workers for pure-compute tests.

    w0: plain, w1: ``--resources GPU=1``.  Tests must not kill processes of this cluster.
    """
    workdir = tmp_path_factory.mktemp(f"shared-{scheduler_kind}")
    pm = ProcessManager(workdir)
    try:
        cluster = Cluster(scheduler_kind, pm, workdir)
        cluster.add_workers(1)
        cluster.add_workers(1, resources="GPU=1")
    except BaseException:
        pm.stop_all()
        raise
    yield cluster
    cluster.close_control()
    pm.finish()


@pytest.fixture
def cluster(shared_cluster):
    """The shared cluster, checked to be alive before and after each test."""
    shared_cluster.pm.check_alive("before the test (shared cluster)")
    yield shared_cluster
    shared_cluster.pm.check_alive("during the test (shared cluster)")


@pytest.fixture
def client(cluster):
    c = cluster.client()
    yield c
    c.close(timeout=10)
