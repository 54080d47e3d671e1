//! Small helpers shared by the modules: clocks, JSON field access, ids, lock handling.

use std::sync::{Mutex, MutexGuard};

use rand::Rng;
use serde_json::Value;

/// Milliseconds since the Unix epoch (BigQuery's unit for creationTime & co.).
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Locks a mutex, ignoring poisoning: every critical section of the emulator either completes a swap or
/// leaves the protected data untouched, so a panic elsewhere never leaves torn state behind.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `v[key]` as a string.
pub fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `v[key]` as a bool; BigQuery clients send real booleans, some tools send "true".
pub fn get_bool(v: &Value, key: &str) -> Option<bool> {
    match v.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `v[key]` as an i64; int64 fields arrive as JSON strings (per the discovery doc) or numbers.
pub fn get_i64(v: &Value, key: &str) -> Option<i64> {
    value_i64(v.get(key)?)
}

/// A JSON value holding an int64 as a string or a number.
pub fn value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A query-string parameter as a bool (`true`/`1`).
pub fn param_bool(v: Option<&String>) -> bool {
    matches!(
        v.map(String::as_str),
        Some("true") | Some("1") | Some("True")
    )
}

/// A random identifier made of lowercase letters and digits.
pub fn random_id(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// An etag-looking string, so clients that read `etag` find one.
pub fn etag(seed: i64) -> String {
    format!("{seed:016x}")
}
