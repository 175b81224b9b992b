//! `type=s3` keeps every promise of the conformance suite against moto (started by `cargo
//! xtask test`): one bucket per run, one key prefix per location.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bkcache_core::conformance::{server, Capabilities, Fixture};
use bkcache_core::{BackendFactory, CacheSpec, CacheStore, Direction, Env, Result};
use bkcache_s3::S3Factory;

/// moto checks no signature, so any key works; this one must never be printed.
const SECRET: &str = "conformanceSecretKey0123456789abcdef";

struct S3 {
    endpoint: String,
    bucket: String,
    next: AtomicUsize,
}

/// Create a bucket with one raw request (moto accepts any signature, not none).
fn create_bucket(endpoint: &str, bucket: &str) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).expect("moto is listening");
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "create bucket {bucket}: {answer}");
}

impl S3 {
    fn from_env() -> Option<Self> {
        let endpoint = server("BKCACHE_TEST_S3")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let bucket = format!("conformance-{}-{nanos}", std::process::id());
        create_bucket(&endpoint, &bucket);
        Some(S3 {
            endpoint,
            bucket,
            next: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Fixture for S3 {
    async fn new_location(&self) -> Result<String> {
        Ok(format!("loc{}/", self.next.fetch_add(1, Ordering::Relaxed)))
    }

    fn open(&self, location: &str, tag: &str) -> Result<Box<dyn CacheStore>> {
        let spec = CacheSpec::new("s3")
            .with("bucket", &self.bucket)
            .with("region", "us-east-1")
            .with("endpoint_url", &self.endpoint)
            .with("use_path_style", "true")
            .with("access_key_id", "conformance")
            .with("secret_access_key", SECRET)
            .with("prefix", location)
            .with("name", tag);
        S3Factory.open(&spec, Direction::Export, &Env::empty("/"))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    fn secrets(&self) -> Vec<String> {
        vec![SECRET.into()]
    }
}

bkcache_core::conformance_tests!(S3::from_env());
