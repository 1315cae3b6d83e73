"""rask worker's launcher: one stock ``distributed.Worker`` per process.

``rask worker`` (Rust) is the nanny; this is the part of ``distributed.nanny.WorkerProcess``
that has to run in Python. Two modes:

``check SPEC``
    Prints one JSON line: the Python and distributed versions, the CPU count, the resolved
    number of processes and threads, each process's memory limit in bytes, and the nanny
    settings from the Dask configuration. Exits 1 with ``{"error": ...}`` when something is
    wrong (no ``distributed``, a memory limit that does not parse).

``run KWARGS``
    Starts ``Worker(**KWARGS)``, prints ``{"address": ...}`` once it is registered with the
    scheduler (or ``{"error": ...}`` if it could not start), then obeys the JSON lines rask
    writes on stdin: ``{"op": "stop"}`` closes the worker at once, as the nanny's kill does;
    ``{"op": "retire"}`` retires it gracefully (the scheduler first moves its unique results
    to other workers). End of stdin means rask is gone: stop.
"""

import json
import os
import sys


def emit(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def check(spec):
    try:
        import dask
        import distributed
        from dask.system import CPU_COUNT
        from distributed import system
        from distributed.deploy.utils import nprocesses_nthreads
        from dask.utils import parse_bytes
    except Exception as e:  # noqa: BLE001 - any import failure means "no usable distributed"
        emit({"error": f"cannot import distributed: {type(e).__name__}: {e}"})
        return 1
    cpus = CPU_COUNT
    nworkers, nthreads = spec["nworkers"], spec["nthreads"]
    if nworkers == "auto":
        nworkers, auto_threads = nprocesses_nthreads(cpus)
        nthreads = nthreads or auto_threads
    elif nworkers < 0:
        nworkers = cpus + 1 + nworkers
    if nworkers <= 0:
        emit({"error": f"--nworkers {spec['nworkers']} leaves no worker process on {cpus} CPUs"})
        return 1
    nthreads = nthreads or max(1, cpus // nworkers)
    limit = spec["memory_limit"]
    total = system.MEMORY_LIMIT
    try:
        if limit == "auto":
            # The node's memory split across this node's worker processes.
            memory = total // nworkers
        else:
            try:
                value = float(limit)
            except ValueError:
                value = parse_bytes(limit)
            memory = int(value * total) if 0 < value <= 1 else int(value)
            memory = min(memory, total) if memory else 0
    except (ValueError, TypeError) as e:
        emit({"error": f"--memory-limit {limit!r}: {e}"})
        return 1
    env = {}
    for key in ("distributed.nanny.pre-spawn-environ", "distributed.nanny.environ"):
        env.update({k: str(v) for k, v in (dask.config.get(key, default={}) or {}).items()})
    terminate = dask.config.get("distributed.worker.memory.terminate")
    emit(
        {
            "python": sys.executable,
            "distributed": distributed.__version__,
            "cpu_count": cpus,
            "nworkers": nworkers,
            "nthreads": nthreads,
            "memory_limit": memory,
            "terminate": terminate if terminate else None,
            "monitor_interval": dask.utils.parse_timedelta(
                dask.config.get("distributed.worker.memory.monitor-interval")
            ),
            "env": env,
        }
    )
    return 0


def describe(e):
    """``RuntimeError: Worker failed to start.`` says little; name the causes too (a port
    in use, an unreachable scheduler)."""
    parts, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        parts.append(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        e = e.__cause__ or e.__context__
    return " (caused by ".join(parts) + ")" * (len(parts) - 1)


def run(kwargs):
    import asyncio
    import threading

    from distributed import Worker
    from distributed.comm import get_address_host_port
    listen = kwargs.pop("listen_address", None)
    if listen:
        # As `dask worker --listen-address` does.
        host, port = get_address_host_port(listen, strict=True)
        kwargs["host"], kwargs["port"] = (f"[{host}]" if ":" in host else host), port

    async def main():
        loop = asyncio.get_running_loop()
        try:
            worker = Worker(**kwargs)
            await worker
        except BaseException as e:  # noqa: BLE001 - reported to rask, which explains it
            emit({"error": describe(e)})
            return 1
        emit({"address": worker.address, "dir": worker.local_directory, "pid": os.getpid()})

        def obey(msg):
            op = msg.get("op")
            if op == "retire":
                asyncio.ensure_future(worker.close_gracefully(restart=False, reason=msg.get("reason", "rask-worker-retire")))
            else:
                asyncio.ensure_future(
                    worker.close(
                        nanny=False,
                        executor_wait=False,
                        timeout=msg.get("timeout", 5),
                        reason=msg.get("reason", "rask-worker-stop"),
                    )
                )

        def watch_stdin():
            # A thread, as the nanny's stop-queue watcher is: stdin is a blocking pipe.
            for line in sys.stdin:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                loop.call_soon_threadsafe(obey, msg)
            loop.call_soon_threadsafe(obey, {"op": "stop", "reason": "rask-worker-gone"})

        threading.Thread(target=watch_stdin, name="rask worker stdin", daemon=True).start()
        await worker.finished()
        return 0

    return asyncio.run(main())


if __name__ == "__main__":
    mode, arg = sys.argv[1], json.loads(sys.argv[2])
    sys.exit(check(arg) if mode == "check" else run(arg))
