//! The handshake both peers write before anything else (`distributed/comm/core.py:142-203`).

use crate::value::Value;

/// What rask says about itself. `compression: None` means no peer ever compresses the
/// frames it sends us, so rask never needs a decompressor; `pickle-protocol: 5` is what the
/// stock scheduler's listener answers too.
pub fn handshake() -> Value {
    Value::map([
        ("compression", Value::Nil),
        (
            "python",
            Value::Array(vec![Value::Int(3), Value::Int(11), Value::Int(7)]),
        ),
        ("pickle-protocol", Value::Int(5)),
    ])
}

/// Checks the peer's handshake. Dask raises "Your Dask versions may not be in sync" when
/// `pickle-protocol` is missing (`core.py:168-203`); we do the same.
pub fn check_peer_handshake(v: &Value) -> Result<(), String> {
    match v.get("pickle-protocol") {
        Some(p) if p.as_i64().is_some() => Ok(()),
        _ => Err(
            "handshake without 'pickle-protocol': your Dask versions may not be in sync"
                .to_string(),
        ),
    }
}
