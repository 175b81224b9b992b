//! [`Secret`]: a credential held as a value that is never formatted (`Debug` and `Display`
//! print `<redacted>`), so it cannot reach a log line, an error or JSON by accident.
//!
//! ```
//! use bkcache_core::Secret;
//! let key = Secret::new("s3cr3t");
//! assert_eq!(format!("{key:?} {key}"), "<redacted> <redacted>");
//! assert_eq!(key.expose(), "s3cr3t");
//! ```

use std::fmt;

/// A secret string (a key, a token, a SAS): only [`Secret::expose`] gives it out.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Hold `value` as a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
