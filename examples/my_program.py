"""The user's program in examples/pbs-job.sh and examples/slurm-job.sh: plain Dask code that
connects with ``Client()``, which reads ``DASK_SCHEDULER_ADDRESS`` (the job scripts set it
from the scheduler file ``rask ssh`` wrote). Nothing in it knows about rask.

    python my_program.py                  # DASK_SCHEDULER_ADDRESS=tcp://... set
    python my_program.py --scheduler-file FILE

It prints ``workers = N`` and ``result = VALUE``.
"""

import argparse
import operator
import os

import dask
import dask.array as da
from distributed import Client


def computation():
    """A sum of squares over an array in 20 chunks and a small delayed tree: integers, so the
    result is exact under any scheduler."""
    x = da.arange(20_000_000, chunks=1_000_000, dtype="int64")
    squares = (x % 1000) ** 2
    parts = [dask.delayed(sum)(range(i, i + 1000)) for i in range(0, 100_000, 1000)]
    return dask.delayed(operator.add)(squares.sum(), dask.delayed(sum)(parts))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scheduler-file", help="instead of DASK_SCHEDULER_ADDRESS")
    p.add_argument("--min-workers", type=int, default=int(os.environ.get("MIN_WORKERS", "1")))
    args = p.parse_args()
    client = Client(scheduler_file=args.scheduler_file) if args.scheduler_file else Client()
    with client:
        # the workers connect over SSH a moment after the scheduler is up
        client.wait_for_workers(args.min_workers, timeout=120)
        print(f"workers = {len(client.scheduler_info(n_workers=-1)['workers'])}", flush=True)
        (result,) = dask.compute(computation())
        print(f"result = {int(result)}", flush=True)


if __name__ == "__main__":
    main()
