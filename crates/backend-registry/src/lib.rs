//! # bkcache-registry
//!
//! BuildKit `type=registry` (and `type=inline`) cache store for bkcache: an OCI distribution registry client on `reqwest`.
//!
//! **Status: placeholder.** This crate compiles and is published so the workspace layout and
//! the dependency rule (a backend depends on `bkcache-core` only) hold from the start; the
//! store itself lands with issue #3. Until then the `bkcache` CLI answers
//! `type=registry` with a clear "not supported yet" error.
//!
//! ```
//! assert_eq!(bkcache_registry::TYPE_NAME, "registry");
//! ```

/// The `type=` value this crate will serve.
pub const TYPE_NAME: &str = "registry";

/// The core crate this backend builds on (re-exported for users who pick this crate alone).
pub use bkcache_core as core;
