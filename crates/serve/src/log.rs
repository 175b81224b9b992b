//! One line per upload, commit and refusal on stderr: words for people, or JSON lines with
//! `--json-log`. Only store locations (secret-free by core's invariant 5), digests, sizes and
//! timings are logged, never a request's `Authorization` or a store credential.

use serde_json::{Map, Value};

/// Where serve says what it did.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    json: bool,
}

impl Log {
    /// Human lines, or JSON lines when `json`.
    pub fn new(json: bool) -> Self {
        Log { json }
    }

    /// One event: `human` for people; `fields` (an object) for machines, with `event` added.
    pub fn event(&self, event: &str, fields: Value, human: &str) {
        if self.json {
            let mut map = match fields {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            map.insert("event".into(), event.into());
            map.insert("time".into(), bkcache_core::GoTime::now().to_string().into());
            eprintln!("{}", Value::Object(map));
        } else {
            eprintln!("bkcache serve: {human}");
        }
    }
}

/// Bytes for people: `12.3 MiB`.
pub use bkcache_core::inspect::human_bytes as bytes;
