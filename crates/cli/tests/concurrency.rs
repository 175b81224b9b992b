//! Two copies into the same location at once (local directory, registry tag, S3 name, Azure
//! Blob name), from different sources: both succeed, and the result is one complete cache —
//! `verify` passes and the manifest is exactly one of the two a copy alone would write, never
//! a mix. Pairs: local-max with local-min (shared layers: both write the same blobs at once)
//! and two generated caches (disjoint, larger: the copies overlap for longer).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::proxy;
use common::*;

/// Reads what is stored at a location.
type StateFn = Box<dyn Fn(&str) -> Option<Vec<u8>>>;

struct Backend {
    name: &'static str,
    /// Export spec of location `loc`.
    spec: Box<dyn Fn(&str) -> String>,
    /// Import spec of location `loc` (differs for local: `src=` instead of `dest=`).
    from: Box<dyn Fn(&str) -> String>,
    /// Manifest (local, registry) or config object (s3, azblob) bytes at `loc`.
    state: StateFn,
}

fn digest_of(bytes: &Option<Vec<u8>>) -> String {
    bytes
        .as_ref()
        .map_or("(none)".into(), |b| bkcache_core::Digest::of_bytes(b).to_string())
}

fn generate(dir: &Path, seed: u64) {
    bkcache(&[
        "debug",
        "generate",
        "--to",
        &dest(dir, ""),
        "--blobs",
        "12",
        "--bytes",
        &(24u64 << 20).to_string(),
        "--seed",
        &seed.to_string(),
    ])
    .ok();
}

fn spawn_copy(from: &Path, to: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .args(["copy", "--from", &src(from), "--to", to])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn race(b: &Backend, tmp: &Path) {
    let (g1, g2) = (tmp.join("gen-1"), tmp.join("gen-2"));
    generate(&g1, 11);
    generate(&g2, 12);
    let pairs: Vec<(&str, PathBuf, PathBuf)> = vec![
        ("max+min", fixture_cache("local-max"), fixture_cache("local-min")),
        ("gen1+gen2", g1, g2),
    ];
    for (label, a, c) in &pairs {
        // What each copy alone writes.
        let mut want = Vec::new();
        for s in [a, c] {
            let loc = proxy::unique("alone");
            bkcache(&["copy", "--from", &src(s), "--to", &(b.spec)(&loc)]).ok();
            want.push(digest_of(&(b.state)(&loc)));
        }
        assert_ne!(want[0], want[1]);
        let mut winners = Vec::new();
        for round in 0..3 {
            let loc = proxy::unique(&format!("race-{round}"));
            let to = (b.spec)(&loc);
            let (x, y) = (spawn_copy(a, &to), spawn_copy(c, &to));
            for (child, which) in [(x, "first"), (y, "second")] {
                let out = child.wait_with_output().unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(!stderr.contains("panicked"), "{stderr}");
                assert!(
                    out.status.success(),
                    "{}: {label} round {round}: the {which} copy failed: {stderr}",
                    b.name
                );
            }
            let got = digest_of(&(b.state)(&loc));
            assert!(
                want.contains(&got),
                "{}: {label} round {round}: {got} is neither {want:?}",
                b.name
            );
            let v = bkcache(&["verify", &(b.from)(&loc), "--json"]);
            assert_eq!(v.code, 0, "{}: {label} round {round}: {}", b.name, v.stdout);
            winners.push(if got == want[0] { "a" } else { "b" });
        }
        eprintln!("{}: {label}: last writer per round: {winners:?}", b.name);
    }
}

/// The manifest `index.json` names for tag `latest`, read as bytes; exactly one entry.
fn local_state(dir: &Path) -> Option<Vec<u8>> {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).ok()?).unwrap();
    let entries: Vec<&serde_json::Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
        .collect();
    assert_eq!(entries.len(), 1, "one entry per tag: {index}");
    Some(std::fs::read(blob_path(dir, entries[0]["digest"].as_str().unwrap())).unwrap())
}

#[test]
fn two_copies_into_one_local_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("targets");
    let (r1, r2, r3) = (root.clone(), root.clone(), root);
    race(
        &Backend {
            name: "local",
            spec: Box::new(move |loc| dest(&r1.join(loc), "")),
            from: Box::new(move |loc| src(&r3.join(loc))),
            state: Box::new(move |loc| local_state(&r2.join(loc))),
        },
        tmp.path(),
    );
}

#[test]
fn two_copies_into_one_registry_tag() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (h1, h2, h3) = (host.clone(), host.clone(), host);
    race(
        &Backend {
            name: "registry",
            spec: Box::new(move |loc| format!("type=registry,ref={h1}/concurrency/{loc}:c")),
            from: Box::new(move |loc| format!("type=registry,ref={h3}/concurrency/{loc}:c")),
            state: Box::new(move |loc| proxy::registry_manifest(&h2, &format!("concurrency/{loc}"), "c")),
        },
        tmp.path(),
    );
}

#[test]
fn two_copies_into_one_s3_name() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bucket = proxy::s3_new_bucket(&ep, "race");
    let (e2, b2) = (ep.clone(), bucket.clone());
    let spec = move |loc: &str| {
        format!("type=s3,bucket={bucket},region=us-east-1,endpoint_url={ep},access_key_id=test,secret_access_key=test,prefix={loc}/")
    };
    race(
        &Backend {
            name: "s3",
            spec: Box::new(spec.clone()),
            from: Box::new(spec),
            state: Box::new(move |loc| proxy::s3_object(&e2, &b2, &format!("{loc}/manifests/buildkit"))),
        },
        tmp.path(),
    );
}

#[test]
fn two_copies_into_one_azblob_name() {
    let Some(url) = server("BKCACHE_TEST_AZURITE") else {
        return;
    };
    let account = std::env::var("BKCACHE_TEST_AZURITE_ACCOUNT").unwrap();
    let key = std::env::var("BKCACHE_TEST_AZURITE_KEY").unwrap();
    let container = proxy::unique("race");
    let tmp = tempfile::tempdir().unwrap();
    let (u2, a2, k2, c2) = (url.clone(), account.clone(), key.clone(), container.clone());
    let spec = move |loc: &str| {
        format!("type=azblob,account_url={url},account_name={account},secret_access_key={key},container={container},prefix={loc}")
    };
    race(
        &Backend {
            name: "azblob",
            spec: Box::new(spec.clone()),
            from: Box::new(spec),
            state: Box::new(move |loc| proxy::azblob_object(&u2, &a2, &k2, &c2, &format!("{loc}/manifests/buildkit"))),
        },
        tmp.path(),
    );
}
