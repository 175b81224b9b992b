//! The crate's error type.

use crate::digest::Digest;

/// Result alias used across bkcache-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in bkcache-core, and in the stores that speak its traits.
///
/// Messages name what was wrong and what is allowed. No variant ever carries a secret:
/// attribute values of secret attributes are redacted before they reach an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string is not `sha256:` followed by 64 lowercase hex characters.
    #[error("invalid digest {value:?}: expected \"sha256:\" followed by 64 lowercase hex characters")]
    InvalidDigest {
        /// The rejected text (truncated to 100 characters).
        value: String,
    },
    /// A time string is not RFC 3339.
    #[error("invalid time {value:?}: expected RFC 3339 with optional fraction, e.g. 2024-01-02T03:04:05.123Z")]
    InvalidTime {
        /// The rejected text.
        value: String,
    },
    /// JSON that could not be decoded.
    #[error("{what} is not valid JSON of the expected shape: {source}")]
    Json {
        /// What was being decoded, e.g. `cache config sha256:…`.
        what: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A cache config that decodes but breaks BuildKit's rules (loops, bad indexes, empty inputs).
    #[error("invalid cache config: {reason}")]
    InvalidConfig {
        /// What is wrong, with the offending index.
        reason: String,
    },
    /// A manifest, index or manifest list that is not a cache BuildKit can import.
    #[error("invalid cache manifest {what}: {reason}")]
    InvalidManifest {
        /// Which blob.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A `--cache-from`/`--cache-to` string that cannot be parsed.
    #[error("invalid cache option {input:?}: {reason}")]
    Spec {
        /// The option string (secret values redacted).
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// `type=` names a backend nobody registered.
    #[error("unknown cache type {kind:?}; known types: {known}")]
    UnknownType {
        /// The requested type.
        kind: String,
        /// The registered types, comma separated.
        known: String,
    },
    /// An attribute the backend does not know in this direction.
    #[error("unknown attribute {attribute:?} for type={kind} {direction}; allowed: {allowed}")]
    UnknownAttribute {
        /// Backend type.
        kind: String,
        /// The attribute.
        attribute: String,
        /// `import (--from)` or `export (--to)`.
        direction: String,
        /// The allowed attributes, comma separated.
        allowed: String,
    },
    /// An attribute value that is not allowed.
    #[error("invalid value {value:?} for attribute {attribute:?}: {allowed}")]
    InvalidValue {
        /// The attribute.
        attribute: String,
        /// The value (or `<redacted>` for secrets).
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A required attribute is missing.
    #[error("type={kind} {direction} requires attribute {attribute:?}: {hint}")]
    MissingAttribute {
        /// Backend type.
        kind: String,
        /// The attribute.
        attribute: String,
        /// `import (--from)` or `export (--to)`.
        direction: String,
        /// What to set.
        hint: String,
    },
    /// Two options that cannot be combined.
    #[error("invalid combination: {reason}")]
    InvalidCombination {
        /// What conflicts and how to fix it.
        reason: String,
    },
    /// Blob bytes that do not hash to their digest, or have the wrong size.
    #[error("blob {digest} is corrupt: expected {expected_size} bytes, got {actual_size} bytes with digest {actual}")]
    DigestMismatch {
        /// The digest the blob was expected to have.
        digest: Digest,
        /// The size the descriptor gives.
        expected_size: u64,
        /// The digest of what was read (or `(stopped early)` when it was longer than expected).
        actual: String,
        /// How many bytes were read.
        actual_size: u64,
    },
    /// A blob is not where the cache says it is.
    #[error("blob {digest} not found in {location}")]
    BlobNotFound {
        /// The blob.
        digest: Digest,
        /// Where it was looked for (no secrets).
        location: String,
    },
    /// A blob that is too large for the place it is read into memory (manifests, configs).
    #[error("{what} is too large: {size} bytes > limit {limit}")]
    TooLarge {
        /// Which blob.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The store cannot do this (e.g. list blobs on a write-only backend).
    #[error("{location}: {operation} is not supported by this backend")]
    Unsupported {
        /// The store.
        location: String,
        /// What was asked.
        operation: String,
    },
    /// A cache that is not where the caller expected it.
    #[error("no cache found at {location}{hint}")]
    CacheNotFound {
        /// The store.
        location: String,
        /// Extra hint, e.g. the tags present (starts with `; ` when non-empty).
        hint: String,
    },
    /// File-system or stream I/O.
    #[error("{location}: {operation} failed: {source}")]
    Io {
        /// Path or store.
        location: String,
        /// What was being done.
        operation: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A backend-specific failure (network, server answer, credentials). Backends wrap their own
    /// error enum here; its text must already be free of secrets.
    #[error("{backend}: {source}")]
    Backend {
        /// Backend type name.
        backend: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Credentials refused, missing, or without the permission asked for (HTTP 401/403, S3
    /// `AccessDenied`, Azure `AuthenticationFailed`, a gha token without a write scope).
    /// Backends wrap their own error here instead of in [`Error::Backend`], so callers can tell
    /// "fix the credential" from "try again" (the CLI's exit code 6).
    #[error("{backend}: {source}")]
    Denied {
        /// Backend type name.
        backend: String,
        /// The backend's error (its text free of secrets).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Every `--from` failed or was empty.
    #[error("nothing to copy: {reason}")]
    NothingToCopy {
        /// Why, with the per-source warnings.
        reason: String,
    },
    /// A prune whose plan would leave a tag or the whole location without cache, refused with
    /// nothing changed.
    #[error("{location}: refusing to prune: {reason}; nothing was changed (allow it with --allow-empty)")]
    WouldEmpty {
        /// The store.
        location: String,
        /// What would be emptied, and by which rule.
        reason: String,
    },
    /// Every source of a copy is absent (a first run): no cache anywhere, nothing broken.
    #[error("no cache to copy: {reason}")]
    NoSourceCache {
        /// Each source and that it has no cache.
        reason: String,
    },
    /// The engine was asked for something a later issue adds.
    #[error("{feature} is not implemented yet in bkcache")]
    NotImplemented {
        /// What.
        feature: String,
    },
}

impl Error {
    /// A backend's own error: [`Error::Denied`] when `denied` (a credential refused or without
    /// the permission asked for), else [`Error::Backend`].
    pub fn from_backend(backend: &str, source: impl std::error::Error + Send + Sync + 'static, denied: bool) -> Self {
        let (backend, source) = (backend.to_owned(), Box::new(source));
        if denied {
            Error::Denied { backend, source }
        } else {
            Error::Backend { backend, source }
        }
    }

    /// This error and its sources, one message ([`chain_text`]).
    pub fn chain(&self) -> String {
        chain_text(self)
    }

    /// An [`Error::Io`] with its context.
    pub fn io(location: impl Into<String>, operation: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            location: location.into(),
            operation: operation.into(),
            source,
        }
    }

    /// An [`Error::InvalidConfig`].
    pub fn config(reason: impl Into<String>) -> Self {
        Error::InvalidConfig { reason: reason.into() }
    }

    /// Whether this error means "the thing is not there" (as opposed to broken).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::BlobNotFound { .. } | Error::CacheNotFound { .. })
    }

    /// Whether the same operation, started again, may succeed: an I/O error (here or in a
    /// backend error's source chain) of a broken or timed-out connection, or of a stream cut
    /// short. Stores add what their own errors know (an HTTP 503, say) in
    /// [`crate::CacheStore::is_transient`].
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io { source, .. } => chain_is_transient(source),
            Error::Backend { source, .. } => chain_is_transient(source.as_ref()),
            _ => false,
        }
    }

    /// For a backend's [`crate::CacheStore::is_transient`]: its own rule `own` when this wraps
    /// its error type `E`, else [`Error::is_transient`].
    pub fn is_transient_by<E: std::error::Error + 'static>(&self, own: impl Fn(&E) -> bool) -> bool {
        match self {
            Error::Backend { source, .. } => source.downcast_ref::<E>().map_or_else(|| self.is_transient(), own),
            _ => self.is_transient(),
        }
    }
}

/// An error and its sources, `: `-separated, each source only when its text is not already in
/// what came before (clients' top-level messages often leave out causes such as "Connection
/// refused"). The one error-chain formatter of every crate; backends scrub the result.
pub fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut s = error.to_string();
    let mut src = error.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

/// Whether `error` or any error in its source chain is an I/O error of a broken or timed-out
/// connection or of a stream cut short (for backends that flatten a client's error to text and
/// want to keep this one fact).
pub fn chain_is_transient(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend error that keeps its client's error as a source.
    #[derive(Debug, thiserror::Error)]
    #[error("upload failed")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn transient_means_a_broken_connection_anywhere_in_the_chain() {
        let io = |kind| std::io::Error::new(kind, "x");
        assert!(Error::io("blob", "read", io(std::io::ErrorKind::ConnectionReset)).is_transient());
        assert!(Error::io("blob", "read", io(std::io::ErrorKind::UnexpectedEof)).is_transient());
        assert!(!Error::io("blob", "write", io(std::io::ErrorKind::PermissionDenied)).is_transient());
        let backend = |kind| Error::Backend {
            backend: "test".into(),
            source: Box::new(Wrapped(io(kind))),
        };
        assert!(backend(std::io::ErrorKind::TimedOut).is_transient());
        assert!(!backend(std::io::ErrorKind::NotFound).is_transient());
        let d = crate::Digest::of_bytes(b"x");
        let mismatch = Error::DigestMismatch {
            digest: d,
            expected_size: 1,
            actual: "(stopped early)".into(),
            actual_size: 2,
        };
        assert!(
            !mismatch.is_transient(),
            "a wrong blob is not retried by the core's rule"
        );
    }
}
