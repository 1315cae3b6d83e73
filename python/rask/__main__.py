"""``python -m rask ARGS``: runs the ``rask`` command this package was installed with."""

from __future__ import annotations

import os
import sys

from rask._bin import find_rask_bin


def main() -> None:
    rask = find_rask_bin()
    # exec: the command replaces this interpreter, so signals and the exit code are its own
    os.execvp(rask, [rask, *sys.argv[1:]])


if __name__ == "__main__":
    main()
