//! The error replies of Dask's `error_message` (`distributed/core.py:1596-1640`): what a
//! Python handler that raised sends back, so the caller re-raises the same exception type.

use bytes::Bytes;
use rask_protocol::Value;

/// A scheduler-made exception, pickled (`builtins.<name>(message)`).
pub use rask_protocol::pickle::builtin_exception as pickled_exception;

/// The reply around a pickled exception: `status` is `"uncaught-error"` for a handler that
/// raised (the caller's `send_recv` raises it) or `"error"` for handlers that return errors
/// for the caller to inspect.
pub fn error_message(status: &str, exception: Bytes, exception_text: String) -> Value {
    Value::map([
        ("status", Value::from(status)),
        ("exception", Value::Bin(exception)),
        ("traceback", Value::Nil),
        ("exception_text", Value::from(exception_text)),
        ("traceback_text", Value::from("")),
    ])
}

/// What a Python handler raising `builtins.<kind>(message)` replies: the client re-raises
/// that exception type.
pub fn raised(kind: &str, message: &str) -> Value {
    error_message(
        "uncaught-error",
        pickled_exception(kind, message),
        format!("{kind}('{message}')"),
    )
}
