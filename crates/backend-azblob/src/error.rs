//! The backend's own errors; they reach callers wrapped in [`bkcache_core::Error::Backend`].

/// Failures specific to the Azure Blob store. No variant carries a key, a SAS token or a
/// token: messages hold locations, operations, Azure error codes and hints only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AzblobError {
    /// 401/403: the credentials were refused.
    #[error("{location}: {operation}: authentication failed ({detail}); credentials from {source_name}: check the key or SAS token and account_name{hint}")]
    Auth {
        /// The store.
        location: String,
        /// What was being done.
        operation: String,
        /// Azure's error code or status (no secret).
        detail: String,
        /// Where the credentials came from (an attribute or variable name).
        source_name: String,
        /// Extra advice (starts with `; ` when non-empty).
        hint: String,
    },
    /// Any other failed request (network, server error, unexpected answer).
    #[error("{location}: {operation} failed: {reason}")]
    Request {
        /// The store.
        location: String,
        /// What was being done.
        operation: String,
        /// The client's or server's message (no secret).
        reason: String,
        /// The connection broke (reset, timeout, cut short): sending again may succeed.
        transient: bool,
    },
    /// The HTTP client or credential could not be set up.
    #[error("cannot set up the Azure client for {location}: {reason}")]
    Client {
        /// The store.
        location: String,
        /// Why.
        reason: String,
    },
}

impl AzblobError {
    /// A request whose connection broke ([`AzblobError::Request`] with `transient`).
    pub fn is_transient(&self) -> bool {
        matches!(self, AzblobError::Request { transient: true, .. })
    }
}

impl From<AzblobError> for bkcache_core::Error {
    fn from(e: AzblobError) -> Self {
        // Credentials refused or lacking a permission: fix the credential, do not retry.
        let denied = matches!(e, AzblobError::Auth { .. });
        bkcache_core::Error::from_backend("azblob", e, denied)
    }
}
