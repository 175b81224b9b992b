//! The promises every [`CacheStore`] keeps, as a suite each backend runs against its real
//! component from its own `tests/` (feature `conformance`; the model is object_store's shared
//! `integration.rs`). A backend describes how to make a fresh location and open a store on it
//! ([`Fixture`]) and which optional capabilities it has ([`Capabilities`]); [`run`] runs every
//! group and [`Report::assert_passed`] fails the test with the list of broken promises. A group
//! needing a capability the store lacks is reported as skipped, with the reason.
//!
//! The groups: blob round trip with offsets, the empty blob, a large (multi-part) blob streamed,
//! a wrong digest refused and invisible, `blob_sizes` of a present/absent mix, an absent location
//! is "no cache", commit then load, a second commit replaces the first, concurrent commits never
//! mix, tags listed and removed, references and blob garbage collection, the tag's write time,
//! transient-error classification, and no secret in `Debug`, locations or errors.
//!
//! ```
//! use bkcache_core::conformance::{run, Capabilities, Fixture};
//! use bkcache_core::memory::{MemoryLocations, MemoryStore};
//! use bkcache_core::{CacheStore, Result};
//!
//! struct Memory(MemoryLocations, std::sync::atomic::AtomicUsize);
//!
//! #[async_trait::async_trait]
//! impl Fixture for Memory {
//!     async fn new_location(&self) -> Result<String> {
//!         Ok(format!("loc{}", self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed)))
//!     }
//!     fn open(&self, location: &str, tag: &str) -> Result<Box<dyn CacheStore>> {
//!         Ok(Box::new(MemoryStore::new(&self.0, location, tag)))
//!     }
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities::all()
//!     }
//! }
//!
//! let fixture = Memory(MemoryLocations::default(), Default::default());
//! futures::executor::block_on(run(&fixture)).assert_passed();
//! ```

mod groups;

use async_trait::async_trait;

use crate::error::Result;
use crate::CacheStore;

/// The optional capabilities of a store (what prune needs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `tags` lists the location's tags and `remove_tag` removes one.
    pub tags: bool,
    /// `tag_entries`, `referenced_blobs`, `list_blobs` and `delete_blob` work.
    pub blob_gc: bool,
    /// `tag_entries` says when each tag was written.
    pub write_time: bool,
}

impl Capabilities {
    /// Every capability.
    pub fn all() -> Self {
        Capabilities {
            tags: true,
            blob_gc: true,
            write_time: true,
        }
    }
}

/// How the suite makes locations and opens stores of one backend.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// A new, empty location no other call returned (a directory, a bucket prefix, a
    /// repository, a gha namespace), as a string [`Fixture::open`] understands.
    async fn new_location(&self) -> Result<String>;
    /// The store for `tag` at `location`, able to read and write.
    fn open(&self, location: &str, tag: &str) -> Result<Box<dyn CacheStore>>;
    /// What the store can do beyond the required methods.
    fn capabilities(&self) -> Capabilities;
    /// Credentials the fixture's stores hold: none may appear in `Debug`, locations or errors.
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }
    /// The size of the large-blob group's blob: above the backend's multi-part threshold.
    fn large_blob_size(&self) -> u64 {
        20 << 20
    }
}

/// How one group ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every promise held.
    Passed,
    /// Not run: the store lacks a capability.
    Skipped(String),
    /// A promise broke.
    Failed(String),
}

/// Every group's outcome, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// (group, outcome).
    pub groups: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// Panic, naming every failed group, unless all passed or were skipped; print each line.
    pub fn assert_passed(&self) {
        let mut failed = Vec::new();
        for (name, outcome) in &self.groups {
            match outcome {
                Outcome::Passed => eprintln!("conformance: {name}: ok"),
                Outcome::Skipped(why) => eprintln!("conformance: {name}: SKIPPED: {why}"),
                Outcome::Failed(why) => {
                    eprintln!("conformance: {name}: FAILED: {why}");
                    failed.push(format!("{name}: {why}"));
                }
            }
        }
        assert!(failed.is_empty(), "conformance failures:\n{}", failed.join("\n"));
    }

    /// The names of the groups that passed.
    pub fn passed(&self) -> Vec<&'static str> {
        self.groups
            .iter()
            .filter(|(_, o)| *o == Outcome::Passed)
            .map(|(n, _)| *n)
            .collect()
    }
}

/// The value of the environment variable naming a test server (set by `cargo xtask test`).
/// Unset: under CI (`CI` or `BKCACHE_REQUIRE_SERVERS` set) a panic, since a missing server must
/// fail the run; elsewhere `None` after printing `SKIPPED` with the reason.
pub fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() || std::env::var_os("BKCACHE_REQUIRE_SERVERS").is_some() => {
            panic!("{var} is not set: this test needs the servers `cargo xtask test` starts")
        }
        _ => {
            eprintln!(
                "SKIPPED: {var} is not set; run `cargo xtask test` (or `cargo xtask servers`) to start the servers"
            );
            None
        }
    }
}

/// The names of every group, in the order [`run`] runs them.
pub fn group_names() -> Vec<&'static str> {
    groups::ALL.iter().map(|g| g.name).collect()
}

/// Run one group by name (what [`conformance_tests!`](crate::conformance_tests) generates a
/// test for). An unknown name fails.
pub async fn run_one(fixture: &dyn Fixture, name: &str) -> Report {
    run_groups(fixture, |g| g == name).await
}

/// Run every group against `fixture`, one after another (each on fresh locations).
pub async fn run(fixture: &dyn Fixture) -> Report {
    run_groups(fixture, |_| true).await
}

async fn run_groups(fixture: &dyn Fixture, wanted: impl Fn(&str) -> bool) -> Report {
    let caps = fixture.capabilities();
    let mut report = Report::default();
    for group in groups::ALL.iter().filter(|g| wanted(g.name)) {
        let outcome = match &group.needs {
            Some(need) if !(need.has)(&caps) => honest_refusal(fixture, need).await,
            _ => match (group.run)(fixture).await {
                Ok(()) => Outcome::Passed,
                Err(e) => Outcome::Failed(e),
            },
        };
        report.groups.push((group.name, outcome));
    }
    if report.groups.is_empty() {
        report
            .groups
            .push(("(none)", Outcome::Failed("no group has that name".into())));
    }
    report
}

/// A group skipped for a capability the fixture does not claim: the store must say so itself.
async fn honest_refusal(fixture: &dyn Fixture, need: &groups::Need) -> Outcome {
    let store = match fixture.new_location().await {
        Ok(l) => fixture.open(&l, "refusal"),
        Err(e) => Err(e),
    };
    match store {
        Ok(s) if (need.refused)(s.as_ref()).await => Outcome::Skipped(need.why.into()),
        Ok(_) => Outcome::Failed(format!(
            "the fixture claims the store lacks this, but the store does not refuse it: {}",
            need.why
        )),
        Err(e) => Outcome::Failed(format!("open: {e}")),
    }
}

/// One `#[tokio::test]` per conformance group, for a backend's `tests/` (the caller needs
/// `tokio` with `macros` and `rt-multi-thread`). `$fixture` is an expression giving
/// `Option<impl Fixture>`, evaluated in each test; `None` means its server is not there (see
/// [`server`]), and the test returns.
///
/// ```ignore
/// bkcache_core::conformance_tests!(S3Fixture::from_env());
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@groups $fixture;
            blob_round_trip, empty_blob, large_blob_streamed, wrong_digest_refused_and_invisible,
            blob_sizes_of_a_mix, absent_location_is_no_cache, commit_then_load, second_commit_replaces,
            concurrent_commits_never_mix, unchanged_only_for_the_committed_cache, tags_listed_and_removed, references_and_blob_gc,
            write_time_is_the_commit, transient_errors_classified, no_secret_in_debug_or_errors,
            server_side_copy_between_locations);
    };
    (@groups $fixture:expr; $($group:ident),*) => {
        /// Every group has its test here.
        #[test]
        fn conformance_groups_are_all_generated() {
            assert_eq!(vec![$(stringify!($group)),*], $crate::conformance::group_names());
        }
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $group() {
                let Some(fixture) = $fixture else { return };
                $crate::conformance::run_one(&fixture, stringify!($group)).await.assert_passed();
            }
        )*
    };
}
