"""What a user of the installed package runs, one scenario per call (test_package.py):

    VENV/bin/python e2e_package_user.py SCENARIO KIND OUT.json [ARGS...]

It runs in a fresh venv where rask was installed from the wheel. KIND picks the cluster
classes: ``rask`` (``rask.LocalCluster``, ``rask.Scheduler``) or ``dask`` (the stock ones),
so every scenario runs on both. Results (and the pids the test checks afterwards) go to
OUT.json; a failed check raises, so the process exits non-zero with a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time


def classes(kind):
    import distributed

    if kind == "rask":
        import rask

        return rask.LocalCluster, rask.Scheduler
    return distributed.LocalCluster, distributed.Scheduler


def write(out, **result):
    with open(out + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(out + ".tmp", out)


def descendants(pid):
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def scheduler_pids(cluster):
    """The scheduler's processes: for rask its binary and everything it started."""
    process = getattr(cluster.scheduler, "process", None)
    if process is None or not hasattr(process, "pid"):
        return []  # the stock scheduler runs in this process
    return [process.pid, *descendants(process.pid)]


def check_computations(client):
    """A delayed graph, an array and a dataframe, each against Dask's sync scheduler."""
    import dask
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd

    def inc(x):
        return x + 1

    parts = [dask.delayed(inc)(i) for i in range(50)]
    total = dask.delayed(sum)(parts)
    x = da.random.RandomState(0).random((600, 600), chunks=200)
    arr = (x + x.T)[::2, 100:].mean(axis=1)
    df = dd.from_pandas(pd.DataFrame({"k": [i % 7 for i in range(1000)], "v": range(1000)}), npartitions=5)
    agg = df.groupby("k").v.sum()
    got = dask.compute(total, arr, agg)
    want = dask.compute(total, arr, agg, scheduler="sync")
    assert got[0] == want[0] == 1275, got[0]
    assert abs(got[1] - want[1]).max() < 1e-12
    assert got[2].sort_index().equals(want[2].sort_index())
    return int(got[0])


def local_cluster(kind, out):
    """LocalCluster with worker processes, then with workers in this process."""
    from distributed import Client

    LocalCluster, _ = classes(kind)
    started = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    start_seconds = time.perf_counter() - started
    with Client(cluster) as client:
        total = check_computations(client)
        n_workers = len(client.scheduler_info()["workers"])
        dashboard = cluster.dashboard_link
    pids = scheduler_pids(cluster)
    scheduler_type = f"{type(cluster.scheduler).__module__}.{type(cluster.scheduler).__name__}"
    exe = None
    if pids:
        import psutil

        exe = psutil.Process(pids[0]).exe()
    cluster.close()
    # threads: workers in this process (LocalCluster's inproc:// would not reach rask)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as threads:
        with Client(threads) as client:
            threads_total = check_computations(client)
            threads_address = threads.scheduler_address
    write(
        out,
        start_seconds=start_seconds,
        total=total,
        threads_total=threads_total,
        threads_address=threads_address,
        n_workers=n_workers,
        dashboard=dashboard,
        scheduler_type=scheduler_type,
        scheduler_exe=exe,
        scheduler_pids=pids,
    )


def tls(kind, out):
    """security=True: LocalCluster makes temporary certificates in memory (rask.Scheduler
    writes its own to private files) and everything speaks tls://."""
    from distributed import Client

    LocalCluster, _ = classes(kind)
    with LocalCluster(n_workers=1, threads_per_worker=1, security=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            total = client.submit(sum, [1, 2, 3]).result(timeout=60)
            address = cluster.scheduler_address
            worker_addresses = list(client.scheduler_info()["workers"])
    write(out, total=total, address=address, workers=worker_addresses)


def adapt(kind, out):
    """adapt() scales up from nothing for work, and back down when it is done."""
    from distributed import Client

    LocalCluster, _ = classes(kind)

    def slow(x):
        time.sleep(0.1)
        return 2 * x

    with LocalCluster(n_workers=0, threads_per_worker=1, dashboard_address=":0") as cluster:
        cluster.adapt(minimum=0, maximum=2, interval="100ms", wait_count=3)
        with Client(cluster) as client:
            futures = client.map(slow, range(40))
            results = client.gather(futures)
            assert results == [2 * i for i in range(40)]
            peak = len(cluster.workers)
            del futures
            deadline = time.monotonic() + 60
            while cluster.workers or client.scheduler_info()["workers"]:
                assert time.monotonic() < deadline, f"still {len(cluster.workers)} workers after 60 s"
                time.sleep(0.1)
    write(out, peak=peak, results=len(results))


def killed(kind, out):
    """Starts a cluster, reports every process it made, and waits to be killed."""
    from distributed import Client

    LocalCluster, _ = classes(kind)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    client = Client(cluster)
    assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
    write(out, pids=descendants(os.getpid()) + scheduler_pids(cluster), address=cluster.scheduler_address)
    time.sleep(600)


def spec_cluster(kind, out):
    """SpecCluster with the scheduler class given in its spec; scale() adds a worker."""
    from distributed import Client, Nanny, SpecCluster

    _, Scheduler = classes(kind)
    worker = {"cls": Nanny, "options": {"nthreads": 1}}
    with SpecCluster(
        scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
        workers={0: worker},
        worker=worker,
    ) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=60)
            cluster.scale(2)
            client.wait_for_workers(2, timeout=60)
            total = check_computations(client)
            workers = len(client.scheduler_info()["workers"])
            pids = scheduler_pids(cluster)
    write(out, total=total, workers=workers, scheduler_pids=pids)


def jobqueue(kind, out, system, queue_dir):
    """dask-jobqueue's PBSCluster or SLURMCluster with scheduler_cls: scale() submits job
    scripts to the fake qsub/sbatch on PATH (test_package.py), which run them here."""
    from dask_jobqueue import PBSCluster, SLURMCluster
    from distributed import Client

    _, Scheduler = classes(kind)
    cls = {"pbs": PBSCluster, "slurm": SLURMCluster}[system]
    with cls(
        cores=1,
        processes=1,
        memory="1GiB",
        walltime="00:10:00",
        scheduler_cls=Scheduler,
        scheduler_options={"dashboard_address": ":0"},
        local_directory=queue_dir,
        log_directory=queue_dir,
    ) as cluster:
        script = cluster.job_script()
        cluster.scale(2)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=90)
            total = check_computations(client)
            workers = len(client.scheduler_info()["workers"])
            address = cluster.scheduler_address
    write(out, total=total, workers=workers, script=script, address=address)


SCENARIOS = {
    "local_cluster": local_cluster,
    "tls": tls,
    "adapt": adapt,
    "killed": killed,
    "spec_cluster": spec_cluster,
    "jobqueue": jobqueue,
}

if __name__ == "__main__":
    scenario, kind, out, *rest = sys.argv[1:]
    SCENARIOS[scenario](kind, out, *rest)
