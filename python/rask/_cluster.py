"""``rask.LocalCluster``: distributed.LocalCluster with a rask scheduler."""

from __future__ import annotations

import distributed
from distributed import Nanny

from rask._scheduler import Scheduler


class LocalCluster(distributed.LocalCluster):
    """:class:`distributed.LocalCluster` on a rask scheduler: the same arguments
    (``n_workers``, ``threads_per_worker``, ``processes``, ``memory_limit``,
    ``dashboard_address``, ``silence_logs``, ``scheduler_port``, ``worker_class``,
    ``scheduler_kwargs``, ``**worker_kwargs``, ...), the same workers, ``scale()`` and
    ``adapt()``; the scheduler is a :class:`rask.Scheduler` process instead of a
    ``distributed.Scheduler`` in this one.

    >>> from distributed import Client
    >>> client = Client(rask.LocalCluster(n_workers=2))  # doctest: +SKIP
    """

    def __init__(self, *args, processes=None, protocol=None, worker_class=None, **kwargs):
        if protocol is None and not _host_names_protocol(kwargs.get("host")):
            if processes is None:
                processes = worker_class is None or issubclass(worker_class, Nanny)
            if not processes and not kwargs.get("scheduler_port"):
                # LocalCluster would pick inproc:// for workers in this process, which
                # reaches only a scheduler in this process; rask's is another one.
                security = kwargs.get("security")
                encrypted = security is True or getattr(security, "require_encryption", False)
                protocol = "tls://" if encrypted else "tcp://"
        super().__init__(
            *args, processes=processes, protocol=protocol, worker_class=worker_class, **kwargs
        )

    # LocalCluster builds its scheduler spec itself, naming distributed.Scheduler, and hands
    # it to SpecCluster, which stores it here: the class is swapped as it is stored, so all
    # of LocalCluster's argument handling (in every tested release) stays Dask's own.
    @property
    def scheduler_spec(self):
        return self._rask_scheduler_spec

    @scheduler_spec.setter
    def scheduler_spec(self, spec):
        if spec is not None and spec.get("cls") is distributed.Scheduler:
            spec = {**spec, "cls": Scheduler}
        self._rask_scheduler_spec = spec


def _host_names_protocol(host) -> bool:
    return bool(host) and "://" in str(host)
