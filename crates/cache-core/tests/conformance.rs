//! Core's own in-memory store passes the conformance suite: the reference for backends.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bkcache_core::conformance::{run, Capabilities, Fixture};
use bkcache_core::memory::{MemoryLocations, MemoryStore};
use bkcache_core::{CacheStore, Result};

#[derive(Default)]
struct Memory {
    locations: MemoryLocations,
    next: AtomicUsize,
}

#[async_trait]
impl Fixture for Memory {
    async fn new_location(&self) -> Result<String> {
        Ok(format!("location-{}", self.next.fetch_add(1, Ordering::Relaxed)))
    }

    fn open(&self, location: &str, tag: &str) -> Result<Box<dyn CacheStore>> {
        Ok(Box::new(MemoryStore::new(&self.locations, location, tag)))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }
}

bkcache_core::conformance_tests!(Some(Memory::default()));

#[test]
fn the_whole_suite_runs_with_nothing_skipped() {
    let report = futures::executor::block_on(run(&Memory::default()));
    report.assert_passed();
    assert_eq!(report.passed().len(), report.groups.len(), "nothing skipped");
    assert!(report.groups.len() >= 10);
}
