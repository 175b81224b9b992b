//! `type=gha` keeps every promise of the conformance suite against the GitHub Actions cache
//! test server (`cargo xtask gha-server`, started by `cargo xtask test`, with signed URLs into
//! Azurite): one server namespace per location, the v2 API, the REST API for listing and
//! deletion (`ghtoken=`).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use bkcache_core::conformance::{server, Capabilities, Fixture};
use bkcache_core::{BackendFactory, CacheSpec, CacheStore, Direction, Env, Result};
use bkcache_gha::GhaFactory;

const GHTOKEN: &str = "ghp_conformanceSecret0123456789";

struct Gha {
    url: String,
    run: String,
    token: String,
    next: AtomicUsize,
}

/// A runtime token as the runner makes one (alg none: nobody checks the signature) with read
/// and write on `refs/heads/main`.
fn jwt() -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let ac = serde_json::json!([{"Scope": "refs/heads/main", "Permission": 3}]).to_string();
    let claims = serde_json::json!({"ac": ac, "exp": 4_102_444_800u64, "nbf": 1_600_000_000u64});
    format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims.to_string()))
}

impl Gha {
    fn from_env() -> Option<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Some(Gha {
            url: server("BKCACHE_TEST_GHA_URL")?,
            run: format!("{}-{nanos}", std::process::id()),
            token: jwt(),
            next: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Fixture for Gha {
    async fn new_location(&self) -> Result<String> {
        Ok(format!(
            "conformance-{}-{}",
            self.run,
            self.next.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn open(&self, location: &str, tag: &str) -> Result<Box<dyn CacheStore>> {
        let ns = format!("{}ns/{location}/", self.url);
        let spec = CacheSpec::new("gha")
            .with("url_v2", &ns)
            .with("token", &self.token)
            .with("scope", tag)
            .with("ghtoken", GHTOKEN)
            .with("repository", "octo/app");
        let env = Env::empty("/").with_var("GITHUB_API_URL", &format!("{ns}api"));
        GhaFactory.open(&spec, Direction::Export, &env)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    fn secrets(&self) -> Vec<String> {
        let payload = self.token.split('.').nth(1).unwrap_or_default().to_owned();
        vec![self.token.clone(), payload, GHTOKEN.into()]
    }
}

bkcache_core::conformance_tests!(Gha::from_env());
