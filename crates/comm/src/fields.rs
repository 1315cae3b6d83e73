//! Reading the fields of a Dask message (a msgpack dict) with the types Dask sends: the
//! first thing every receiver of network input does, so a wrong or missing field becomes a
//! [`FieldError`] naming it, never a panic.

use rask_protocol::{Key, Value};
use std::sync::Arc;

/// A field that is missing or of the wrong type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FieldError {
    /// A required field is absent.
    #[error("missing field {0:?}")]
    Missing(Box<str>),
    /// The field holds another type than Dask sends there.
    #[error("field {field:?} must be {expected}, not {got}")]
    Wrong {
        /// the field's name
        field: Box<str>,
        /// what Dask sends, e.g. "a str"
        expected: &'static str,
        /// the Python type name of what came
        got: &'static str,
    },
}

fn wrong(field: &str, expected: &'static str, got: &Value) -> FieldError {
    FieldError::Wrong {
        field: field.into(),
        expected,
        got: got.type_name(),
    }
}

/// A required field.
pub fn field<'a>(msg: &'a Value, name: &str) -> Result<&'a Value, FieldError> {
    msg.get(name)
        .ok_or_else(|| FieldError::Missing(name.into()))
}

/// A required string field.
pub fn str_field(msg: &Value, name: &str) -> Result<Arc<str>, FieldError> {
    match field(msg, name)? {
        Value::Str(s) => Ok(s.clone()),
        other => Err(wrong(name, "a str", other)),
    }
}

/// An optional string field (missing or None -> None).
pub fn opt_str(msg: &Value, name: &str) -> Result<Option<Arc<str>>, FieldError> {
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong(name, "a str", other)),
    }
}

/// A required integer field.
pub fn int_field(msg: &Value, name: &str) -> Result<i64, FieldError> {
    let v = field(msg, name)?;
    v.as_i64().ok_or_else(|| wrong(name, "an int", v))
}

/// A required key field.
pub fn key_field(msg: &Value, name: &str) -> Result<Key, FieldError> {
    let v = field(msg, name)?;
    Key::from_value(v).ok_or_else(|| wrong(name, "a task key", v))
}

/// A list of keys (None or missing -> empty).
pub fn keys_field(msg: &Value, name: &str) -> Result<Vec<Key>, FieldError> {
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(Vec::new()),
        Some(v) => keys_of(v, name),
    }
}

/// A value that must be a list of keys; `name` is the field it came from, for the error.
pub fn keys_of(v: &Value, name: &str) -> Result<Vec<Key>, FieldError> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|k| Key::from_value(k).ok_or_else(|| wrong(name, "a list of task keys", k)))
            .collect(),
        other => Err(wrong(name, "a list of task keys", other)),
    }
}

/// A list of strings, or one string (None or missing -> None).
pub fn opt_str_list(msg: &Value, name: &str) -> Result<Option<Vec<Arc<str>>>, FieldError> {
    match msg.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.clone()),
                other => Err(wrong(name, "a list of str", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(wrong(name, "a list of str", other)),
    }
}

/// A required field that must be a list.
pub fn list_field<'a>(msg: &'a Value, name: &str) -> Result<&'a [Value], FieldError> {
    match field(msg, name)? {
        Value::Array(items) => Ok(items),
        other => Err(wrong(name, "a list", other)),
    }
}

/// A required field that must be a dict.
pub fn map_field<'a>(msg: &'a Value, name: &str) -> Result<&'a [(Value, Value)], FieldError> {
    match field(msg, name)? {
        Value::Map(entries) => Ok(entries),
        other => Err(wrong(name, "a dict", other)),
    }
}

/// A required field that must be bytes (a pickle).
pub fn bytes_field(msg: &Value, name: &str) -> Result<bytes::Bytes, FieldError> {
    match field(msg, name)? {
        Value::Bin(b) => Ok(b.clone()),
        other => Err(wrong(name, "bytes", other)),
    }
}

/// An optional boolean-ish field, read as Python's `bool(x)`; `default` when missing.
pub fn flag(msg: &Value, name: &str, default: bool) -> bool {
    msg.get(name).map_or(default, Value::truthy)
}

/// Dask's `parse_timedelta`: `"60s"`, `"100 ms"`, `"1 minute"` or a number of seconds.
pub fn parse_timedelta(v: &Value) -> Option<f64> {
    if let Some(f) = v.as_f64() {
        return Some(f);
    }
    let s = v.as_str()?.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = if num.is_empty() {
        1.0
    } else {
        num.trim().parse().ok()?
    };
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" | "millisecond" | "milliseconds" => 1e-3,
        "us" | "microsecond" | "microseconds" => 1e-6,
        "ns" | "nanosecond" | "nanoseconds" => 1e-9,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => return None,
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timedeltas() {
        assert_eq!(parse_timedelta(&Value::from("60s")), Some(60.0));
        assert_eq!(parse_timedelta(&Value::from("100 ms")), Some(0.1));
        assert_eq!(parse_timedelta(&Value::Int(2)), Some(2.0));
        assert_eq!(parse_timedelta(&Value::from("1 minute")), Some(60.0));
        assert_eq!(parse_timedelta(&Value::from("soon")), None);
    }

    #[test]
    fn wrong_and_missing_fields_are_named() {
        let msg = Value::map([("a", Value::Int(1)), ("ks", Value::from("x"))]);
        assert_eq!(
            str_field(&msg, "a").unwrap_err().to_string(),
            "field \"a\" must be a str, not int"
        );
        assert_eq!(
            int_field(&msg, "b").unwrap_err().to_string(),
            "missing field \"b\""
        );
        assert!(keys_field(&msg, "ks").is_err());
        assert_eq!(keys_field(&msg, "none").unwrap(), Vec::<Key>::new());
        assert_eq!(
            opt_str_list(&msg, "ks").unwrap(),
            Some(vec![Arc::from("x")])
        );
    }
}
