//! The op table (`src/ops.rs`) against the handler tables of the stock scheduler
//! (`tests/data/dask_handlers_<release>.txt`, one per release rask serves): every op Dask's
//! scheduler answers in any of these releases appears in rask's table, served or refused
//! with a reason; rask's table has nothing that none of them has, but the protocol-level
//! `close` and `close-stream`; and the tables stay sorted, which lookups rely on.

use rask_server::ops::{self, Op, Serve};
use std::collections::BTreeSet;

/// Each release's handler list: the tested one (2026.8.0), the older tested ones
/// (`rask_protocol::TESTED_OLDER_DISTRIBUTED`), and the releases between them, whose ops
/// rask serves too.
const RELEASES: [(&str, &str); 6] = [
    ("2026.8.0", include_str!("data/dask_handlers_2026.8.0.txt")),
    ("2026.7.1", include_str!("data/dask_handlers_2026.7.1.txt")),
    ("2026.6.0", include_str!("data/dask_handlers_2026.6.0.txt")),
    ("2026.3.0", include_str!("data/dask_handlers_2026.3.0.txt")),
    ("2026.1.3", include_str!("data/dask_handlers_2026.1.3.txt")),
    (
        "2025.12.0",
        include_str!("data/dask_handlers_2025.12.0.txt"),
    ),
];

/// The op names of one `## <title>` section of one release's handler list.
fn section_of(text: &str, title: &str) -> BTreeSet<String> {
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

/// The op names of one section over every release rask serves.
fn section(title: &str) -> BTreeSet<String> {
    RELEASES
        .iter()
        .flat_map(|(_, text)| section_of(text, title))
        .collect()
}

#[test]
fn every_op_of_every_tested_release_is_in_the_table() {
    let tested: Vec<&str> = std::iter::once(rask_protocol::TESTED_DISTRIBUTED)
        .chain(rask_protocol::TESTED_OLDER_DISTRIBUTED.iter().copied())
        .collect();
    for release in &tested {
        let Some((_, text)) = RELEASES.iter().find(|(r, _)| r == release) else {
            panic!("no handler list for the tested release {release}");
        };
        let rpcs = names(&[ops::RPC]);
        let streams = names(&[ops::CLIENT_STREAM, ops::WORKER_STREAM]);
        let missing: Vec<_> = section_of(text, "Scheduler.handlers")
            .into_iter()
            .filter(|op| !rpcs.contains(op))
            .chain(
                section_of(text, "Scheduler.stream_handlers")
                    .into_iter()
                    .filter(|op| !streams.contains(op)),
            )
            .collect();
        assert!(
            missing.is_empty(),
            "ops of distributed {release} missing from the tables: {missing:?}"
        );
    }
    // the op only older releases have, served
    let wait_flush = ops::rpc_op("publish_wait_flush").expect("publish_wait_flush");
    assert!(wait_flush.supported());
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
    assert_eq!(ops::RPC.len(), 95);
    assert_eq!(refused, ["amm_handler", "connection_stream"]);
    assert!(ops::CLIENT_STREAM
        .iter()
        .chain(ops::WORKER_STREAM)
        .all(Op::supported));
}
