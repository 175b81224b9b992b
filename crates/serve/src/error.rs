//! The crate's error type, and the distribution spec's error responses.

use bkcache_core::Error as CoreError;
use hyper::StatusCode;

/// Result alias of bkcache-serve.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;

/// What can stop `bkcache serve` from starting or running. Request failures never end the
/// server: they become [`OciError`] responses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A `--store` template or option that cannot work; says what is allowed.
    #[error("{0}")]
    Config(String),
    /// A non-loopback listen address without client authentication.
    #[error("refusing to listen on {addr}: it is not a loopback address and no --htpasswd or --token-file was given (anyone who reaches it could read and overwrite the caches)")]
    Unauthenticated {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// A file serve needs (htpasswd, token, TLS certificate or key) that cannot be used.
    #[error("{what} {path}: {reason}")]
    File {
        /// What the file is for.
        what: &'static str,
        /// Its path.
        path: String,
        /// Why it cannot be used (never its contents).
        reason: String,
    },
    /// The listener could not be bound or accept failed for good.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An error of a store, at start-up (opening a `--store` template).
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// A distribution-spec error response: `{"errors":[{"code":…,"message":…}]}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciError {
    /// HTTP status.
    pub status: StatusCode,
    /// The spec's code, e.g. `BLOB_UNKNOWN`.
    pub code: &'static str,
    /// What was wrong (BuildKit prints it); never a credential.
    pub message: String,
}

impl OciError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        OciError {
            status,
            code,
            message: message.into(),
        }
    }

    /// `NAME_INVALID` (400).
    pub fn name_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "NAME_INVALID", message)
    }

    /// `DIGEST_INVALID` (400).
    pub fn digest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
    }

    /// `MANIFEST_INVALID` (400).
    pub fn manifest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
    }

    /// `SIZE_INVALID` (413): a body over a limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID", message)
    }

    /// `UNSUPPORTED` (405).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
    }

    /// `BLOB_UPLOAD_UNKNOWN` (404).
    pub fn upload_unknown(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            format!("upload {id} is unknown or expired; start a new one with POST"),
        )
    }

    /// The response body.
    pub fn body(&self) -> String {
        serde_json::json!({"errors": [{"code": self.code, "message": self.message}]}).to_string()
    }

    /// Map a store error; its text is credential-free (core's invariant 5).
    pub fn from_store(e: &CoreError) -> Self {
        let message = e.chain();
        match e {
            CoreError::BlobNotFound { .. } => Self::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", message),
            CoreError::CacheNotFound { .. } => Self::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", message),
            CoreError::DigestMismatch { .. } | CoreError::InvalidDigest { .. } => Self::digest_invalid(message),
            CoreError::TooLarge { .. } => Self::too_large(message),
            CoreError::Denied { .. } => Self::new(StatusCode::FORBIDDEN, "DENIED", message),
            CoreError::InvalidManifest { .. } | CoreError::InvalidConfig { .. } | CoreError::Json { .. } => {
                Self::manifest_invalid(message)
            }
            CoreError::Unsupported { .. } | CoreError::NotImplemented { .. } => Self::unsupported(message),
            _ if e.is_transient() => Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", message),
        }
    }
}

impl From<CoreError> for OciError {
    fn from(e: CoreError) -> Self {
        OciError::from_store(&e)
    }
}
