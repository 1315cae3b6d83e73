"""``rask.Scheduler``: a rask scheduler in a subprocess, for cluster managers.

Modelled on ``distributed.deploy.subprocess.SubprocessScheduler``: start the process, wait
for its scheduler file, expose ``address``. It takes the keywords cluster managers give
``distributed.Scheduler`` and turns them into ``rask scheduler`` flags.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections import deque

import dask.config
from distributed.core import Status
from distributed.deploy.spec import ProcessInterface
from distributed.security import Security

from rask._bin import find_rask_bin

logger = logging.getLogger("distributed.scheduler")

# Keywords of distributed.Scheduler that are Dask settings: the rask scheduler's graph
# helper reads them from the configuration this process passes on.
CONFIG_KEYWORDS = {
    "allowed_failures": "distributed.scheduler.allowed-failures",
    "worker_ttl": "distributed.scheduler.worker-ttl",
    "validate": "distributed.scheduler.validate",
}

# `2026-12-02T23:29:56.116825Z  INFO message` (tracing's format)
LOG_LINE = re.compile(r"^\S+Z\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+(.*)$")
LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
}


class Scheduler(ProcessInterface):
    """A ``rask scheduler`` process, usable wherever a cluster manager takes a scheduler
    class.

    Parameters are those of :class:`distributed.Scheduler` that a scheduler in another
    process can honour: ``host``, ``port`` (default 0: any free port), ``interface``,
    ``protocol`` (tcp or tls), ``dashboard``, ``dashboard_address``, ``http_prefix``,
    ``security`` (a :class:`distributed.security.Security`; in-memory certificates are
    written to private files for the process), ``scheduler_file``, ``idle_timeout``,
    ``preload``, ``preload_argv``, and ``allowed_failures``, ``worker_ttl``, ``validate``
    (passed as Dask settings). rask's own: ``graph_helpers`` (how many Python graph helper
    processes) and ``timeout`` (seconds to wait for the scheduler to listen). Anything else
    is refused with a TypeError rather than silently ignored.

    The process runs the ``rask`` command found by :func:`rask.find_rask_bin` in its own
    process group, with this interpreter for its graph helpers and this process's Dask
    configuration. Its log lines go to the ``distributed.scheduler`` logger. It ends when
    :meth:`close` is called, when the cluster tells it to, or when this Python process
    ends in any way (it watches a pipe this process holds).
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = 0,
        interface: str | None = None,
        protocol: str | None = None,
        dashboard: bool | None = None,
        dashboard_address: str | int | None = None,
        http_prefix: str | None = None,
        security: Security | bool | None = None,
        scheduler_file: str | None = None,
        idle_timeout: str | float | None = None,
        preload: str | list[str] | None = None,
        preload_argv: list[str] | tuple[str, ...] = (),
        services: dict | None = None,
        service_kwargs: dict | None = None,
        blocked_handlers: list[str] | None = None,
        graph_helpers: int | None = None,
        timeout: float = 60,
        **kwargs,
    ):
        super().__init__()
        unknown = sorted(set(kwargs) - set(CONFIG_KEYWORDS))
        if unknown:
            raise TypeError(f"rask.Scheduler does not take {', '.join(unknown)}")
        if services:
            raise ValueError(
                "rask.Scheduler cannot run Python services in the scheduler "
                f"(services={sorted(services)})"
            )
        if blocked_handlers:
            raise ValueError("rask.Scheduler does not support blocked_handlers")
        if protocol is not None and protocol.rstrip(":/") not in ("tcp", "tls"):
            raise ValueError(
                f"rask.Scheduler runs in its own process and speaks tcp:// or tls://, "
                f"not {protocol!r}"
            )
        if security is True:
            security = Security.temporary()
        self.host = host
        self.port = port or 0
        self.interface = interface
        self.protocol = protocol
        self.dashboard = dashboard
        self.dashboard_address = dashboard_address
        self.http_prefix = http_prefix
        self.security = security
        self.scheduler_file = scheduler_file
        self.idle_timeout = idle_timeout
        self.preload = [preload] if isinstance(preload, str) else list(preload or [])
        self.preload_argv = list(preload_argv or [])
        self.graph_helpers = graph_helpers
        self.timeout = timeout
        self.settings = {CONFIG_KEYWORDS[k]: v for k, v in kwargs.items()}
        self.process: asyncio.subprocess.Process | None = None
        self.log: deque[str] = deque(maxlen=1000)
        self._tmp: str | None = None
        self._tasks: list[asyncio.Task] = []

    def __repr__(self):
        return f"<rask.Scheduler {self.address or ''} status={self.status.name}>"

    def _command(self, scheduler_file: str, ready_file: str) -> list[str]:
        cmd = [find_rask_bin(), "scheduler", "--port", str(self.port)]
        cmd += ["--scheduler-file", scheduler_file, "--python", sys.executable]
        cmd += ["--ready-file", ready_file, "--exit-on-stdin-eof"]
        if self.host:
            cmd += ["--host", self.host]
        if self.interface:
            cmd += ["--interface", self.interface]
        # distributed.Scheduler: a dashboard only if asked for (SpecCluster and LocalCluster
        # ask); the HTTP routes (/health, /metrics) are served either way
        show_dashboard = self.dashboard or (self.dashboard is None and self.dashboard_address)
        if self.dashboard_address is not None:
            address = str(self.dashboard_address)
            cmd += ["--dashboard-address", address if ":" in address else f":{address}"]
        if not show_dashboard:
            cmd += ["--no-dashboard"]
        if self.http_prefix and self.http_prefix.strip("/"):
            cmd += ["--dashboard-prefix", self.http_prefix]
        if self.idle_timeout is not None:
            idle = self.idle_timeout
            cmd += ["--idle-timeout", f"{idle}s" if isinstance(idle, (int, float)) else idle]
        if self.graph_helpers:
            cmd += ["--graph-helpers", str(self.graph_helpers)]
        for p in self.preload:
            cmd += ["--preload", p]
        protocol = self.protocol
        security = self.security
        if isinstance(security, Security):
            if protocol is None and security.require_encryption:
                protocol = "tls"
            cmd += self._tls_flags(security)
        if protocol:
            cmd += ["--protocol", protocol.rstrip(":/")]
        if self.preload_argv:
            cmd += ["--", *self.preload_argv]
        return cmd

    def _tls_flags(self, security: Security) -> list[str]:
        """--tls-* for the scheduler's certificate; a Security made in memory
        (Security.temporary()) holds PEM text rather than paths, which go to private
        files in this scheduler's temporary directory."""
        flags = []
        for flag, value in (
            ("--tls-ca-file", security.tls_ca_file),
            ("--tls-cert", security.tls_scheduler_cert),
            ("--tls-key", security.tls_scheduler_key),
        ):
            if not value:
                continue
            if "-----BEGIN" in value:
                assert self._tmp is not None
                path = os.path.join(self._tmp, flag.strip("-") + ".pem")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(value)
                value = path
            flags += [flag, value]
        return flags

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # This process's Dask configuration (dask.config.set included), as Nanny passes
        # it to its worker processes: the graph helpers read it.
        config = dask.config.merge(dask.config.global_config, {})
        for key, value in self.settings.items():
            dask.config.set({key: value}, config=config)
        env["DASK_INTERNAL_INHERIT_CONFIG"] = dask.config.serialize(config)
        env.setdefault("RUST_LOG", "info")
        return env

    async def start(self):
        self._tmp = tempfile.mkdtemp(prefix="rask-scheduler-")
        scheduler_file = self.scheduler_file or os.path.join(self._tmp, "scheduler.json")
        if os.path.exists(scheduler_file):
            os.remove(scheduler_file)  # a previous run's; the new one is waited for
        cmd = self._command(scheduler_file, self._write_ready())
        logger.info("starting rask scheduler: %s", " ".join(cmd))
        self.process = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self._environment(),
            start_new_session=True,
        )
        self._tasks = [
            asyncio.ensure_future(self._forward_log()),
            asyncio.ensure_future(self._watch()),
        ]
        try:
            identity = await asyncio.wait_for(self._read_file(scheduler_file), self.timeout)
        except asyncio.TimeoutError:
            await self._stop()
            raise RuntimeError(
                f"rask scheduler did not start within {self.timeout} s; its log:\n"
                + "\n".join(self.log)
            ) from None
        except RuntimeError:
            await self._stop()
            raise
        self.address = self.external_address = identity["address"]
        logger.info("rask scheduler at %s (pid %d)", self.address, self.process.pid)
        await super().start()

    def _write_ready(self) -> str:
        """What the scheduler's graph helpers will report when they have started (they run
        this interpreter, with this configuration): given up front, the scheduler serves
        at once instead of waiting ~0.5 s for a helper to import distributed."""
        import msgpack

        from rask._graph_helper import ready_message

        with dask.config.set(self.settings):
            ready = ready_message()
        path = os.path.join(self._tmp, "ready.msgpack")
        with open(path, "wb") as f:
            f.write(msgpack.packb(ready, use_bin_type=True))
        return path

    async def _read_file(self, path: str) -> dict:
        while True:
            assert self.process is not None
            if self.process.returncode is not None:
                await asyncio.sleep(0.1)  # the last log lines
                raise RuntimeError(
                    f"rask scheduler exited with code {self.process.returncode}:\n"
                    + "\n".join(list(self.log)[-20:])
                )
            try:
                with open(path) as f:
                    identity = json.load(f)
                if identity.get("address"):
                    return identity
            except (OSError, ValueError):
                pass  # not written yet, or half written
            await asyncio.sleep(0.02)

    async def _forward_log(self):
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            m = LOG_LINE.match(line)
            if m:
                logger.log(LEVELS[m.group(1)], m.group(2))
            elif line:
                logger.info(line)

    async def _watch(self):
        assert self.process is not None
        code = await self.process.wait()
        if self.status == Status.running:
            log = logger.info if code == 0 else logger.error
            log("rask scheduler %s exited with code %s", self.address, code)
            self.status = Status.closed
        self._event_finished.set()

    async def _stop(self, grace: float = 10):
        """Close the pipe it watches (it shuts down as on SIGTERM), wait, then kill its
        process group (its graph helpers and plugin host are in it)."""
        process = self.process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except asyncio.TimeoutError:
            logger.warning("rask scheduler %s did not stop in %s s: killing it", self.address, grace)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # what is left of its group
        except (ProcessLookupError, PermissionError):
            pass
        await process.wait()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def close(self):
        if self.status == Status.running:
            self.status = Status.closing
        await self._stop()
        await super().close()
