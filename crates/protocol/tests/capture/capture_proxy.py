#!/usr/bin/env python
"""Transparent logging TCP proxy for the dask/distributed wire protocol.

rask copy of /work/shared/reference/dask_proxy.py, extended with --dump-all DIR: the
complete wire bytes of EVERY message (both directions, every connection) are written to
DIR/NNNNN-LABEL-cCONN-{c2s,s2c}-mMSG.bin, and one JSON line per message is appended to
DIR/index.jsonl (seq, file, label, conn, dir, msg, nosplit, frame_lens, ops).

Usage:
    python dask_proxy.py --log trace.txt --map LABEL:LISTEN_PORT:TARGET_HOST:TARGET_PORT [--map ...]

Every byte is forwarded verbatim; in parallel each direction is parsed into
distributed "messages" (one message = one Comm.write()) and pretty printed.

Wire format parsed here (distributed/comm/tcp.py:215-258, 373-428,
distributed/protocol/utils.py:74-161):

    u64 LE  nosplit_nbytes      (prelude + the first K whole frames; a read hint)
    u64 LE  n_frames            \
    u64 LE  len[0..n_frames]     } prelude (pack_frames_prelude)
    bytes   frame[0] .. frame[n-1]

frame[0] is the msgpack-encoded message; {"__Serialized__": i} and
{"__Pickled__": i} dicts reference frame i (a msgpack sub-header) followed by
sub_header["num-sub-frames"] payload frames (distributed/protocol/core.py).

The proxy never needs Python objects to forward; pickle is only used here to
*display* pickled payloads (this is a debugging tool, not a scheduler).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import pickle
import pprint
import struct
import sys
import time

import msgpack

MAX_BYTES_SHOWN = 48
MAX_REPR = 400

_conn_ids = itertools.count(1)
DUMP_DIR = None
DUMP_ALL = None
LOG_STEM = "trace"
_seq = itertools.count(1)


def _ops(frame0):
    """Op names of a message (a dict, or a batched tuple of dicts); 'reply' otherwise."""
    try:
        m = msgpack.loads(frame0, raw=False, use_list=False, strict_map_key=False)
    except Exception as e:  # pragma: no cover
        return [f"<undecodable {e}>"]
    items = m if isinstance(m, tuple) else (m,)
    out = []
    for it in items:
        if isinstance(it, dict) and isinstance(it.get("op"), str):
            out.append(it["op"])
        elif isinstance(it, dict) and "pickle-protocol" in it:
            out.append("<handshake>")
        else:
            out.append("<reply>")
    return out


def dump_all(raw, frames, nosplit, lens, label, conn_id, direction, n_msg):
    seq = next(_seq)
    d = "c2s" if direction.startswith("C->S") else "s2c"
    fn = f"{seq:05d}-{label}-c{conn_id}-{d}-m{n_msg}.bin"
    with open(f"{DUMP_ALL}/{fn}", "wb") as fh:
        fh.write(raw)
    rec = dict(seq=seq, file=fn, label=label, conn=conn_id, dir=d, msg=n_msg,
               nosplit=nosplit, frame_lens=list(lens), ops=_ops(frames[0]))
    with open(f"{DUMP_ALL}/index.jsonl", "a") as fh:
        fh.write(json.dumps(rec) + "\n")


class Blob:
    """Placeholder for a bytes value in a printed message."""

    def __init__(self, b, note=""):
        self.n = len(b)
        self.head = bytes(b[:MAX_BYTES_SHOWN])
        self.note = note

    def __repr__(self):
        more = "..." if self.n > MAX_BYTES_SHOWN else ""
        note = f" {self.note}" if self.note else ""
        return f"<bytes len={self.n}{note} {self.head!r}{more}>"


class Ref:
    """A resolved {"__Serialized__": i} / {"__Pickled__": i} reference."""

    def __init__(self, kind, offset, sub_header, sub_frame_lens, preview):
        self.kind = kind
        self.offset = offset
        self.sub_header = sub_header
        self.sub_frame_lens = sub_frame_lens
        self.preview = preview

    def __repr__(self):
        return (
            f"<{self.kind}@frame{self.offset} sub_header={self.sub_header!r} "
            f"sub_frames={self.sub_frame_lens} value~{self.preview}>"
        )


class SetVal:
    def __init__(self, items):
        self.items = items

    def __repr__(self):
        return f"<__Set__ {list(self.items)!r}>"


def _short(obj):
    try:
        r = repr(obj)
    except Exception as e:  # pragma: no cover
        r = f"<unreprable {type(obj).__module__}.{type(obj).__qualname__}: {e}>"
    if len(r) > MAX_REPR:
        r = r[:MAX_REPR] + f"...(+{len(r) - MAX_REPR} chars)"
    return r


def _clean(obj):
    """Replace bytes by Blob placeholders, recursively."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return Blob(bytes(obj))
    if isinstance(obj, dict):
        return {_clean(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_clean(v) for v in obj)
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _unpickle_preview(data, buffers=()):
    try:
        return _short(pickle.loads(data, buffers=list(buffers)))
    except Exception as e:
        return f"<unpickle failed: {type(e).__name__}: {e}>"


def decode_message(frames):
    """Decode a distributed message WITHOUT distributed: msgpack + sub-frames."""

    def sub(offset):
        return msgpack.loads(
            frames[offset], raw=False, use_list=False, strict_map_key=False
        )

    def hook(obj):
        if len(obj) == 1 and "__Serialized__" in obj and obj["__Serialized__"] > 0:
            off = obj["__Serialized__"]
            h = sub(off)
            n = h["num-sub-frames"]
            payload = frames[off + 1 : off + 1 + n]
            preview = ""
            ser = h.get("serializer")
            try:
                if ser == "pickle":
                    preview = _unpickle_preview(payload[0], payload[1:])
                elif ser == "dask" and h.get("type") in ("bytes", "builtins.bytes"):
                    raw = b"".join(bytes(p) for p in payload)
                    # exceptions/tracebacks are pickled bytes wrapped in Serialize(bytes)
                    preview = "bytes->" + _unpickle_preview(raw)
                elif ser == "msgpack":
                    preview = _short(msgpack.loads(b"".join(payload), raw=False))
                else:
                    preview = f"{ser} frames"
            except Exception as e:
                preview = f"<preview failed {e}>"
            return Ref("Serialized", off, _clean(h), [len(p) for p in payload], preview)
        if len(obj) == 1 and "__Pickled__" in obj and obj["__Pickled__"] > 0:
            off = obj["__Pickled__"]
            h = sub(off)
            n = h["num-sub-frames"]
            payload = frames[off + 1 : off + 1 + n]
            preview = _unpickle_preview(h["pickled-obj"], payload)
            return Ref("Pickled", off, _clean(h), [len(p) for p in payload], preview)
        if "__Set__" in obj:
            return SetVal(obj["as-list"])
        return obj

    msg = msgpack.loads(
        frames[0], raw=False, use_list=False, strict_map_key=False, object_hook=hook
    )
    return _clean(msg)


_seen_heartbeat = [False]


def abbreviate(msg):
    """Keep the first worker heartbeat verbatim, elide metrics of later ones."""
    if isinstance(msg, dict) and msg.get("op") == "heartbeat_worker":
        if _seen_heartbeat[0]:
            msg = dict(msg)
            for k in ("metrics", "extensions"):
                if isinstance(msg.get(k), dict):
                    msg[k] = f"<{len(msg[k])} entries elided; see first heartbeat_worker in this file>"
        _seen_heartbeat[0] = True
    return msg


class Logger:
    def __init__(self, path):
        self.f = open(path, "w", buffering=1)
        self.t0 = time.time()

    def log(self, text):
        self.f.write(text + "\n")


async def pump(reader, writer, log, label, conn_id, direction):
    n_msg = 0
    try:
        while True:
            hdr = await reader.readexactly(8)
            (nosplit,) = struct.unpack("<Q", hdr)
            nf_b = await reader.readexactly(8)
            (nframes,) = struct.unpack("<Q", nf_b)
            lens_b = await reader.readexactly(8 * nframes)
            lens = struct.unpack(f"<{nframes}Q", lens_b)
            frames = [await reader.readexactly(n) for n in lens]
            raw = hdr + nf_b + lens_b + b"".join(frames)
            writer.write(raw)
            await writer.drain()
            n_msg += 1
            if DUMP_DIR and b"update-graph" in frames[0]:
                fn = f"{DUMP_DIR}/{LOG_STEM}-update-graph-{label}-conn{conn_id}-msg{n_msg}.bin"
                with open(fn, "wb") as fh:
                    fh.write(raw)
            if DUMP_ALL:
                dump_all(raw, frames, nosplit, lens, label, conn_id, direction, n_msg)
            t = time.time() - log.t0
            try:
                msg = decode_message(frames)
                msg = abbreviate(msg)
                body = pprint.pformat(msg, width=110, sort_dicts=False)
            except Exception as e:
                body = f"<decode error {type(e).__name__}: {e}>"
            log.log(
                f"--- t={t:8.3f}s [{label} conn#{conn_id}] {direction} msg#{n_msg} "
                f"nosplit={nosplit} nframes={nframes} frame_lens={list(lens)}\n{body}"
            )
    except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        t = time.time() - log.t0
        log.log(f"--- t={t:8.3f}s [{label} conn#{conn_id}] {direction} EOF")
        try:
            writer.close()
        except Exception:
            pass


def make_handler(label, thost, tport, log):
    async def handle(creader, cwriter):
        conn_id = next(_conn_ids)
        peer = cwriter.get_extra_info("peername")
        try:
            sreader, swriter = await asyncio.open_connection(thost, tport)
        except OSError as e:
            log.log(f"--- [{label} conn#{conn_id}] upstream connect failed: {e}")
            cwriter.close()
            return
        t = time.time() - log.t0
        log.log(f"=== t={t:8.3f}s [{label} conn#{conn_id}] NEW connection from {peer[0]}:{peer[1]}")
        await asyncio.gather(
            pump(creader, swriter, log, label, conn_id, "C->S (to target)"),
            pump(sreader, cwriter, log, label, conn_id, "S->C (from target)"),
        )

    return handle


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--dump-dir", default=None,
                   help="write raw wire bytes of every update-graph message here")
    p.add_argument("--dump-all", default=None,
                   help="write raw wire bytes of EVERY message here, plus index.jsonl")
    p.add_argument("--map", action="append", required=True,
                   help="LABEL:LISTEN_PORT:TARGET_HOST:TARGET_PORT")
    a = p.parse_args()
    global DUMP_DIR, DUMP_ALL, LOG_STEM
    DUMP_DIR = a.dump_dir
    DUMP_ALL = a.dump_all
    LOG_STEM = a.log.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    log = Logger(a.log)
    servers = []
    for m in a.map:
        label, lport, thost, tport = m.split(":")
        srv = await asyncio.start_server(
            make_handler(label, thost, int(tport), log), "127.0.0.1", int(lport)
        )
        servers.append(srv)
    print("proxy ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
