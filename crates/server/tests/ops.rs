//! The op table (`src/ops.rs`) against the handler tables of the stock scheduler
//! (`tests/data/dask_handlers_2026.8.0.txt`): every op Dask's scheduler answers appears in
//! rask's table, served or refused with a reason; rask's table has nothing Dask does not,
//! but the protocol-level `close` and `close-stream`; and the tables stay sorted, which
//! lookups rely on.

use rask_server::ops::{self, Op, Serve};
use std::collections::BTreeSet;

/// The op names of one `## <title>` section of the handler list.
fn section(title: &str) -> BTreeSet<String> {
    let text = include_str!("data/dask_handlers_2026.8.0.txt");
    let mut names = BTreeSet::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            inside = h.starts_with(title);
            continue;
        }
        if inside {
            if let Some(name) = line.split_whitespace().next() {
                if !name.starts_with('#') {
                    names.insert(name.to_string());
                }
            }
        }
    }
    assert!(
        !names.is_empty(),
        "no section {title:?} in the handler list"
    );
    names
}

fn names(tables: &[&[Op]]) -> BTreeSet<String> {
    tables
        .iter()
        .flat_map(|t| t.iter())
        .map(|op| op.name.to_string())
        .collect()
}

/// Ops of rask's tables that are not handlers but the end of a connection or stream.
const PROTOCOL_LEVEL: [&str; 2] = ["close", "close-stream"];

#[test]
fn every_rpc_of_the_stock_scheduler_is_in_the_table() {
    let dask = section("Scheduler.handlers");
    let rask = names(&[ops::RPC]);
    let missing: Vec<_> = dask.difference(&rask).collect();
    assert!(
        missing.is_empty(),
        "RPCs missing from ops::RPC: {missing:?}"
    );
    let extra: Vec<_> = rask.difference(&dask).collect();
    assert!(
        extra.is_empty(),
        "ops::RPC has ops Dask's scheduler does not: {extra:?}"
    );
}

#[test]
fn every_stream_op_of_the_stock_scheduler_is_in_a_stream_table() {
    let dask = section("Scheduler.stream_handlers");
    let rask = names(&[ops::CLIENT_STREAM, ops::WORKER_STREAM]);
    let missing: Vec<_> = dask.difference(&rask).collect();
    assert!(
        missing.is_empty(),
        "stream ops missing from the tables: {missing:?}"
    );
    let extra: Vec<_> = rask
        .difference(&dask)
        .filter(|op| !PROTOCOL_LEVEL.contains(&op.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "stream ops Dask's scheduler does not have: {extra:?}"
    );
}

#[test]
fn tables_are_sorted_and_lookups_find_every_entry() {
    for table in [
        ops::RPC,
        ops::CLIENT_STREAM,
        ops::WORKER_STREAM,
        ops::CONNECTION,
    ] {
        for pair in table.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} must come before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for op in table {
            let found = ops::find(table, op.name).map(|o| o.name);
            assert_eq!(found, Some(op.name));
        }
    }
    assert!(ops::rpc_op("close").is_some());
    assert!(ops::rpc_op("no-such-op").is_none());
}

#[test]
fn every_refusal_says_why() {
    for op in ops::RPC
        .iter()
        .chain(ops::CLIENT_STREAM)
        .chain(ops::WORKER_STREAM)
    {
        if let Serve::NotSupported(reason) = op.serve {
            assert!(reason.len() > 20, "{}: {reason:?} is no reason", op.name);
        }
    }
}

/// The counts the closing note of the reshaping quotes; they change when an op is served.
#[test]
fn supported_and_refused_counts() {
    let refused: Vec<&str> = ops::RPC
        .iter()
        .filter(|o| !o.supported())
        .map(|o| o.name)
        .collect();
    assert_eq!(ops::RPC.len(), 94);
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(ops::CLIENT_STREAM
        .iter()
        .chain(ops::WORKER_STREAM)
        .all(Op::supported));
}
