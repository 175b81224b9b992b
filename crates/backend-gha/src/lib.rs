//! # bkcache-gha
//!
//! BuildKit `type=gha` cache store for bkcache: the GitHub Actions cache service, v2 (Twirp JSON) and v1 (REST).
//!
//! **Status: placeholder.** This crate compiles and is published so the workspace layout and
//! the dependency rule (a backend depends on `bkcache-core` only) hold from the start; the
//! store itself lands with issue #6. Until then the `bkcache` CLI answers
//! `type=gha` with a clear "not supported yet" error.
//!
//! ```
//! assert_eq!(bkcache_gha::TYPE_NAME, "gha");
//! ```

/// The `type=` value this crate will serve.
pub const TYPE_NAME: &str = "gha";

/// The core crate this backend builds on (re-exported for users who pick this crate alone).
pub use bkcache_core as core;
