/// Failures specific to the GitHub Actions cache store; they reach callers wrapped in
/// [`bkcache_core::Error::Backend`]. No variant carries the runtime token, the `ghtoken` or the
/// signature of a signed URL: URLs lose their query string, and server text is scrubbed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GhaError {
    /// The runtime token cannot be used (not a JWT, no `ac` claim, expired, …).
    #[error("the runtime token from {origin} is not usable: {reason}")]
    Token {
        /// Where the token came from: `attribute token` or `ACTIONS_RUNTIME_TOKEN`.
        origin: String,
        /// What is wrong (never the token itself).
        reason: String,
    },
    /// An export with a token whose `ac` claim grants no write permission.
    #[error(
        "the runtime token grants no write scope (its ac claim lists {scopes}); writing to the GitHub Actions cache \
         needs a scope with permission 2 (write), which jobs get for their own ref: use the job's \
         ACTIONS_RUNTIME_TOKEN, not one from a workflow with read-only cache access (e.g. a pull request from a fork)"
    )]
    NoWriteScope {
        /// The scopes the token lists, with their permissions.
        scopes: String,
    },
    /// The service could not be reached.
    #[error("{operation}: cannot reach {url}: {reason}")]
    Connect {
        /// What was being done.
        operation: String,
        /// The URL (no query string).
        url: String,
        /// The transport error.
        reason: String,
    },
    /// An unexpected HTTP answer.
    #[error("{operation}: {url} answered HTTP {status}{body}")]
    Status {
        /// What was being done.
        operation: String,
        /// The URL (no query string).
        url: String,
        /// HTTP status.
        status: u16,
        /// `: ` and the start of the response body (scrubbed), or empty.
        body: String,
    },
    /// The service kept answering 429 for longer than the `timeout=` budget.
    #[error(
        "{operation}: {url} kept answering HTTP 429 (rate limited) for {waited_secs}s over {attempts} attempts, \
         more than timeout={timeout}; the GitHub Actions cache limits how many entries a repository creates per \
         minute: retry later, or raise timeout="
    )]
    RateLimited {
        /// What was being done.
        operation: String,
        /// The URL (no query string).
        url: String,
        /// Seconds spent waiting.
        waited_secs: u64,
        /// Attempts made.
        attempts: u32,
        /// The budget, as given.
        timeout: String,
    },
    /// The service answered, but refused (`ok: false`, an error message).
    #[error("{operation}: the cache service refused: {reason}")]
    Refused {
        /// What was being done.
        operation: String,
        /// The service's message (scrubbed).
        reason: String,
    },
    /// An answer that breaks the protocol.
    #[error("{operation}: {reason}")]
    Protocol {
        /// What was being done.
        operation: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<GhaError> for bkcache_core::Error {
    fn from(e: GhaError) -> Self {
        // Credentials refused or lacking a permission: fix the credential, do not retry.
        let denied = matches!(e, GhaError::NoWriteScope { .. } | GhaError::Token { .. });
        bkcache_core::Error::from_backend("gha", e, denied)
    }
}
