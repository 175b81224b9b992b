//! `kill -9` at pseudo-random points of a copy to a registry, S3 (moto) and Azure Blob
//! (Azurite): afterwards the target is exactly as before (same manifest/config bytes, and the
//! old cache still verifies) or complete (`verify` passes, expected digest). The local backend
//! has its own test (`crash.rs`).
//!
//! Each run copies a generated cache into a fresh location that already holds local-min, and
//! kills the copy after a delay drawn (from a fixed seed, so a failure reproduces) over 0-120 %
//! of a measured full copy. `RUNS` per backend; the three backends run in parallel.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::proxy;
use common::*;

/// Kills per backend (the issue asks for 20).
const RUNS: usize = 20;

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Reads what is stored at a location.
type StateFn = Box<dyn Fn(&str) -> Option<Vec<u8>> + Sync>;

struct Backend {
    name: &'static str,
    /// The spec of location `loc`.
    spec: Box<dyn Fn(&str) -> String + Sync>,
    /// Manifest (registry) or config object (s3, azblob) bytes at `loc`, read directly.
    state: StateFn,
}

fn generate(dir: &Path) -> String {
    bkcache(&[
        "debug",
        "generate",
        "--to",
        &dest(dir, ""),
        "--blobs",
        "4",
        "--bytes",
        &(72u64 << 20).to_string(),
        "--seed",
        "7",
    ])
    .ok()
    .stdout
    .trim()
    .to_owned()
}

fn copy_cmd(from: &Path, to: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bkcache"));
    c.args(["copy", "-q", "--parallelism", "4", "--from", &src(from), "--to", to])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn digest_of(bytes: &Option<Vec<u8>>) -> String {
    bytes
        .as_ref()
        .map_or("(none)".into(), |b| bkcache_core::Digest::of_bytes(b).to_string())
}

fn kill_runs(b: &Backend, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    generate(&source);
    let prepare = |loc: &str| {
        bkcache(&[
            "copy",
            "-q",
            "--from",
            &src(&fixture_cache("local-min")),
            "--to",
            &(b.spec)(loc),
        ])
        .ok();
    };

    // Two full copies: how long one takes (the faster: the first warms the server up), and
    // the manifest it leaves.
    let mut full = std::time::Duration::MAX;
    let mut expected = String::new();
    for _ in 0..2 {
        let probe = proxy::unique("crash-probe");
        prepare(&probe);
        let start = Instant::now();
        assert!(copy_cmd(&source, &(b.spec)(&probe)).status().unwrap().success());
        full = full.min(start.elapsed());
        expected = digest_of(&(b.state)(&probe));
        bkcache(&["verify", &(b.spec)(&probe)]).ok();
    }

    let mut rng = Rng(seed);
    let (mut as_before, mut complete) = (0, 0);
    let mut points = Vec::new();
    for run in 0..RUNS {
        let loc = proxy::unique(&format!("crash-{run}"));
        prepare(&loc);
        let before = (b.state)(&loc);
        assert!(before.is_some());
        let delay = full.mul_f64(1.2 * rng.unit());
        let mut child = copy_cmd(&source, &(b.spec)(&loc)).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let after = (b.state)(&loc);
        let ctx = format!(
            "{}: run {run}, killed after {delay:?} of a {full:?} copy: {} -> {}",
            b.name,
            digest_of(&before),
            digest_of(&after)
        );
        if after == before {
            as_before += 1;
            points.push(format!("{}ms=", delay.as_millis()));
            // The old cache is still whole: no blob it names was touched.
            let v = bkcache(&["verify", &(b.spec)(&loc), "--json"]);
            assert_eq!(v.code, 0, "{ctx}: the previous cache no longer verifies: {}", v.stdout);
        } else {
            complete += 1;
            points.push(format!("{}ms+", delay.as_millis()));
            assert_eq!(digest_of(&after), expected, "{ctx}");
            let v = bkcache(&["verify", &(b.spec)(&loc), "--json"]);
            assert_eq!(v.code, 0, "{ctx}: the new manifest names missing blobs: {}", v.stdout);
        }
    }
    eprintln!(
        "{}: {RUNS} kills over a {:.2}s copy: {as_before} left as before, {complete} complete [{}] (= before, + complete)",
        b.name,
        full.as_secs_f64(),
        points.join(" ")
    );
    assert!(as_before > 0, "{}: no kill landed mid-copy ({full:?})", b.name);
}

#[test]
fn registry_kill_9_leaves_the_tag_as_it_was_or_complete() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let (h1, h2) = (host.clone(), host);
    kill_runs(
        &Backend {
            name: "registry",
            spec: Box::new(move |loc| format!("type=registry,ref={h1}/crash/{loc}:c")),
            state: Box::new(move |loc| proxy::registry_manifest(&h2, &format!("crash/{loc}"), "c")),
        },
        0x5eed_0001,
    );
}

#[test]
fn s3_kill_9_leaves_the_config_as_it_was_or_complete() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = proxy::s3_new_bucket(&ep, "crash");
    let (e1, e2, b1, b2) = (ep.clone(), ep, bucket.clone(), bucket);
    kill_runs(
        &Backend {
            name: "s3",
            spec: Box::new(move |loc| {
                format!("type=s3,bucket={b1},region=us-east-1,endpoint_url={e1},access_key_id=test,secret_access_key=test,prefix={loc}/")
            }),
            state: Box::new(move |loc| proxy::s3_object(&e2, &b2, &format!("{loc}/manifests/buildkit"))),
        },
        0x5eed_0002,
    );
}

#[test]
fn azblob_kill_9_leaves_the_config_as_it_was_or_complete() {
    let Some(url) = server("BKCACHE_TEST_AZURITE") else {
        return;
    };
    let account = std::env::var("BKCACHE_TEST_AZURITE_ACCOUNT").unwrap();
    let key = std::env::var("BKCACHE_TEST_AZURITE_KEY").unwrap();
    let container = proxy::unique("crash");
    let (u2, a2, k2, c2) = (url.clone(), account.clone(), key.clone(), container.clone());
    kill_runs(
        &Backend {
            name: "azblob",
            spec: Box::new(move |loc| {
                format!("type=azblob,account_url={url},account_name={account},secret_access_key={key},container={container},prefix={loc}")
            }),
            state: Box::new(move |loc| proxy::azblob_object(&u2, &a2, &k2, &c2, &format!("{loc}/manifests/buildkit"))),
        },
        0x5eed_0003,
    );
}
