/// Failures specific to the registry and inline stores; they reach callers wrapped in
/// [`bkcache_core::Error::Backend`]. No variant carries a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// `ref=` is not a valid image reference.
    #[error("invalid ref {reference:?}: {reason}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry could not be reached.
    #[error("cannot reach {url}: {reason}")]
    Connect {
        /// The URL (no credentials).
        url: String,
        /// The transport error.
        reason: String,
    },
    /// 401/403 and no (working) credentials.
    #[error("{url}: access denied ({status}){hint}")]
    Unauthorized {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// What to do.
        hint: String,
    },
    /// Any other unexpected answer.
    #[error("{method} {url}: unexpected HTTP {status}: {body}")]
    Status {
        /// HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// A registry answer that breaks the protocol.
    #[error("{url}: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading credentials from the Docker config or a credential helper failed.
    #[error("credentials for {registry}: {reason}")]
    Credentials {
        /// Registry host.
        registry: String,
        /// What failed (never the secret itself).
        reason: String,
    },
    /// TLS setup failed (bad CA file, …).
    #[error("TLS setup: {reason}")]
    Tls {
        /// What failed.
        reason: String,
    },
    /// The image cannot carry an inline cache export.
    #[error("inline export to {reference}: {reason}")]
    Inline {
        /// The image.
        reference: String,
        /// Why.
        reason: String,
    },
}

impl RegistryError {
    /// A broken connection or an answer that says "try again" (408, 429, 5xx): the blob upload
    /// that got it may succeed when sent again (its body is one-shot, so the engine resends it).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Connect { .. } => true,
            RegistryError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }
}

impl From<RegistryError> for bkcache_core::Error {
    fn from(e: RegistryError) -> Self {
        // Credentials refused or lacking a permission: fix the credential, do not retry.
        let denied = matches!(e, RegistryError::Unauthorized { .. });
        bkcache_core::Error::from_backend("registry", e, denied)
    }
}
