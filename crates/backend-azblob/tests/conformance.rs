//! `type=azblob` keeps every promise of the conformance suite against Azurite (started by
//! `cargo xtask test`): one container per run, one prefix per location.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bkcache_azblob::AzblobFactory;
use bkcache_core::conformance::{server, Capabilities, Fixture};
use bkcache_core::{BackendFactory, CacheSpec, CacheStore, Direction, Env, Result};

struct Azurite {
    url: String,
    account: String,
    key: String,
    container: String,
    next: AtomicUsize,
}

impl Azurite {
    fn from_env() -> Option<Self> {
        let url = server("BKCACHE_TEST_AZURITE")?;
        let var =
            |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set with BKCACHE_TEST_AZURITE"));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Some(Azurite {
            url,
            account: var("BKCACHE_TEST_AZURITE_ACCOUNT"),
            key: var("BKCACHE_TEST_AZURITE_KEY"),
            container: format!("conformance{}x{nanos}", std::process::id()),
            next: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Fixture for Azurite {
    async fn new_location(&self) -> Result<String> {
        Ok(format!("loc{}", self.next.fetch_add(1, Ordering::Relaxed)))
    }

    fn open(&self, location: &str, tag: &str) -> Result<Box<dyn CacheStore>> {
        let spec = CacheSpec::new("azblob")
            .with("account_url", &self.url)
            .with("account_name", &self.account)
            .with("secret_access_key", &self.key)
            .with("container", &self.container)
            .with("prefix", location)
            .with("name", tag);
        AzblobFactory.open(&spec, Direction::Export, &Env::empty("/"))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.key.clone()]
    }
}

bkcache_core::conformance_tests!(Azurite::from_env());
