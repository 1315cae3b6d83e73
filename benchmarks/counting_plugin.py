"""The scheduler plugin of `bench.py --plugin`: counts transitions, as the cheapest plugin
that still sees every one (Dask's `Progress` and `TaskStreamPlugin` hook the same place).
It is pickled by value, so neither scheduler needs this module on its path."""

from distributed.diagnostics.plugin import SchedulerPlugin


class TransitionCounter(SchedulerPlugin):
    name = "bench-transition-counter"

    def __init__(self):
        self.count = 0

    def transition(self, key, start, finish, *args, **kwargs):
        self.count += 1


def count(dask_scheduler):
    return dask_scheduler.plugins[TransitionCounter.name].count
