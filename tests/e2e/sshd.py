"""A real OpenSSH server on 127.0.0.1 for ``rask ssh`` tests.

It runs with its own host key, config and ``authorized_keys`` in a tmp dir, so the tests touch
neither ``/etc/ssh`` nor ``~/.ssh``.  Clients pass ``Sshd.client_options()`` (or the
``RASK_SSH_*`` variables of ``Sshd.env()``): the client key, the port, and a known-hosts file of
its own, because the host key is new every run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ProcessManager, ManagedProcess, wait_until

SSHD = Path("/usr/sbin/sshd")
SSH = shutil.which("ssh")
SSH_KEYGEN = shutil.which("ssh-keygen")
STARTUP_TIMEOUT = 30.0


def missing() -> str | None:
    """Why the tests cannot run here, or None."""
    if not SSHD.exists():
        return f"{SSHD} not found (scripts/setup installs openssh-server when run as root)"
    if not SSH or not SSH_KEYGEN:
        return "the OpenSSH client (ssh, ssh-keygen) is not on PATH"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Sshd:
    port: int
    client_key: Path
    known_hosts: Path
    process: ManagedProcess

    def client_options(self, port: int | None = None) -> list[str]:
        """``rask ssh`` flags that reach this server (or ``port`` instead)."""
        argv = ["--ssh-port", str(port or self.port), "--ssh-private-key", str(self.client_key)]
        for opt in self.ssh_options():
            argv += ["--ssh-option", opt]
        return argv

    def ssh_options(self) -> list[str]:
        return [
            f"UserKnownHostsFile={self.known_hosts}",
            "StrictHostKeyChecking=no",
            # the user's ~/.ssh/config must not redirect these hosts
            "IdentitiesOnly=yes",
        ]

    def env(self) -> dict[str, str]:
        """The same as environment variables (for job scripts that call plain ``rask ssh``)."""
        return {
            "RASK_SSH_PORT": str(self.port),
            "RASK_SSH_PRIVATE_KEY": str(self.client_key),
            "RASK_SSH_OPTIONS": " ".join(self.ssh_options()),
        }


def processes_naming(marker: str) -> list[str]:
    """Command lines of the live processes whose arguments contain ``marker``: every remote
    rask process of a test names its ``cluster`` dir (scheduler file, local directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
        if marker in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def _keygen(path: Path) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-N", "", "-t", "ed25519", "-f", str(path)],
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def start_sshd(procs: ProcessManager, workdir: Path) -> Sshd:
    """Starts sshd (stopped by ``procs`` at teardown) and waits until it accepts."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    d = workdir / "sshd"
    d.mkdir()
    host_key = d / "host_ed25519"
    client_key = d / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    authorized = d / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    config = d / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {d / 'sshd.pid'}",
                # the tmp dir is not owned by the user the way StrictModes wants
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin yes",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PrintMotd no",
                "PrintLastLog no",
                # rask ssh opens a connection per host and one for its check: do not throttle
                "MaxStartups 100",
                "",
            ]
        )
    )
    # sshd refuses to start without its privilege separation directory
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = procs.start("sshd", [str(SSHD), "-D", "-e", "-f", str(config)], tier=2)

    def up():
        procs.check_alive("while sshd was starting")
        return _port_open(port)

    wait_until(up, f"sshd to accept connections on 127.0.0.1:{port}", timeout=STARTUP_TIMEOUT)
    return Sshd(port, client_key, d / "known_hosts", proc)
