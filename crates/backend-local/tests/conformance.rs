//! `type=local` keeps every promise of the conformance suite, on temporary directories (no
//! server needed).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bkcache_core::conformance::{Capabilities, Fixture};
use bkcache_core::{BackendFactory, CacheSpec, CacheStore, Direction, Env, Result};
use bkcache_local::LocalFactory;

struct Local {
    root: tempfile::TempDir,
    next: AtomicUsize,
}

#[async_trait]
impl Fixture for Local {
    async fn new_location(&self) -> Result<String> {
        let dir: PathBuf = self
            .root
            .path()
            .join(format!("cache-{}", self.next.fetch_add(1, Ordering::Relaxed)));
        Ok(dir.display().to_string())
    }

    fn open(&self, location: &str, tag: &str) -> Result<Box<dyn CacheStore>> {
        let spec = CacheSpec::new("local").with("dest", location).with("tag", tag);
        LocalFactory.open(&spec, Direction::Export, &Env::empty(self.root.path()))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }
}

impl Local {
    fn new() -> Option<Self> {
        Some(Local {
            root: tempfile::tempdir().expect("a temporary directory"),
            next: AtomicUsize::new(0),
        })
    }
}

bkcache_core::conformance_tests!(Local::new());
