"""A scheduler ``--preload`` script (``dask scheduler --preload PATH``): ``dask_setup`` adds a
scheduler plugin and logs an event, as site-specific setup scripts do."""

from distributed.diagnostics.plugin import SchedulerPlugin

PLUGIN_NAME = "e2e-preloaded"


class PreloadedPlugin(SchedulerPlugin):
    """Counts tasks that reached memory and notes the workers that joined."""

    name = PLUGIN_NAME

    def __init__(self):
        self.started = False
        self.in_memory = 0
        self.workers: list[str] = []

    async def start(self, scheduler):
        self.started = True

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory":
            self.in_memory += 1

    def add_worker(self, scheduler, worker):
        self.workers.append(worker)


def dask_setup(scheduler):
    scheduler.add_plugin(PreloadedPlugin())
    scheduler.log_event("preload", {"module": __name__, "address": scheduler.address})
