"""The connection layer under load and abuse: caps on what a peer may send, handshake and
stall timeouts, and thousands of idle connections next to a running computation.

Raw peers speak the framing of PROTOCOL.md §1.1 by hand (``test_hostile_input``'s
``RawConn``). The rules checked: the offending connection is closed within a bounded time
with a clear log line, and every other client and worker keeps working.

Tests about rask's own limits (``--max-message-bytes``, ``--max-frames``, the handshake
and stall timeouts; the stock scheduler has none of them) skip for dask. The idle
connection test runs on both and prints its timings (``pytest -s``); RELIABILITY.md
has the numbers.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import struct
import time
from urllib.parse import urlsplit

import dask
import dask.array as da
import msgpack
import pytest

from conftest import RESULT_TIMEOUT, wait_until
from e2e_remote import add, inc, slow_inc
from test_hostile_input import HANDSHAKE, RawConn, pack_message, pack_msg
from test_tls import ExtraCluster

N_IDLE = 2000


def rask_only(kind: str) -> None:
    if kind != "rask":
        pytest.skip("rask's own connection limits (the stock scheduler has none)")


def closed_within(conn: RawConn, seconds: float) -> float:
    """Reads (and drops) whatever the scheduler sends until it closes the connection;
    returns how long that took. Fails if it is still open after ``seconds``."""
    started = time.monotonic()
    conn.sock.settimeout(0.5)
    while time.monotonic() - started < seconds:
        try:
            chunk = conn.sock.recv(1 << 16)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started
        if not chunk:
            return time.monotonic() - started
    pytest.fail(f"the scheduler kept the connection open for more than {seconds}s")


def still_open(conn: RawConn) -> bool:
    conn.sock.settimeout(0.05)
    try:
        while True:
            chunk = conn.sock.recv(1 << 16)
            if not chunk:
                return False
    except socket.timeout:
        return True
    except OSError:
        return False


def log_of(cluster) -> str:
    return cluster.scheduler.log_path.read_text(errors="replace")


def check_serves(cluster, client) -> None:
    assert cluster.scheduler.alive(), cluster.scheduler.report()
    futs = client.map(inc, range(20))
    assert client.submit(sum, futs).result(timeout=RESULT_TIMEOUT) == sum(range(1, 21))
    conn = RawConn(cluster.address)
    try:
        conn.handshake()
        conn.send(pack_msg({"op": "identity", "reply": True}))
        assert conn.read()["type"] == "Scheduler"
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# caps


def test_caps_close_only_the_offender(scheduler_kind, procs, tmp_path):
    rask_only(scheduler_kind)
    cluster = ExtraCluster(
        scheduler_kind, procs, tmp_path, scheduler_args=["--max-message-bytes", "1MiB", "--max-frames", "16"]
    )
    try:
        cluster.add_workers(2)
        with cluster.client() as client:
            # 2 MiB announced in one frame: refused on the prelude, before any body arrives
            big = RawConn(cluster.address)
            big.handshake()
            big.send(struct.pack("<QQQ", 24 + (2 << 20), 1, 2 << 20) + b"\0" * 100)
            closed_within(big, 5)
            # a terabyte announced: the same, no allocation
            huge = RawConn(cluster.address)
            huge.handshake()
            huge.send(struct.pack("<QQQ", 24 + (1 << 40), 1, 1 << 40))
            closed_within(huge, 5)
            # 100 frames of 1 byte: over --max-frames
            many = RawConn(cluster.address)
            many.handshake()
            many.send(pack_message([b"\x80"] * 100))
            closed_within(many, 5)
            # under the caps everything works, scattered data included
            payload = b"x" * (600 << 10)
            [fut] = client.scatter([payload])
            assert client.submit(len, fut).result(timeout=RESULT_TIMEOUT) == len(payload)
            check_serves(cluster, client)
        log = log_of(cluster)
        assert "announces 2097152 bytes (limit 1048576)" in log and "--max-message-bytes" in log, log
        assert "announces 100 frames (limit 16)" in log and "--max-frames" in log, log
    finally:
        cluster.close_control()


# --------------------------------------------------------------------------------------------
# timeouts


def test_silent_peers_are_dropped_after_the_connect_timeout(scheduler_kind, procs, tmp_path):
    """A peer that connects and never completes the handshake is closed after
    ``distributed.comm.timeouts.connect`` (the stock listener waits forever)."""
    rask_only(scheduler_kind)
    cluster = ExtraCluster(
        scheduler_kind, procs, tmp_path, env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    )
    try:
        cluster.add_workers(1)
        started = time.monotonic()
        silent = RawConn(cluster.address)
        partial = RawConn(cluster.address)
        partial.send(pack_msg(HANDSHAKE)[:20])
        closed_within(silent, 10)
        closed_within(partial, 10)
        took = time.monotonic() - started
        assert 1.5 < took < 10, took
        with cluster.client() as client:
            check_serves(cluster, client)
        assert "timed out after 2s waiting for the handshake" in log_of(cluster)
    finally:
        cluster.close_control()


def test_stalled_trickling_and_non_reading_peers(scheduler_kind, procs, tmp_path):
    """With ``distributed.comm.timeouts.tcp: 3s``: a message whose bytes stop half-way is
    dropped; one that trickles in a byte at a time (slowloris) is slow but making progress
    and is served; a peer that sends requests but never reads the replies is dropped once
    the scheduler's writes to it stop moving. Computations go on meanwhile."""
    rask_only(scheduler_kind)
    cluster = ExtraCluster(
        scheduler_kind, procs, tmp_path, env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "3s"}
    )
    try:
        cluster.add_workers(2)
        with cluster.client() as client:
            stalled = RawConn(cluster.address)
            stalled.handshake()
            stalled.send(struct.pack("<QQQ", 1024, 1, 1000) + b"\0" * 10)

            trickler = RawConn(cluster.address)
            trickler.handshake()
            body = msgpack.dumps({"op": "identity", "reply": True})
            message = pack_message([body])
            trickler.send(message[:24])  # the prelude, then one byte every 0.4 s

            reader = RawConn(cluster.address)
            reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.handshake()
            reader.sock.settimeout(5)
            requests = pack_msg({"op": "identity", "reply": True}) * 20000
            try:
                reader.sock.sendall(requests)
            except socket.timeout:
                pass  # the scheduler stopped reading us: it is blocked writing to us

            # a client stream that stops reading: every heartbeat makes the scheduler write
            # to it, its batched writer stalls, the whole stream is closed
            deaf = RawConn(cluster.address)
            deaf.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            deaf.handshake()
            deaf.send(pack_msg({"op": "register-client", "client": "Client-deaf-e2e", "reply": False}))
            deaf.sock.settimeout(5)
            beats = pack_msg([{"op": "heartbeat-client"}] * 1000)
            try:
                for _ in range(300):
                    deaf.sock.sendall(beats)
            except socket.timeout:
                pass

            futs = client.map(slow_inc, range(40), delay=0.1)
            started = time.monotonic()
            for b in message[24:]:
                trickler.send(bytes([b]))
                time.sleep(0.4)
            trickle_took = time.monotonic() - started
            assert trickle_took > 6, trickle_took  # twice the tcp timeout, never stalled
            assert trickler.read()["type"] == "Scheduler"
            assert client.gather(futs) == [i + 1 for i in range(40)]

            assert not still_open(stalled)
            # Whichever notices first: rask's write progress check, or the kernel's
            # TCP_USER_TIMEOUT (the same budget) failing the write or the read.
            closed_within(reader, 20)
            closed_within(deaf, 20)
            wait_until(
                lambda: "Remove client client=Client-deaf-e2e" in log_of(cluster)
                and log_of(cluster).count("no progress for 3s") >= 3,
                "the stalled, non-reading and deaf peers to be logged",
                timeout=20,
            )
            check_serves(cluster, client)
        log = log_of(cluster)
        assert "waiting for the rest of a message" in log, log
    finally:
        cluster.close_control()


# --------------------------------------------------------------------------------------------
# many idle connections


def _raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        pytest.skip(f"needs {n} open files, the hard limit is {hard}")


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _open_idle(address: str, n: int) -> tuple[list[socket.socket], dict[str, int]]:
    """``n`` connections, a third each: silent (connect only), half a handshake, a full
    handshake and then silence."""
    u = urlsplit(address)
    full = pack_msg(HANDSHAKE)
    socks, kinds = [], {"silent": 0, "half-handshake": 0, "handshaken": 0}
    for i in range(n):
        s = socket.create_connection((u.hostname, u.port), timeout=30)
        kind = ("silent", "half-handshake", "handshaken")[i % 3]
        if kind == "half-handshake":
            s.sendall(full[:20])
        elif kind == "handshaken":
            s.sendall(full)
        kinds[kind] += 1
        socks.append(s)
    return socks, kinds


def _workload(client) -> float:
    """Futures and an array reduction with transfers between the two workers."""
    started = time.monotonic()
    futs = client.map(inc, range(500))
    assert client.submit(sum, futs).result(timeout=RESULT_TIMEOUT) == sum(range(1, 501))
    x = da.arange(20_000, chunks=500)
    y = ((x[::-1] + x) * 3).sum()
    (expected,) = dask.compute(y, scheduler="sync")
    assert client.compute(y).result(timeout=RESULT_TIMEOUT) == expected
    return time.monotonic() - started


def test_idle_connections_do_not_disturb_a_computation(cluster_factory, scheduler_kind):
    _raise_nofile(N_IDLE + 1000)
    cluster = cluster_factory()
    cluster.add_workers(2)
    pid = cluster.scheduler.pid
    numbers = {"scheduler": scheduler_kind, "connections": N_IDLE}
    with cluster.client() as client:
        _workload(client)  # warm up (imports, worker start-up)
        numbers["workload_s_without"] = round(_workload(client), 2)
        numbers["rss_kib_before"] = _rss_kib(pid)

        # a computation is running when the connections arrive
        running = client.map(slow_inc, range(100), delay=0.02, pure=False)
        started = time.monotonic()
        socks, kinds = _open_idle(cluster.address, N_IDLE)
        numbers["open_s"] = round(time.monotonic() - started, 2)
        numbers["kinds"] = kinds
        try:
            assert client.gather(running) == [i + 1 for i in range(100)]
            numbers["workload_s_with"] = round(_workload(client), 2)
            numbers["rss_kib_with"] = _rss_kib(pid)
            # a new client gets in and computes
            started = time.monotonic()
            with cluster.client() as other:
                assert other.submit(add, 1, 2).result(timeout=RESULT_TIMEOUT) == 3
            numbers["new_client_s"] = round(time.monotonic() - started, 2)
            assert cluster.scheduler.alive(), cluster.scheduler.report()
        finally:
            for s in socks:
                s.close()
        wait_until(lambda: cluster.scheduler.alive(), "scheduler alive")
        numbers["workload_s_after"] = round(_workload(client), 2)
    print("\nidle-connections " + json.dumps(numbers))
    out = os.environ.get("RASK_CONNECTIONS_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(numbers) + "\n")
