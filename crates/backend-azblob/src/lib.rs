//! # bkcache-azblob
//!
//! BuildKit `type=azblob` cache store for bkcache, on `object_store`.
//!
//! **Status: placeholder.** This crate compiles and is published so the workspace layout and
//! the dependency rule (a backend depends on `bkcache-core` only) hold from the start; the
//! store itself lands with issue #5. Until then the `bkcache` CLI answers
//! `type=azblob` with a clear "not supported yet" error.
//!
//! ```
//! assert_eq!(bkcache_azblob::TYPE_NAME, "azblob");
//! ```

/// The `type=` value this crate will serve.
pub const TYPE_NAME: &str = "azblob";

/// The core crate this backend builds on (re-exported for users who pick this crate alone).
pub use bkcache_core as core;
