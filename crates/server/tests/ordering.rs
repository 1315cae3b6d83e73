//! rask's ordering of a graph the helper left unordered gives exactly the priorities
//! Python's `dask.order.order` gave the same graph in the same helper process
//! (`tests/data/ordering.msgpack`, made by `gen_ordering_fixture.py`).

use bytes::Bytes;
use rask_protocol::msgpack::decode_value;
use rask_protocol::Value;
use rask_server::ordering::assign;
use rask_server::translate::records::{new_task, order_info};

#[test]
fn rust_order_matches_dask_order_on_helper_records() {
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ordering.msgpack"
    ))
    .expect("fixture");
    let graphs = decode_value(Bytes::from(data)).expect("msgpack");
    let Value::Array(graphs) = graphs else {
        panic!("fixture is a list of graphs")
    };
    assert!(graphs.len() >= 7);
    for g in &graphs {
        let name = g.get("name").and_then(Value::as_str).expect("name");
        let Some(Value::Array(records)) = g.get("records") else {
            panic!("{name}: records")
        };
        let Some(Value::Array(expected)) = g.get("expected") else {
            panic!("{name}: expected")
        };
        let mut tasks: Vec<_> = records
            .iter()
            .map(|r| new_task(r).expect("record"))
            .collect();
        let info: Vec<_> = records.iter().map(order_info).collect();
        assign(&mut tasks, &info).expect("ordering");
        let got: Vec<i64> = tasks.iter().map(|t| t.order).collect();
        let want: Vec<i64> = expected.iter().map(|v| v.as_i64().expect("int")).collect();
        assert_eq!(got, want, "{name}: priorities differ from dask.order");
    }
}
