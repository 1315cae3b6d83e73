//! Every op the table (`src/ops.rs`) marks as served is sent, by name, by at least one
//! in-process test of this directory (or by the harness on a test's behalf): a served op
//! without a test is a promise nobody checks.

use rask_server::ops;
use std::path::Path;

#[test]
fn every_served_op_is_sent_by_a_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut sources = String::new();
    for sub in [dir.clone(), dir.join("common")] {
        for entry in std::fs::read_dir(&sub).expect("tests/") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // the table's own checks and this file name every op without sending it
            if path.extension().is_some_and(|e| e == "rs")
                && name != "ops.rs"
                && name != "coverage.rs"
            {
                sources.push_str(&std::fs::read_to_string(&path).expect("source"));
            }
        }
    }
    let untested: Vec<&str> = ops::RPC
        .iter()
        .chain(ops::CLIENT_STREAM)
        .chain(ops::WORKER_STREAM)
        .chain(ops::CONNECTION)
        .filter(|op| op.supported())
        .map(|op| op.name)
        .filter(|name| !sources.contains(&format!("\"{name}\"")))
        .collect();
    assert!(
        untested.is_empty(),
        "served ops no test sends: {untested:?}"
    );
}
