"""Pick the curated golden messages out of a capture.sh dump (raw/*.bin + raw/index.jsonl)
and copy them to tests/data/<name>.bin. Selection is by content, not by sequence number, so
a re-capture picks equivalent messages (hashes, timestamps and ports will differ).

usage: python pick_golden.py CAPTURE/raw ../data
"""
import json
import shutil
import sys

import msgpack

RAW, OUT = sys.argv[1], sys.argv[2]
recs = [json.loads(line) for line in open(f"{RAW}/index.jsonl")]


def frames_of(rec):
    raw = open(f"{RAW}/{rec['file']}", "rb").read()
    n = int.from_bytes(raw[8:16], "little")
    lens = [int.from_bytes(raw[16 + 8 * i : 24 + 8 * i], "little") for i in range(n)]
    off, out = 16 + 8 * n, []
    for ln in lens:
        out.append(raw[off : off + ln])
        off += ln
    assert off == len(raw), rec
    return out


def msg_of(rec):
    return msgpack.loads(frames_of(rec)[0], raw=False, use_list=False, strict_map_key=False)


def size(rec):
    return sum(rec["frame_lens"])


def items(rec):
    m = msg_of(rec)
    return m if isinstance(m, tuple) else (m,)


def only(rec, *ops):
    return set(rec["ops"]) == set(ops)


def reply_to(req):
    """The reply of an RPC: the next message on the same connection in the other direction
    (message numbers drift apart: get_data's requester sends a trailing "OK")."""
    other = "s2c" if req["dir"] == "c2s" else "c2s"
    return next(r for r in recs if r["label"] == req["label"] and r["conn"] == req["conn"]
                and r["dir"] == other and r["seq"] > req["seq"])


def first(pred):
    return next(r for r in recs if pred(r))


def smallest(pred):
    return min((r for r in recs if pred(r)), key=size)


def partial_nosplit(r):
    return r["nosplit"] != 8 + 8 * len(r["frame_lens"]) + size(r)


def has_tuple_who_has(r):
    return any(isinstance(k, tuple) for it in items(r) for k in it.get("who_has", {}))


def erred_from_worker(r):
    return r["label"] == "sched" and r["dir"] == "c2s" and "task-erred" in r["ops"]


update_graphs = [r for r in recs if only(r, "update-graph")]
reg_worker = first(lambda r: only(r, "register-worker"))
reg_client = first(lambda r: only(r, "register-client"))
heartbeat = first(lambda r: only(r, "heartbeat_worker"))
identity = first(lambda r: only(r, "identity"))
get_data = [r for r in recs if r["label"].startswith("worker") and only(r, "get_data")]
gather_tuple = first(lambda r: only(r, "gather")
                     and any(isinstance(k, tuple) for k in items(r)[0]["keys"]))

chosen = {
    # the stock scheduler listener's handshake (pickle-protocol 5)
    "handshake": first(
        lambda r: r["label"] == "sched" and r["dir"] == "s2c" and only(r, "<handshake>")),
    # scheduler -> worker handshake on the scheduler's outgoing rpc (pickle-protocol 4)
    "handshake_scheduler_outgoing": first(
        lambda r: r["label"].startswith("worker") and r["dir"] == "c2s"
        and only(r, "<handshake>") and msg_of(r)["pickle-protocol"] == 4),
    "register_worker": reg_worker,
    "register_worker_reply": reply_to(reg_worker),
    "register_client": reg_client,
    "stream_start": reply_to(reg_client),
    "heartbeat_worker": heartbeat,
    "heartbeat_worker_reply": reply_to(heartbeat),
    "identity_reply": reply_to(identity),
    # scenario.py order: delayed, array, dataframe
    "update_graph_delayed": update_graphs[0],
    "update_graph_array": update_graphs[1],
    "update_graph_dataframe": update_graphs[2],
    "compute_task_tuple_keys": smallest(
        lambda r: only(r, "compute-task") and has_tuple_who_has(r)),
    # run_spec with out-of-band pickle-5 buffers; Python cut nosplit before them
    "compute_task_buffers": smallest(
        lambda r: only(r, "compute-task") and partial_nosplit(r)),
    "task_finished_tuple_key": smallest(
        lambda r: only(r, "task-finished") and isinstance(items(r)[0]["key"], tuple)),
    "task_erred": first(erred_from_worker),
    "task_erred_to_client": first(
        lambda r: r["label"] == "sched" and r["dir"] == "s2c" and only(r, "task-erred")),
    "get_data_reply": reply_to(min(get_data, key=lambda r: size(reply_to(r)))),
    "get_data_reply_buffers": reply_to(max(get_data, key=lambda r: len(reply_to(r)["frame_lens"]))),
    "gather_reply_tuple_key": reply_to(gather_tuple),
    "update_data_scatter": first(
        lambda r: r["label"].startswith("worker") and only(r, "update_data")),
}

total = 0
for name, rec in chosen.items():
    shutil.copy(f"{RAW}/{rec['file']}", f"{OUT}/{name}.bin")
    n = 8 + 8 * len(rec["frame_lens"]) + size(rec) + 8
    total += n
    print(f"{name:32} {rec['file']:36} {n:6} bytes  frames={rec['frame_lens']}"
          f"{'  (partial nosplit)' if partial_nosplit(rec) else ''}")
print(f"total {total} bytes")
