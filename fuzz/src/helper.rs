//! The `helper_reply` target's input: a graph helper's messages for one `update_graph`
//! (`{"chunk": [record…]}` messages, then the final reply; `python/rask_graph_helper.py`),
//! either as raw msgpack or generated from the bytes so that most records are nearly
//! well formed and reach ordering.

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use rask_protocol::msgpack::decode_value;
use rask_protocol::Value;
use rask_server::ordering;
use rask_server::translate::records::{add_records, Records};

/// Input: `[mode] rest…`. Even `mode`: `rest` drives [`generate`]. Odd `mode`: `rest` is
/// msgpack, as the helper's length-prefixed messages are decoded (`helper.rs`,
/// `read_reply`): an array is the sequence of messages, anything else the final reply.
pub fn messages(data: &[u8]) -> Vec<Value> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode & 1 == 0 {
        return generate(&mut Unstructured::new(rest)).unwrap_or_default();
    }
    match decode_value(Bytes::copy_from_slice(rest)) {
        Ok(Value::Array(msgs)) => msgs,
        Ok(v) => vec![v],
        Err(_) => Vec::new(),
    }
}

/// What `graph::materialize` does with the helper's messages, without the runtime: chunk
/// records become tasks as they arrive, the final reply's `tasks` too if its status is OK,
/// then rask-order gives them priorities (`order_off_runtime`, here on this thread).
/// Returns how many tasks came out ordered, or `None` if the graph failed.
pub fn process(msgs: Vec<Value>) -> Option<usize> {
    let (last, chunks) = msgs.split_last()?;
    let mut streamed = Ok(Records::default());
    for chunk in chunks {
        add_records(&mut streamed, chunk.get("chunk"));
    }
    if last.get("status").and_then(Value::as_str) != Some("OK") {
        // the error path only forwards bytes and a str; nothing in it can fail
        return None;
    }
    add_records(&mut streamed, last.get("tasks"));
    let mut r = streamed.ok()?;
    assert_eq!(
        r.tasks.len(),
        r.order.len(),
        "records and ordering info differ"
    );
    ordering::assign(&mut r.tasks, &r.order).ok()?;
    Some(r.tasks.len())
}

/// Names that keys are drawn from: few, so that dependencies hit other records' keys
/// (shared deps, duplicates, cycles) and external keys alike.
const NAMES: [&str; 6] = ["a", "b", "c", "d", "shuffle-barrier-x", "x"];

/// The helper's messages for one graph: 0-3 chunks, then a reply that is `OK` most times.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<Value>> {
    let mut msgs = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        msgs.push(Value::map([("id", Value::Int(1)), ("chunk", records(u)?)]));
    }
    let status = if u.ratio(1, 16)? {
        any_value(u, 1)?
    } else {
        Value::from("OK")
    };
    let mut reply = vec![
        ("id", Value::Int(1)),
        ("status", status),
        ("tasks", records(u)?),
    ];
    if u.ratio(1, 4)? {
        reply.push(("timings", Value::map([("total_s", any_value(u, 0)?)])));
    }
    msgs.push(Value::map(reply));
    Ok(msgs)
}

fn records(u: &mut Unstructured<'_>) -> Result<Value> {
    if u.ratio(1, 32)? {
        return any_value(u, 2);
    }
    let n = u.int_in_range(0..=24)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(record(u)?);
    }
    Ok(Value::Array(out))
}

/// One record with the fields the helper writes, each usually of the right type, sometimes
/// missing or anything at all.
fn record(u: &mut Unstructured<'_>) -> Result<Value> {
    if u.ratio(1, 64)? {
        return any_value(u, 2);
    }
    let mut rec: Vec<(&str, Value)> = Vec::new();
    if !u.ratio(1, 32)? {
        rec.push(("key", key(u)?));
    }
    let deps = if u.ratio(1, 32)? {
        any_value(u, 1)?
    } else {
        let n = u.int_in_range(0..=7)?;
        Value::Array((0..n).map(|_| key(u)).collect::<Result<_>>()?)
    };
    rec.push(("deps", deps));
    let run_spec = if u.ratio(1, 32)? {
        any_value(u, 0)?
    } else {
        Value::Bin(Bytes::from_static(b"\x80\x05N."))
    };
    rec.push(("run_spec", run_spec));
    let kind = match u.int_in_range(0..=4)? {
        0 => Value::from("DataNode"),
        1 => Value::from("Alias"),
        2 => any_value(u, 0)?,
        _ => Value::from("Task"),
    };
    rec.push(("kind", kind));
    if u.ratio(1, 3)? {
        rec.push(("order", int_ish(u)?));
    }
    if u.ratio(3, 4)? {
        rec.push(("hash", int_ish(u)?));
    }
    if u.ratio(1, 4)? {
        let table = match u.int_in_range(0..=3)? {
            0 => Value::Int(1 << u.int_in_range(0..=40)?),
            1 => Value::Int(8),
            _ => int_ish(u)?,
        };
        rec.push(("deps_table", table));
    }
    if u.ratio(1, 2)? {
        rec.push(("prefix", str_ish(u)?));
    }
    match u.int_in_range(0..=5)? {
        0 => rec.push(("annotations", any_value(u, 2)?)),
        1 => rec.push(("annotations_pickled", any_value(u, 0)?)),
        _ => {}
    }
    if u.ratio(1, 3)? {
        rec.push(("restrictions", restrictions(u)?));
    }
    // the decoder keeps duplicate map keys; `Value::get` takes the first
    if u.ratio(1, 32)? {
        rec.push(("key", key(u)?));
    }
    Ok(Value::map(rec))
}

fn restrictions(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut r: Vec<(&str, Value)> = Vec::new();
    if u.ratio(1, 2)? {
        let workers = match u.int_in_range(0..=2)? {
            0 => str_ish(u)?,
            1 => any_value(u, 1)?,
            _ => Value::Array(vec![str_ish(u)?, str_ish(u)?]),
        };
        r.push(("workers", workers));
    }
    if u.ratio(1, 2)? {
        r.push(("allow_other_workers", any_value(u, 0)?));
    }
    if u.ratio(1, 2)? {
        let resources = if u.ratio(1, 2)? {
            Value::Map(vec![(str_ish(u)?, any_value(u, 0)?)])
        } else {
            any_value(u, 1)?
        };
        r.push(("resources", resources));
    }
    if u.ratio(1, 2)? {
        r.push(("retries", int_ish(u)?));
    }
    if u.ratio(1, 2)? {
        r.push(("priority", any_value(u, 0)?));
    }
    Ok(Value::map(r))
}

/// A task key: usually one of a few names (as a str, an int or a tuple), sometimes any value.
fn key(u: &mut Unstructured<'_>) -> Result<Value> {
    let name = Value::from(*u.choose(&NAMES)?);
    Ok(match u.int_in_range(0..=9)? {
        0..=5 => name,
        6 => Value::Int(u.int_in_range(-2..=2)?),
        7 => Value::Array(vec![name, Value::Int(u.int_in_range(0..=2)?)]),
        8 => Value::Float(f64::from(u.int_in_range(0..=2)?) + 0.5),
        _ => any_value(u, 2)?,
    })
}

/// An integer near the edges that matter (0, ±1, i32/u32/i64 limits) or any `i64`/`u64`.
fn int_ish(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=5)? {
        0 => Value::Int(u.int_in_range(-2..=64)?),
        1 => Value::Int(*u.choose(&[
            i64::MIN,
            i64::MAX,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            i64::from(u32::MAX),
            1 << 32,
        ])?),
        2 => Value::UInt(u.arbitrary()?),
        3 => any_value(u, 0)?,
        _ => Value::Int(u.arbitrary()?),
    })
}

fn str_ish(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(if u.ratio(1, 2)? {
        Value::from(*u.choose(&NAMES)?)
    } else {
        Value::from(u.arbitrary::<String>()?)
    })
}

/// Any msgpack value a helper could send, nested up to `depth` containers.
fn any_value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 7 } else { 9 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Nil,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Int(u.arbitrary()?),
        3 => Value::UInt(u.arbitrary()?),
        4 => Value::Float(u.arbitrary()?),
        5 => Value::from(u.arbitrary::<String>()?),
        6 => Value::Bin(Bytes::from(u.arbitrary::<Vec<u8>>()?)),
        7 => Value::from(*u.choose(&NAMES)?),
        8 => {
            let n = u.int_in_range(0..=3)?;
            Value::Array(
                (0..n)
                    .map(|_| any_value(u, depth - 1))
                    .collect::<Result<_>>()?,
            )
        }
        _ => {
            let n = u.int_in_range(0..=3)?;
            Value::Map(
                (0..n)
                    .map(|_| Ok((any_value(u, depth - 1)?, any_value(u, depth - 1)?)))
                    .collect::<Result<_>>()?,
            )
        }
    })
}
