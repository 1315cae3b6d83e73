"""Actor classes for test_actors.py (pickled by reference, like e2e_remote)."""

import os


class Counter:
    """The Dask docs' example actor."""

    n = 0

    def __init__(self, start=0):
        self.n = start

    def increment(self):
        self.n += 1
        return self.n

    def add(self, x):
        self.n += x
        return self.n

    def where(self):
        """The process the actor lives in."""
        return os.getpid()


def total_of(counter, times):
    """A task that calls an actor it was given (the actor is passed as a dependency)."""
    return sum(counter.increment().result() for _ in range(times))
