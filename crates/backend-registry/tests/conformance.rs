//! `type=registry` keeps the conformance suite's promises against a real registry (Debian's
//! docker-registry, started by `cargo xtask test`). A registry cannot list or delete blobs
//! (its own garbage collection does) and keeps no write time: those groups are skipped.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bkcache_core::conformance::{server, Capabilities, Fixture};
use bkcache_core::{BackendFactory, CacheSpec, CacheStore, Direction, Env, Result};
use bkcache_registry::RegistryFactory;

struct Registry {
    host: String,
    run: String,
    next: AtomicUsize,
}

impl Registry {
    fn from_env() -> Option<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Some(Registry {
            host: server("BKCACHE_TEST_REGISTRY")?,
            run: format!("{}-{nanos}", std::process::id()),
            next: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Fixture for Registry {
    async fn new_location(&self) -> Result<String> {
        Ok(format!(
            "conformance/r{}-{}",
            self.run,
            self.next.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn open(&self, location: &str, tag: &str) -> Result<Box<dyn CacheStore>> {
        let spec = CacheSpec::new("registry").with("ref", format!("{}/{location}:{tag}", self.host));
        RegistryFactory.open(&spec, Direction::Export, &Env::empty("/"))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tags: true,
            ..Capabilities::default()
        }
    }

    /// Above the 32 MiB monolithic-upload limit: the blob goes in PATCH chunks.
    fn large_blob_size(&self) -> u64 {
        40 << 20
    }
}

bkcache_core::conformance_tests!(Registry::from_env());
