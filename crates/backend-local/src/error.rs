use std::path::PathBuf;

/// Failures specific to the local layout; they reach callers wrapped in
/// [`bkcache_core::Error::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// Another process holds `index.json.lock`.
    #[error("could not lock {path}: another export to this directory is running (waited {waited_secs} s)")]
    LockBusy {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited_secs: u64,
    },
    /// The existing `index.json` cannot be parsed; we refuse to overwrite it.
    #[error("existing {path} is not a valid OCI index ({reason}); refusing to overwrite it: move it away or pick another dest")]
    ExistingIndexInvalid {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// The tag points at a plain image, not a cache.
    #[error("{path}: tag {tag:?} points at an image without a BuildKit cache (no cache config, no inline cache in its config)")]
    PlainImage {
        /// The layout.
        path: PathBuf,
        /// The tag.
        tag: String,
    },
}

impl From<LocalError> for bkcache_core::Error {
    fn from(e: LocalError) -> Self {
        bkcache_core::Error::from_backend("local", e, false)
    }
}
