//! # bkcache-s3
//!
//! BuildKit `type=s3` cache store for bkcache, on `object_store`.
//!
//! **Status: placeholder.** This crate compiles and is published so the workspace layout and
//! the dependency rule (a backend depends on `bkcache-core` only) hold from the start; the
//! store itself lands with issue #4. Until then the `bkcache` CLI answers
//! `type=s3` with a clear "not supported yet" error.
//!
//! ```
//! assert_eq!(bkcache_s3::TYPE_NAME, "s3");
//! ```

/// The `type=` value this crate will serve.
pub const TYPE_NAME: &str = "s3";

/// The core crate this backend builds on (re-exported for users who pick this crate alone).
pub use bkcache_core as core;
