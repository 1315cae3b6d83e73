"""``tls://``: a scheduler started with Dask's TLS flags (or the ``distributed.comm.tls.*``
configuration), stock ``dask worker``s and a stock ``Client`` with their usual
``Security`` objects.

Dask's TLS is mutual and pinned to the cluster's CA: every process presents a certificate
the CA signed and verifies the peer's chain, with no host name check
(``distributed/security.py``). The certificates are made here with the ``openssl`` CLI:
a CA and one certificate per role, X.509 v3 (``-extfile``).

Work that makes the scheduler itself dial workers over TLS is included on purpose:
``scatter`` (``update_data``), a gather through the scheduler (``get_data``) and
``Client.run``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import dask
import dask.array as da
import pytest
from distributed import Client
from distributed.security import Security

from conftest import (
    CLIENT_TIMEOUT,
    DASK_CLI,
    RESULT_TIMEOUT,
    STARTUP_TIMEOUT,
    Cluster,
    child_env,
    scheduler_argv,
    wait_until,
)
from e2e_remote import add, inc

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


# --------------------------------------------------------------------------------------------
# certificates


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", cwd=d,
    )


def make_cert(d: Path, ca: str, name: str) -> None:
    (d / "leaf.ext").write_text("basicConstraints=CA:FALSE\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d,
    )
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "30", "-out", f"{name}.pem", "-extfile", "leaf.ext", cwd=d,
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """``ca.pem``; ``{scheduler,worker,client}.{pem,key}`` signed by it;
    ``scheduler-combined.pem`` (certificate and key in one file); ``stranger.{pem,key}``
    signed by another CA."""
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca")
    for role in ("scheduler", "worker", "client"):
        make_cert(d, "ca", role)
    (d / "scheduler-combined.pem").write_text(
        (d / "scheduler.pem").read_text() + (d / "scheduler.key").read_text()
    )
    make_ca(d, "other-ca")
    make_cert(d, "other-ca", "stranger")
    # like Security.temporary(): one self-signed certificate, no basicConstraints, that is
    # the CA and every role's certificate at once
    (d / "minimal.cnf").write_text("[req]\ndistinguished_name=dn\n[dn]\n")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-config", "minimal.cnf",
        "-keyout", "single.key", "-out", "single.pem", "-subj", "/CN=dask-internal",
        "-addext", "subjectAltName=DNS:dask-internal", cwd=d,
    )
    # no extensions: X.509 v1 (what `openssl x509 -req` makes without -extfile up to 3.1)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client-v1.key",
             "-out", "client-v1.csr", "-subj", "/CN=client-v1", cwd=d)
    _openssl("x509", "-req", "-in", "client-v1.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "30", "-out", "client-v1.pem", cwd=d)
    return d


def client_security(certs: Path, role: str = "client", **kwargs) -> Security:
    return Security(
        tls_ca_file=str(certs / "ca.pem"),
        tls_client_cert=str(certs / f"{role}.pem"),
        tls_client_key=str(certs / f"{role}.key"),
        require_encryption=True,
        **kwargs,
    )


def tls_flags(certs: Path) -> list[str]:
    return [
        "--tls-ca-file", str(certs / "ca.pem"),
        "--tls-cert", str(certs / "scheduler.pem"),
        "--tls-key", str(certs / "scheduler.key"),
    ]


def tls_env(certs: Path) -> dict[str, str]:
    """The same settings as Dask configuration in the environment."""
    return {
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certs / "ca.pem"),
        "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__CERT": str(certs / "scheduler.pem"),
        "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__KEY": str(certs / "scheduler.key"),
    }


# --------------------------------------------------------------------------------------------
# a cluster with extra scheduler flags / environment (and TLS for everyone, if certs given)


class ExtraCluster(Cluster):
    """``Cluster`` whose scheduler gets extra flags and environment variables; with
    ``certs``, workers and clients use TLS with the cluster's CA."""

    def __init__(self, kind, pm, workdir, *, scheduler_args=(), env=None, certs=None):
        self.kind = kind
        self.pm = pm
        self.workdir = workdir
        self.workers = {}
        self._control = None
        self.certs = certs
        Cluster._counter += 1
        self.tag = f"c{Cluster._counter}"
        scheduler_file = workdir / f"{self.tag}-scheduler.json"
        penv = child_env()
        penv.update(env or {})
        self.scheduler = pm.start(
            f"{self.tag}-scheduler-{kind}",
            scheduler_argv(kind, scheduler_file) + list(scheduler_args),
            env=penv,
            tier=1,
        )
        self.address = self._wait_scheduler_file(scheduler_file)

    @property
    def security(self) -> Security | None:
        return client_security(self.certs) if self.certs else None

    @property
    def control(self) -> Client:
        if self._control is None:
            self._control = self.client(set_as_default=False)
        return self._control

    def client(self, **kwargs) -> Client:
        if self.certs:
            kwargs.setdefault("security", self.security)
        return Client(self.address, timeout=CLIENT_TIMEOUT, **kwargs)

    def add_workers(self, n: int = 1, **_) -> list[str]:
        names = []
        for _ in range(n):
            name = f"w{len(self.workers)}"
            argv = [
                DASK_CLI, "worker", self.address,
                "--nthreads", "1", "--no-dashboard", "--memory-limit", "2GB",
                "--name", name, "--no-nanny",
                "--local-directory", str(self.workdir / f"{self.tag}-{name}-space"),
            ]
            if self.certs:
                argv += [
                    "--tls-ca-file", str(self.certs / "ca.pem"),
                    "--tls-cert", str(self.certs / "worker.pem"),
                    "--tls-key", str(self.certs / "worker.key"),
                ]
            self.workers[name] = self.pm.start(f"{self.tag}-worker-{name}", argv)
            names.append(name)
        self.wait_for_workers(len(self.workers))
        return names


def expect_start_failure(kind: str, procs, tmp_path, args: list[str], env=None) -> str:
    """Starts a scheduler that must refuse to start; returns its log."""
    penv = child_env()
    penv.update(env or {})
    p = procs.start(f"refused-{kind}", scheduler_argv(kind, tmp_path / "never.json") + args, env=penv)
    try:
        p.popen.wait(timeout=STARTUP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the scheduler started although it should refuse:\n{p.report()}")
    p.expected_exit = True
    assert p.popen.returncode != 0, p.report()
    assert not (tmp_path / "never.json").exists()
    return p.log_path.read_text(errors="replace")


# --------------------------------------------------------------------------------------------
# tests


def run_work_that_crosses_workers(client: Client) -> None:
    # a dependency made on w0 and used on w1: a worker-to-worker transfer over TLS
    a = client.submit(inc, 1, workers=["w0"], key="tls-a")
    b = client.submit(add, a, 10, workers=["w1"], key="tls-b")
    assert b.result(timeout=RESULT_TIMEOUT) == 12
    # an array reduction across both workers, checked against the local scheduler
    x = da.arange(4000, chunks=250)
    y = ((x[::-1] * 2 + x) ** 2).sum()
    (expected,) = dask.compute(y, scheduler="sync")
    assert client.compute(y).result(timeout=RESULT_TIMEOUT) == expected
    # the scheduler dials the workers: scatter (update_data), gather through the scheduler
    # (get_data), Client.run
    [s] = client.scatter([list(range(100))])
    total = client.submit(sum, s)
    assert total.result(timeout=RESULT_TIMEOUT) == sum(range(100))
    assert client.gather([a, b, total], direct=False) == [2, 12, sum(range(100))]
    ran = client.run(inc, 41)
    assert sorted(ran.values()) == [42, 42]
    assert all(addr.startswith("tls://") for addr in ran)


def test_tls_cluster_computes(scheduler_kind, procs, tmp_path, certs):
    cluster = ExtraCluster(scheduler_kind, procs, tmp_path, scheduler_args=tls_flags(certs), certs=certs)
    try:
        assert cluster.address.startswith("tls://127.0.0.1:"), cluster.address
        cluster.add_workers(2)
        with cluster.client() as client:
            run_work_that_crosses_workers(client)
            info = client.scheduler_info()
            assert info["address"] == cluster.address
            assert all(w.startswith("tls://") for w in info["workers"])
    finally:
        cluster.close_control()


def test_tls_from_dask_config(scheduler_kind, procs, tmp_path, certs):
    """No flags: ``distributed.comm.require-encryption`` and ``distributed.comm.tls.*`` from
    ``DASK_*`` environment variables make the scheduler listen on tls://."""
    cluster = ExtraCluster(scheduler_kind, procs, tmp_path, env=tls_env(certs), certs=certs)
    try:
        assert cluster.address.startswith("tls://"), cluster.address
        cluster.add_workers(2)
        with cluster.client() as client:
            run_work_that_crosses_workers(client)
    finally:
        cluster.close_control()


def test_plain_and_foreign_peers_are_refused(scheduler_kind, procs, tmp_path, certs):
    """A plain TCP client and a client whose certificate another CA signed both fail; the
    scheduler keeps serving its TLS clients."""
    cluster = ExtraCluster(scheduler_kind, procs, tmp_path, scheduler_args=tls_flags(certs), certs=certs)
    try:
        cluster.add_workers(2)
        with cluster.client() as client:
            hostport = cluster.address.removeprefix("tls://")
            started = time.monotonic()
            with pytest.raises(Exception) as plain:
                Client(f"tcp://{hostport}", timeout=5, set_as_default=False)
            plain_took = time.monotonic() - started
            if scheduler_kind == "rask":
                # rask tells a plain Dask peer why, at once (stock: a timeout)
                assert "TLS" in str(plain.value), plain.value
                assert plain_took < 5, plain_took
            stranger = Security(
                tls_ca_file=str(certs / "ca.pem"),
                tls_client_cert=str(certs / "stranger.pem"),
                tls_client_key=str(certs / "stranger.key"),
                require_encryption=True,
            )
            with pytest.raises(Exception):
                Client(cluster.address, security=stranger, timeout=5, set_as_default=False)
            # a client that trusts a different CA does not accept the scheduler either
            wrong_trust = Security(
                tls_ca_file=str(certs / "other-ca.pem"),
                tls_client_cert=str(certs / "client.pem"),
                tls_client_key=str(certs / "client.key"),
                require_encryption=True,
            )
            with pytest.raises(Exception):
                Client(cluster.address, security=wrong_trust, timeout=5, set_as_default=False)
            assert cluster.scheduler.alive(), cluster.scheduler.report()
            run_work_that_crosses_workers(client)
        if scheduler_kind == "rask":
            log = cluster.scheduler.log_path.read_text(errors="replace")
            assert "plain TCP connection refused" in log, log
            assert "TLS handshake failed" in log, log
    finally:
        cluster.close_control()


def test_one_self_signed_certificate_for_everyone(scheduler_kind, procs, tmp_path, certs):
    """The shape of ``Security.temporary()``: a single self-signed certificate (no
    basicConstraints) serves as the CA and as every process's certificate."""
    single = tmp_path / "single"
    single.mkdir()
    for role in ("ca", "scheduler", "worker", "client"):
        shutil.copy(certs / "single.pem", single / f"{role}.pem")
        shutil.copy(certs / "single.key", single / f"{role}.key")
    cluster = ExtraCluster(scheduler_kind, procs, tmp_path, scheduler_args=tls_flags(single), certs=single)
    try:
        cluster.add_workers(2)
        with cluster.client() as client:
            run_work_that_crosses_workers(client)
    finally:
        cluster.close_control()


def test_x509_v1_client_certificate(scheduler_kind, procs, tmp_path, certs):
    """OpenSSL accepts X.509 v1 leaf certificates, rustls does not: with rask such a client
    is refused and the log says why and how to re-issue the certificate."""
    text = subprocess.run(
        ["openssl", "x509", "-in", str(certs / "client-v1.pem"), "-noout", "-text"],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Version: 1" not in text:
        pytest.skip("this openssl makes v3 certificates without -extfile")
    cluster = ExtraCluster(scheduler_kind, procs, tmp_path, scheduler_args=tls_flags(certs), certs=certs)
    try:
        cluster.add_workers(1)
        v1 = client_security(certs, role="client-v1")
        if scheduler_kind == "dask":
            with Client(cluster.address, security=v1, timeout=CLIENT_TIMEOUT, set_as_default=False) as c:
                assert c.submit(add, 1, 2).result(timeout=RESULT_TIMEOUT) == 3
            return
        with pytest.raises(Exception):
            Client(cluster.address, security=v1, timeout=5, set_as_default=False)
        # the client may give up before the scheduler has written why it refused it
        def refusal():
            log = cluster.scheduler.log_path.read_text(errors="replace")
            return log if "X.509 v1" in log else None

        log = wait_until(refusal, "the X.509 v1 refusal in the scheduler's log", timeout=15)
        assert "-extfile" in log, log
        with cluster.client() as client:
            assert client.submit(add, 1, 2).result(timeout=RESULT_TIMEOUT) == 3
    finally:
        cluster.close_control()


def test_tcp_listener_refused_when_encryption_is_required(scheduler_kind, procs, tmp_path, certs):
    log = expect_start_failure(scheduler_kind, procs, tmp_path, ["--protocol", "tcp", *tls_flags(certs)])
    assert "encryption required" in log, log


def test_tls_without_certificates_is_refused_at_start(scheduler_kind, procs, tmp_path, certs):
    if scheduler_kind != "rask":
        pytest.skip("rask's own start-up message")
    log = expect_start_failure(
        scheduler_kind, procs, tmp_path, [], env={"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
    )
    assert "tls:// needs a CA file and a certificate" in log, log
    log = expect_start_failure(
        scheduler_kind, procs, tmp_path, ["--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", str(certs / "scheduler.pem")]
    )
    assert "PRIVATE KEY" in log and "scheduler.pem" in log, log
    log = expect_start_failure(
        scheduler_kind, procs, tmp_path, tls_flags(certs), env={"DASK_DISTRIBUTED__COMM__TLS__CIPHERS": "HIGH:!aNULL"}
    )
    assert "ciphers" in log, log


def test_key_in_cert_file_and_tls13_only(scheduler_kind, procs, tmp_path, certs):
    """``--tls-cert`` holding the key too (no ``--tls-key``), and
    ``distributed.comm.tls.min-version: 1.3``: a TLS 1.3 client works, a client capped at
    TLS 1.2 is refused."""
    if scheduler_kind != "rask":
        pytest.skip("rask's TLS settings")
    import ssl

    cluster = ExtraCluster(
        scheduler_kind, procs, tmp_path,
        scheduler_args=["--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", str(certs / "scheduler-combined.pem")],
        env={"DASK_DISTRIBUTED__COMM__TLS__MIN_VERSION": "1.3"},
        certs=certs,
    )
    try:
        cluster.add_workers(2)
        with cluster.client() as client:
            assert client.submit(add, 1, 2).result(timeout=RESULT_TIMEOUT) == 3
            old = client_security(certs, tls_max_version=ssl.TLSVersion.TLSv1_2)
            with pytest.raises(Exception):
                Client(cluster.address, security=old, timeout=5, set_as_default=False)
            assert client.submit(add, 2, 2).result(timeout=RESULT_TIMEOUT) == 4
    finally:
        cluster.close_control()
