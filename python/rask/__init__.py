"""rask: a Rust runtime for Dask.

``pip install rask`` puts the ``rask`` command (``rask scheduler``, ``rask worker``,
``rask ssh``, ``rask run``) on the environment's PATH and this package beside it:

- :func:`find_rask_bin`: the path of that command;
- :class:`Scheduler`: a rask scheduler in a subprocess, for any cluster manager that takes a
  scheduler class (``SpecCluster(scheduler={"cls": rask.Scheduler, ...})``, dask-jobqueue's
  ``scheduler_cls=rask.Scheduler``);
- :class:`LocalCluster`: :class:`distributed.LocalCluster` on a rask scheduler.
"""

from __future__ import annotations

from rask._bin import find_rask_bin
from rask._version import TESTED_DISTRIBUTED, __version__

__all__ = ["LocalCluster", "Scheduler", "TESTED_DISTRIBUTED", "__version__", "find_rask_bin"]


def __getattr__(name):
    # distributed is imported only when a cluster class is asked for, so `python -m rask`
    # and find_rask_bin() start at once.
    if name == "Scheduler":
        from rask._scheduler import Scheduler

        return Scheduler
    if name == "LocalCluster":
        from rask._cluster import LocalCluster

        return LocalCluster
    raise AttributeError(f"module 'rask' has no attribute {name!r}")
