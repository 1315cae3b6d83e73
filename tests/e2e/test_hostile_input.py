"""Garbage on the scheduler port.  Raw frames per PROTOCOL.md §1.1:
``u64 LE nosplit-size, u64 LE nframes, nframes x u64 LE frame length, frames``; frame 0 is
msgpack.  After every abuse the scheduler must still be alive and serve a normal client.

What the stock scheduler does with each abuse (the bar for a drop-in): it answers the
handshake and closes the connection for undecodable framing (random bytes, absurd lengths,
a non-dict message); it replies to an undecodable msgpack frame with an "uncaught-error"
message and to an unknown op with ``None``.  The tests only require that the bad
connection is answered or closed within a bounded time, never left hanging.
"""

import random
import socket
import struct
import time
from urllib.parse import urlsplit

import msgpack
import pytest

from conftest import RESULT_TIMEOUT
from e2e_remote import add, inc

IO_TIMEOUT = 10.0

HANDSHAKE = {"compression": None, "python": (3, 11, 7), "pickle-protocol": 5}


def pack_message(frames: list[bytes]) -> bytes:
    n = len(frames)
    body = struct.pack(f"<Q{n}Q", n, *(len(f) for f in frames)) + b"".join(frames)
    return struct.pack("<Q", len(body)) + body


def pack_msg(obj) -> bytes:
    return pack_message([msgpack.dumps(obj, use_bin_type=True)])


class RawConn:
    def __init__(self, address: str):
        u = urlsplit(address)
        assert u.scheme == "tcp", address
        self.sock = socket.create_connection((u.hostname, u.port), timeout=IO_TIMEOUT)
        self.sock.settimeout(IO_TIMEOUT)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def read(self):
        """One message: its decoded frame 0."""
        self._exact(8)  # nosplit size: a hint only
        (n,) = struct.unpack("<Q", self._exact(8))
        assert n < 1000, f"implausible frame count {n}"
        lengths = struct.unpack(f"<{n}Q", self._exact(8 * n))
        frames = [self._exact(length) for length in lengths]
        return msgpack.loads(frames[0], raw=False, strict_map_key=False, use_list=False)

    def handshake(self) -> dict:
        self.send(pack_msg(HANDSHAKE))
        peer = self.read()
        assert isinstance(peer, dict) and "compression" in peer and "pickle-protocol" in peer, peer
        return peer

    def answered_or_closed(self, handshake_first: bool = False) -> str:
        """Waits (bounded) until the server either replies or closes the connection."""
        try:
            if handshake_first:
                # the server writes its handshake without waiting for ours
                self.read()
            self.read()
            return "reply"
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return "closed"
        except socket.timeout:
            pytest.fail(f"the scheduler neither answered nor closed the connection within {IO_TIMEOUT}s")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def assert_scheduler_serves(cluster, client):
    assert cluster.scheduler.alive(), cluster.scheduler.report()
    # a fresh raw connection still gets a proper handshake and identity
    conn = RawConn(cluster.address)
    try:
        conn.handshake()
        conn.send(pack_msg({"op": "identity", "reply": True}))
        ident = conn.read()
        assert ident["type"] == "Scheduler"
        assert ident["address"] == cluster.address
    finally:
        conn.close()
    # and a normal client computation works
    futs = client.map(inc, range(10))
    assert client.submit(sum, futs).result(timeout=RESULT_TIMEOUT) == sum(range(1, 11))
    assert client.submit(add, 2, 3).result(timeout=RESULT_TIMEOUT) == 5


def test_raw_protocol_sanity(cluster, client):
    """The raw client used below speaks the protocol correctly."""
    assert_scheduler_serves(cluster, client)


def _random_bytes(conn):
    conn.send(random.Random(1234).randbytes(4096))
    return conn.answered_or_closed(handshake_first=True)


def _huge_nosplit(conn):
    conn.send(struct.pack("<Q", 2**62) + b"\x01" * 64)
    return conn.answered_or_closed(handshake_first=True)


def _huge_nframes(conn):
    conn.handshake()
    conn.send(struct.pack("<QQ", 16, 2**40) + b"\x00" * 64)
    return conn.answered_or_closed()


def _huge_frame_length(conn):
    conn.handshake()
    conn.send(struct.pack("<QQQ", 16, 1, 2**62) + b"\x00" * 64)
    return conn.answered_or_closed()


def _bad_msgpack(conn):
    conn.handshake()
    conn.send(pack_message([b"\xc1\xc1\xc1 this is not msgpack"]))
    return conn.answered_or_closed()


def _not_a_dict(conn):
    conn.handshake()
    conn.send(pack_msg([1, 2, 3]))
    return conn.answered_or_closed()


def _unknown_op(conn):
    conn.handshake()
    conn.send(pack_msg({"op": "no-such-op-e2e", "reply": True, "x": 1}))
    return conn.answered_or_closed()


def _op_with_wrong_types(conn):
    conn.handshake()
    conn.send(pack_msg({"op": "identity", "reply": True, "n_workers": "not-an-int"}))
    return conn.answered_or_closed()


def _truncated_then_eof(conn):
    conn.handshake()
    conn.send(struct.pack("<QQQ", 1000, 1, 984) + b"\x00" * 10)
    conn.sock.shutdown(socket.SHUT_WR)
    return conn.answered_or_closed()


def _handshake_only_then_eof(conn):
    conn.send(pack_msg(HANDSHAKE)[:20])
    conn.sock.shutdown(socket.SHUT_WR)
    return conn.answered_or_closed(handshake_first=True)


ABUSES = {
    "random-bytes": _random_bytes,
    "huge-nosplit": _huge_nosplit,
    "huge-nframes": _huge_nframes,
    "huge-frame-length": _huge_frame_length,
    "bad-msgpack": _bad_msgpack,
    "not-a-dict": _not_a_dict,
    "unknown-op": _unknown_op,
    "wrong-arg-types": _op_with_wrong_types,
    "truncated-message": _truncated_then_eof,
    "truncated-handshake": _handshake_only_then_eof,
}


@pytest.mark.parametrize("abuse", list(ABUSES))
def test_garbage_on_port(cluster, client, abuse):
    conn = RawConn(cluster.address)
    try:
        ABUSES[abuse](conn)
    finally:
        conn.close()
    assert_scheduler_serves(cluster, client)


def test_many_garbage_connections_at_once(cluster, client):
    """Several abusive connections left open simultaneously do not block other clients."""
    conns = []
    try:
        for i in range(8):
            c = RawConn(cluster.address)
            if i % 2:
                c.send(struct.pack("<Q", 2**62))  # announces a huge message, then stalls
            else:
                c.send(pack_msg(HANDSHAKE)[:30])  # half a handshake, then stalls
            conns.append(c)
        time.sleep(0.2)
        assert_scheduler_serves(cluster, client)
    finally:
        for c in conns:
            c.close()
    assert_scheduler_serves(cluster, client)
