from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("rask")
except metadata.PackageNotFoundError:  # run from a checkout without installing
    __version__ = "0+unknown"

# The distributed releases rask is tested with (newest first); pyproject.toml's dependency
# range and crates/protocol/src/lib.rs (TESTED_DISTRIBUTED) name the same releases.
TESTED_DISTRIBUTED = ("2026.8.0", "2026.3.0", "2025.12.0")
