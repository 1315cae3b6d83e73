"""Reference for test_graph_helper.py: the stock ``Scheduler.update_graph``, as a process.

Runs like the helper (u64-LE length + msgpack on stdin/stdout). Each request is the list
of wire frames of one client ``update-graph`` message; it is fed to a fresh, real
``distributed.Scheduler`` (no workers) exactly as ``Scheduler.handle_stream`` would, and
the reply summarizes the resulting TaskStates and the messages the scheduler reported.

It is a separate process so that it can share the helper's ``PYTHONHASHSEED``: set
iteration order (which some graph optimizations and ``dask.order`` tie-breaks depend on)
is then the same in both, and run_specs can be compared exactly.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys

import msgpack

from distributed import Scheduler
from distributed.protocol import loads
from distributed.protocol.pickle import dumps as pickle_dumps


def summarize(ts) -> dict:
    return {
        "key": ts.key,
        "deps": [d.key for d in ts.dependencies],
        "priority": ts.priority,
        "run_spec": pickle_dumps(ts.run_spec) if ts.run_spec is not None else None,
        "kind": type(ts.run_spec).__name__,
        "prefix": ts.prefix.name,
        "group": ts.group.name,
        # what makes it root-ish whatever its group's size (Scheduler.is_rootish)
        "data_producer": bool(ts.run_spec and ts.run_spec.data_producer),
        "annotations": pickle_dumps(ts.annotations or {}),
        "worker_restrictions": sorted(ts.worker_restrictions or ()),
        "host_restrictions": sorted(ts.host_restrictions or ()),
        "loose_restrictions": bool(ts.loose_restrictions),
        "resource_restrictions": ts.resource_restrictions,
        "retries": ts.retries,
    }


def report_summary(msg: dict) -> dict:
    out = {"op": msg["op"]}
    if msg["op"] == "task-erred":
        out["key"] = msg["key"]
        out["exception"] = msg["exception"].data
        tb = msg["traceback"]
        out["traceback"] = tb.data if tb is not None else None
    return out


async def update_graph(frames: list[bytes]) -> dict:
    async with Scheduler(port=0, host="127.0.0.1", dashboard_address="127.0.0.1:0") as s:
        reports = []
        s.report = lambda msg, client=None, **kw: reports.append(msg)
        msg = loads(frames, deserialize=False)
        msg.pop("op")
        await s.update_graph(client="test-client", **msg)
        return {
            "tasks": [summarize(ts) for ts in s.tasks.values()],
            "reports": [report_summary(m) for m in reports],
        }


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        (n,) = struct.unpack("<Q", head)
        frames = msgpack.unpackb(inp.read(n), raw=False, use_list=False)
        reply = asyncio.run(update_graph(list(frames)))
        body = msgpack.packb(reply, use_bin_type=True)
        out.write(struct.pack("<Q", len(body)) + body)
        out.flush()


if __name__ == "__main__":
    main()
