"""Plugins and task functions of ``test_plugins.py``; like ``e2e_remote.py``, pickled by
reference, so workers and nannies import them from this directory (on their
``PYTHONPATH``)."""

import logging
import os

from distributed import get_worker
from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin

ENV_VAR = "E2E_PLUGIN_VALUE"


class MarkWorker(WorkerPlugin):
    """``setup`` sets an attribute and an environment variable on the worker; ``teardown``
    marks the attribute torn down."""

    def __init__(self, value: str):
        self.value = value

    def setup(self, worker):
        worker.e2e_plugin_value = self.value
        os.environ[ENV_VAR] = self.value

    def teardown(self, worker):
        worker.e2e_plugin_value = f"torn down: {self.value}"


class FailingSetup(WorkerPlugin):
    """A plugin whose ``setup`` raises: the client's ``register_plugin`` re-raises it."""

    def setup(self, worker):
        raise ZeroDivisionError("e2e plugin setup failed")


class MarkNanny(NannyPlugin):
    """``setup``/``teardown`` append a line naming the nanny to a file the test reads."""

    def __init__(self, path: str):
        self.path = path

    def _note(self, what: str, nanny) -> None:
        with open(self.path, "a") as f:
            f.write(f"{what} {nanny.address}\n")

    def setup(self, nanny):
        self._note("setup", nanny)

    def teardown(self, nanny):
        self._note("teardown", nanny)


def plugin_value_in_task():
    """What a task sees of ``MarkWorker``: the worker's attribute and the variable."""
    w = get_worker()
    return w.address, getattr(w, "e2e_plugin_value", None), os.environ.get(ENV_VAR)


def plugin_value(dask_worker):
    """For ``Client.run``: the worker's attribute."""
    return getattr(dask_worker, "e2e_plugin_value", None)


def env_in_task(name: str):
    return get_worker().address, os.environ.get(name)


def log_a_warning(logger_name: str, text: str):
    logging.getLogger(logger_name).warning("%s from a task", text)
    return get_worker().address


class InstallMarker:
    """An ``InstallPlugin`` install function that installs nothing: it notes which process
    ran it."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self):
        with open(self.path, "a") as f:
            f.write(f"installed {os.getpid()}\n")


def call_uploaded(module: str, x):
    """Imports a module ``Client.upload_file`` sent to the workers and calls it."""
    import importlib

    return importlib.import_module(module).answer(x)


def nanny_has(relpath: str, dask_worker=None):
    """For ``Client.run(nanny=True)``: what a file under the nanny's local directory holds."""
    path = os.path.join(dask_worker.local_directory, relpath)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read()


def forwarding_handlers(logger_name: str) -> int:
    """For ``Client.run``: how many handlers ``forward_logging`` left on the logger."""
    from distributed.diagnostics.plugin import _ForwardingLogHandler

    handlers = logging.getLogger(logger_name).handlers
    return sum(isinstance(h, _ForwardingLogHandler) for h in handlers)
