//! # bkcache-s3
//!
//! BuildKit's `type=s3` cache store for bkcache: Amazon S3 or any S3-compatible server (MinIO,
//! Ceph RGW, R2, moto), on [`object_store`]. It reads and writes the layout BuildKit's s3
//! exporter writes, so each imports what the other exported:
//!
//! ```text
//! <prefix><blobs_prefix><digest>        e.g. proj/blobs/sha256:3f1abbd8…   (layer blobs)
//! <prefix><manifests_prefix><name>      e.g. proj/manifests/main           (the cache config)
//! ```
//!
//! The cache config is stored as is (no OCI manifest), each `layers[]` entry carrying
//! `annotations` {mediaType, diffID, size, createdAt} ([`bkcache_core::annotated`]); a layer
//! without them gives BuildKit's import error.
//!
//! | attribute | direction | default | meaning |
//! |---|---|---|---|
//! | `bucket` | both | `$AWS_BUCKET`, else required | the bucket (must exist) |
//! | `region` | both | `$AWS_REGION`, else required | AWS region |
//! | `prefix` | both | `""` | key prefix, concatenated as-is |
//! | `blobs_prefix` | both | `blobs/` | blob keys: `<prefix><blobs_prefix><digest>` |
//! | `manifests_prefix` | both | `manifests/` | config keys: `<prefix><manifests_prefix><name>` |
//! | `name` | both | `buildkit` | names split on `;`: export writes each, import reads the first |
//! | `endpoint_url` | both | `$AWS_ENDPOINT_URL_S3`, `$AWS_ENDPOINT_URL`, else AWS | S3-compatible endpoint |
//! | `use_path_style` | both | `false` | `ENDPOINT/BUCKET/KEY` instead of `BUCKET.HOST/KEY` (always for IP endpoints) |
//! | `access_key_id`, `secret_access_key`, `session_token` | both | AWS credential chain | static credentials (never printed) |
//! | `touch_refresh` | both (export uses it) | `24h` | refresh present blobs older than this (Go duration) |
//! | `upload_parallelism` | both (export uses it) | `4` | blobs uploaded or touched at once |
//! | `retry_max_attempts` | both | `3` | attempts per request |
//! | `retry_mode` | both | `standard` | `standard` or `adaptive` (accepted; both back off) |
//! | `disable_accept_encoding` | both | `false` | accepted for compatibility (no effect) |
//! | `import_all_names` | import | `false` | bkcache extension: import every name, merged |
//!
//! plus `mode` and `ignore-error` on export (`oci-mediatypes`, `image-manifest` and
//! `compression*` have no effect here, as in BuildKit).
//!
//! **Credentials**, first found wins: the `access_key_id` + `secret_access_key` (+
//! `session_token`) attributes (both or neither); then as the AWS SDK for Go: the profile named by
//! `$AWS_PROFILE`; `$AWS_ACCESS_KEY_ID` + `$AWS_SECRET_ACCESS_KEY` (+ `$AWS_SESSION_TOKEN`);
//! `$AWS_WEB_IDENTITY_TOKEN_FILE` + `$AWS_ROLE_ARN`; the `default` profile; container credentials
//! (`$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI`); EC2 instance metadata. Profiles
//! come from `~/.aws/credentials` and `~/.aws/config` (`$AWS_SHARED_CREDENTIALS_FILE`,
//! `$AWS_CONFIG_FILE`) and may hold static keys, `web_identity_token_file` + `role_arn`, or a
//! `credential_process`; SSO and `source_profile` role chains are refused with a hint.
//!
//! **Export**: for each blob, `HEAD` (present blobs are not uploaded); a missing blob is streamed
//! with one `PutObject` below 16 MiB ([`MULTIPART_THRESHOLD`]) or a multipart upload in 8 MiB parts
//! ([`PART_SIZE`]) above, completed only once the verifying stream ended cleanly and aborted
//! otherwise, so a corrupt or interrupted blob never becomes visible. No request checksum
//! trailers (`aws-chunked`) are sent. Then, in `commit`: every blob the config names is checked
//! present, blobs whose `LastModified` is older than `touch_refresh` are **touched** (copied
//! onto themselves with `x-amz-metadata-directive: REPLACE` and `x-amz-meta-updated-at`, as
//! BuildKit does; a multipart copy from 5 GiB; object_store has no such call, so these requests
//! are SigV4-signed with object_store's `AwsAuthorizer`), and the config is written under every
//! name, last. A failed export writes no config and touches nothing. A missing bucket is told
//! from a missing object by one signed `HeadBucket`.
//!
//! **Import**: `GET` the first name's config (a missing object is "no cache", a missing bucket an
//! error), then blobs on demand (ranged `GET` for offsets).
//!
//! This crate uses rustls with the ring provider and installs it as the process default when a
//! store is opened. Nothing that holds a credential is ever `Debug`-formatted.
//!
//! ## Example
//!
//! ```
//! use bkcache_core::{Backends, CacheSpec, Env};
//! let backends = Backends::new().with(bkcache_s3::S3Factory);
//! let spec = &CacheSpec::parse(
//!     "type=s3,bucket=bk-cache,region=us-east-1,prefix=proj/,name=main;alt,\
//!      endpoint_url=http://127.0.0.1:9000,access_key_id=AKIDEXAMPLE,secret_access_key=hunter2",
//! )
//! .unwrap()[0];
//! // Opening does no network I/O.
//! let target = backends.open_target(spec, &Env::empty("/")).unwrap();
//! assert_eq!(target.store.location(), "s3://bk-cache/proj/manifests/main;alt at http://127.0.0.1:9000");
//! assert!(!format!("{:?}", target.store).contains("hunter2"));
//! assert!(!spec.to_string().contains("hunter2"));
//! ```
//!
//! ## Example: copy a cache with this crate alone
//!
//! A project that depends on `bkcache-s3` only (its [`core`] re-export is `bkcache-core`)
//! copies the cache under one name to another (only missing blobs move; each is verified while
//! streaming; the config is written last). `no_run`: it needs a bucket.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bkcache_s3::core::transfer::{self, CopyOptions, NoProgress, Source, Target};
//! use bkcache_s3::core::{Backends, CacheSpec, Env, Error};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     let backends = Backends::new().with(bkcache_s3::S3Factory);
//!     let env = Env::from_process(); // the AWS credential chain: $AWS_PROFILE, ~/.aws, web identity, …
//!     let from = &CacheSpec::parse("type=s3,bucket=bk-cache,region=eu-west-1,name=main")?[0];
//!     let to = &CacheSpec::parse("type=s3,bucket=bk-cache,region=eu-west-1,name=release,mode=max")?[0];
//!     let sources = vec![Source { label: from.to_string(), store: backends.open_source(from, &env)? }];
//!     let t = backends.open_target(to, &env)?;
//!     let targets = vec![Target { label: to.to_string(), store: t.store, options: t.options }];
//!     let report = transfer::copy(&sources, &targets, &CopyOptions::default(), Arc::new(NoProgress)).await?;
//!     assert!(!report.failed());
//!     Ok(())
//! }
//! ```
//!
//! ## Not done here
//! No bucket creation (as BuildKit); no server-side copy between buckets or prefixes (S3 would not
//! verify the digest); `retry_mode=adaptive` has no client-side rate limiting.

mod config;
mod error;
mod store;

pub use config::{parse_go_duration, S3Layout, DEFAULT_NAME, DEFAULT_TOUCH_REFRESH, DEFAULT_UPLOAD_PARALLELISM};
pub use error::{scrub, S3Error};
pub use store::{
    S3Factory, S3Store, COPY_OBJECT_LIMIT, MAX_CONFIG, MAX_PARTS, MULTIPART_THRESHOLD, PARTS_IN_FLIGHT, PART_SIZE,
};

/// The `type=` value this crate serves.
pub const TYPE_NAME: &str = "s3";

/// The core crate this backend builds on (re-exported for users who pick this crate alone).
pub use bkcache_core as core;

/// This crate's version (`bkcache --version` lists every crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

// The README's examples compile too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
