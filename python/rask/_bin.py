"""Where the ``rask`` command is: installed by the wheel into the environment's scripts
directory (as ruff and uv install theirs)."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig


def find_rask_bin() -> str:
    """The path of the ``rask`` command.

    ``$RASK_BIN`` if set (a build from a checkout); else the one pip installed with this
    package (the environment's scripts directory, or the user scheme's for
    ``pip install --user``); else ``rask`` on PATH. Raises FileNotFoundError naming the
    places looked in."""
    exe = "rask" + (sysconfig.get_config_var("EXE") or "")
    override = os.environ.get("RASK_BIN")
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise FileNotFoundError(f"$RASK_BIN is {override!r}, which is not an executable file")
    candidates = [sysconfig.get_path("scripts")]
    if sys.version_info >= (3, 10):
        user_scheme = sysconfig.get_preferred_scheme("user")
    else:  # pragma: no cover
        user_scheme = "nt_user" if os.name == "nt" else "posix_user"
    candidates.append(sysconfig.get_path("scripts", scheme=user_scheme))
    # the interpreter's own directory: a venv used without activating it
    candidates.append(os.path.dirname(sys.executable))
    for directory in candidates:
        path = os.path.join(directory, exe)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which(exe)
    if found:
        return found
    raise FileNotFoundError(
        f"the rask command is not installed: looked in {', '.join(candidates)} and on PATH. "
        "Install it with `pip install rask` (or `pip install .` in a checkout)."
    )
