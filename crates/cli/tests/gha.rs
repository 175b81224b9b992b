//! `type=gha` against the GitHub Actions cache test server (`xtask gha-server`: v2 Twirp with
//! signed URLs into Azurite, and v1 REST) started by `cargo xtask test`: round trips of every
//! fixture over both APIs, BuildKit's own gha-v2 export imported, BuildKit's request sequence
//! reproduced, numbered index entries, scopes, 429 storms and faults, prune through the REST
//! API, clear errors, no secret in any output, and the test server checked against the
//! official client (npm @actions/cache).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

/// The config digest BuildKit wrote for ctx2 mode=max to s3, azblob and gha.
const ANNOTATED_MAX: &str = "sha256:1a311571886e7fcbb53ab2dd438802acc7edbfc0adc54346899fa95a7672d1be";
const VERSION_HASH: &str = "693bb7016429d80366022f036f84856888c9f13e00145f5f6f4dce303a38d6f2";
const MAIN_RW: &[(&str, u64)] = &[("refs/heads/main", 3)];

struct Gha {
    /// `http://127.0.0.1:PORT/`.
    url: String,
    /// `http://127.0.0.1:PORT/_admin/`.
    admin: String,
}

fn gha() -> Option<Gha> {
    let url = server("BKCACHE_TEST_GHA_URL")?;
    let admin = std::env::var("BKCACHE_TEST_GHA_ADMIN").unwrap_or_else(|_| format!("{url}_admin/"));
    Some(Gha { url, admin })
}

/// A namespace no other test or run uses (tests run in parallel; a hand-started server
/// outlives many runs).
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{nanos:x}")
}

/// A runtime token as the runner makes one (alg none: nobody checks the signature).
fn jwt(scopes: &[(&str, u64)]) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let ac: Vec<Value> = scopes
        .iter()
        .map(|(s, p)| json!({"Scope": s, "Permission": p}))
        .collect();
    let claims = json!({"ac": Value::Array(ac).to_string(), "exp": 4_102_444_800u64, "nbf": 1_600_000_000u64});
    format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims.to_string()))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    V1,
    V2,
}

/// A tiny HTTP/1.1 client for the admin endpoints.
fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

impl Gha {
    fn ns_url(&self, ns: &str) -> String {
        format!("{}ns/{ns}/", self.url)
    }

    fn spec(&self, api: Api, ns: &str, token: &str, extra: &str) -> String {
        let base = match api {
            Api::V2 => format!("type=gha,url_v2={},token={token}", self.ns_url(ns)),
            Api::V1 => format!("type=gha,url={},version=1,token={token}", self.ns_url(ns)),
        };
        if extra.is_empty() {
            base
        } else {
            format!("{base},{extra}")
        }
    }

    fn admin(&self, what: &str, body: Value) -> Value {
        let (status, text) = http("POST", &format!("{}{what}", self.admin), &body.to_string());
        assert_eq!(status, 200, "admin {what}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    fn log(&self, ns: &str) -> Vec<Value> {
        let (status, text) = http("GET", &format!("{}log?ns={ns}", self.admin), "");
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    fn entries(&self, ns: &str) -> Vec<Value> {
        let (status, text) = http("GET", &format!("{}entries?ns={ns}", self.admin), "");
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Twirp/v1 calls in the log: (method name or v1 verb, key).
    fn calls(&self, ns: &str) -> Vec<(String, String)> {
        self.log(ns)
            .iter()
            .map(|l| {
                let path = l["path"].as_str().unwrap();
                let method = path.rsplit('/').next().unwrap().to_owned();
                let key = l["body"]["key"]
                    .as_str()
                    .or_else(|| l["query"]["keys"].as_str())
                    .unwrap_or("")
                    .to_owned();
                (format!("{} {method}", l["method"].as_str().unwrap()), key)
            })
            .collect()
    }
}

/// Run bkcache without any GitHub Actions variables of the machine (CI may run inside a job),
/// with `env` added.
fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bkcache"));
    cmd.args(args).env_remove("BKCACHE_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("ACTIONS_") || k.starts_with("GITHUB_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "bkcache panicked: {}", r.stderr);
    r
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../backend-gha/testdata/buildkit-v0.32.2/gha-v2")
}

/// An OCI-layout cache at `dir` whose single result is one gzip layer holding `files`
/// (`tar` and `gzip` CLIs through files: the common helper pipes, fine for small layers only).
/// Returns the layer digest.
fn write_cache_of_dir(dir: &Path, files: &Path) -> String {
    use bkcache_core::cache::{LayerChain, Record};
    use bkcache_core::{AbstractCache, Descriptor, Digest, MediaType};
    let tar = dir.with_extension("tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(files)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let gz = Command::new("gzip").arg("-nc").arg(&tar).output().unwrap();
    assert!(gz.status.success());
    let diff_id = Digest::of_bytes(&std::fs::read(&tar).unwrap());
    let mut desc = Descriptor::of_bytes(MediaType::OciLayerGzip, &gz.stdout);
    desc.annotations
        .insert("containerd.io/uncompressed".into(), diff_id.to_string());
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("blobs/sha256").join(desc.digest.hex()), &gz.stdout).unwrap();
    let mut cache = AbstractCache::default();
    cache.blobs.insert(desc.digest.clone(), desc.clone());
    cache.records.push(Record {
        digest: Digest::of_bytes(b"big-layer-record"),
        inputs: Vec::new(),
        results: vec![LayerChain {
            blobs: vec![desc.digest.clone()],
            created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        }],
    });
    let enc = bkcache_core::manifest::encode_manifest(&cache, bkcache_core::Wrapper::ImageManifest, true).unwrap();
    for (d, b) in [(&enc.config, &enc.config_bytes), (&enc.manifest, &enc.manifest_bytes)] {
        std::fs::write(dir.join("blobs/sha256").join(d.digest.hex()), b).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": enc.manifest.digest.to_string(),
             "size": enc.manifest.size, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]})
        .to_string(),
    )
    .unwrap();
    desc.digest.to_string()
}

/// Incompressible bytes (xorshift), so gzip keeps the layer large.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn layer_digests(inspect: &Value) -> Vec<String> {
    inspect["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_local_fixture_round_trips_over_v1_and_v2() {
    let Some(g) = gha() else {
        return;
    };
    let token = jwt(MAIN_RW);
    let tmp = tempfile::tempdir().unwrap();
    for api in [Api::V2, Api::V1] {
        let ns = unique(&format!("roundtrip-{api:?}"));
        for (i, (case, tag, opts)) in CASES.iter().enumerate() {
            let facts = facts_for(case, tag);
            let from = format!("{},tag={tag}", src(&fixture_cache(case)));
            let remote = g.spec(api, &ns, &token, &format!("scope={case}-{tag}"));
            let to_opts = opts.replace(",tag=main", "").replace(",tag=feature", "");
            let r = run(
                &[
                    "copy",
                    "--from",
                    &from,
                    "--to",
                    &format!("{remote},{to_opts}"),
                    "--json",
                ],
                &[],
            )
            .ok();
            let j = r.json();
            let t = &j["targets"][0];
            assert_eq!(t["outcome"]["status"], "committed", "{api:?} {case}: {j}");
            assert_eq!(t["records"], facts["config_records"], "{case}");
            if ["local-max", "local-index", "local-docker"].contains(case)
                || (*case, *tag) == ("local-two-tags", "feature")
            {
                assert_eq!(
                    t["manifest"]["digest"], ANNOTATED_MAX,
                    "{api:?} {case}: BuildKit's gha index bytes"
                );
            }

            let s = run(&["inspect", &remote, "--json"], &[]).ok().json();
            assert_eq!(s["format"], "annotated-config");
            assert_eq!(s["manifest"]["digest"], t["manifest"]["digest"]);
            assert_eq!(s["records"], facts["config_records"], "{case}");
            let v = run(&["verify", &remote, "--json"], &[]).ok().json();
            assert_eq!(v["blobs_checked"].as_u64(), facts["config_layers"].as_u64(), "{case}");

            let out = tmp.path().join(format!("back-{api:?}-{i}"));
            if *case == "local-estargz" {
                // The annotated config cannot carry estargz TOC annotations (BuildKit's gha
                // export drops them too): the same config and layer blobs come back.
                run(
                    &["copy", "--from", &remote, "--to", &dest(&out, "oci-mediatypes=true")],
                    &[],
                )
                .ok();
                let back = run(&["inspect", &format!("{},tag={tag}", src(&out)), "--json"], &[])
                    .ok()
                    .json();
                let orig = run(&["inspect", &from, "--json"], &[]).ok().json();
                assert_eq!(back["config"], orig["config"], "{case}: same cache config");
                assert_eq!(layer_digests(&back), layer_digests(&orig));
            } else {
                let r = run(&["copy", "--from", &remote, "--to", &dest(&out, opts), "--json"], &[])
                    .ok()
                    .json();
                assert_eq!(
                    r["targets"][0]["manifest"]["digest"], facts["manifest_digest"],
                    "{api:?} {case}:{tag} came back byte-identical"
                );
            }
            assert_blobs_intact(&out);
            run(&["verify", &format!("{},tag={tag}", src(&out))], &[]).ok();
        }
        // Every entry is finalized under BuildKit's version hash, and the keys are BuildKit's.
        let entries = g.entries(&ns);
        assert!(!entries.is_empty());
        for e in &entries {
            assert_eq!(e["version"], VERSION_HASH);
            assert_eq!(e["finalized"], true, "{e}");
            let key = e["key"].as_str().unwrap();
            assert!(
                key.starts_with("buildkit-blob-1-sha256:")
                    || (key.starts_with("index-") && key.contains("-1-f921bd05#")),
                "{key}"
            );
        }
        if api == Api::V1 {
            let log = g.log(&ns);
            assert!(log
                .iter()
                .all(|l| l["path"].as_str().unwrap().starts_with("/_apis/artifactcache/")));
            let patches = log.iter().filter(|l| l["method"] == "PATCH").count();
            assert!(patches > 0);
            assert!(log
                .iter()
                .filter(|l| l["method"] == "PATCH")
                .all(|l| l["content_range"].as_str().unwrap().starts_with("bytes 0-")));
        }
    }
}

/// Load BuildKit's gha-v2 entries into a fresh namespace under `refs/heads/main`.
fn load_fixture(g: &Gha, ns: &str) {
    let r = g.admin(
        "load",
        json!({"ns": ns, "scope": "refs/heads/main", "dir": fixture_dir().join("entries")}),
    );
    assert_eq!(r["loaded"].as_array().unwrap().len(), 8, "{r}");
}

#[test]
fn buildkits_gha_v2_export_imports_with_index_md_counts() {
    let Some(g) = gha() else {
        return;
    };
    let facts = facts_for_case("gha-v2");
    let ns = unique("bk-fixture");
    load_fixture(&g, &ns);
    let token = jwt(MAIN_RW);
    let remote = g.spec(Api::V2, &ns, &token, "scope=main");

    let s = run(&["inspect", &remote, "--json"], &[]).ok().json();
    assert_eq!(s["format"], "annotated-config");
    assert_eq!(s["manifest"]["digest"], facts["config_digest"]);
    assert_eq!(s["manifest"]["size"], facts["config_size"]);
    assert_eq!(s["records"], facts["config_records"]);
    assert_eq!(
        s["layers"].as_array().unwrap().len() as u64,
        facts["config_layers"].as_u64().unwrap()
    );
    // INDEX.md: 8 entries, 10588 bytes = the index plus every layer.
    let layer_bytes = s["layer_bytes"].as_u64().unwrap();
    assert_eq!(
        layer_bytes + facts["config_size"].as_u64().unwrap(),
        facts["total_entry_bytes"].as_u64().unwrap()
    );
    let v = run(&["verify", &remote, "--json"], &[]).ok().json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["blobs_checked"], facts["config_layers"]);

    // BuildKit's import begins with the index by prefix: bkcache sends the same request.
    let first_import = std::fs::read_to_string(fixture_dir().join("requests-import.log")).unwrap();
    let bk: Value = serde_json::from_str(first_import.lines().next().unwrap()).unwrap();
    let ours = g.log(&ns).into_iter().next().unwrap();
    assert_eq!(ours["path"], bk["path"]);
    assert_eq!(ours["body"], bk["body"], "the index lookup BuildKit sends");
    assert_eq!(ours["auth_scheme"], "Bearer");

    // To a local layout: the cache BuildKit wrote for the same build (local-max).
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("local");
    let r = run(
        &["copy", "--from", &remote, "--to", &dest(&out, "mode=max"), "--json"],
        &[],
    )
    .ok()
    .json();
    let local = run(&["inspect", &src(&out), "--json"], &[]).ok().json();
    assert_eq!(
        local["config"]["digest"],
        facts_for("local-max", "latest")["config_digest"]
    );
    assert_eq!(r["targets"][0]["layers"], 7);
    run(&["verify", &src(&out)], &[]).ok();

    // And back into the service: byte-identical index, every blob already there.
    let ns2 = unique("bk-fixture-again");
    let r = run(
        &[
            "copy",
            "--from",
            &src(&out),
            "--to",
            &g.spec(Api::V2, &ns2, &token, "scope=main,mode=max"),
            "--json",
        ],
        &[],
    )
    .ok()
    .json();
    assert_eq!(r["targets"][0]["manifest"]["digest"], facts["config_digest"]);
}

fn facts_for_case(case: &str) -> Value {
    let facts: Value = serde_json::from_slice(&std::fs::read(fixtures().join("facts.json")).unwrap()).unwrap();
    facts["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == case)
        .cloned()
        .unwrap()
}

#[test]
fn export_sends_buildkits_requests_and_numbers_the_index() {
    let Some(g) = gha() else {
        return;
    };
    let ns = unique("bk-requests");
    let token = jwt(MAIN_RW);
    let remote = g.spec(Api::V2, &ns, &token, "scope=main");
    let r = run(
        &[
            "-v",
            "copy",
            "--from",
            &src(&fixture_cache("local-max")),
            "--to",
            &remote,
            "--json",
        ],
        &[],
    )
    .ok();
    assert_eq!(r.json()["targets"][0]["blobs_copied"], 7);
    assert!(r.stderr.contains("entries_created=8"), "{}", r.stderr);

    // The same 24 Twirp calls as BuildKit's export (requests.log), with the same bodies.
    let bk: Vec<Value> = std::fs::read_to_string(fixture_dir().join("requests.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ours = g.log(&ns);
    assert_eq!(ours.len(), bk.len(), "{} Twirp calls, like BuildKit", bk.len());
    let key_of = |l: &Value| (l["path"].as_str().unwrap().to_owned(), l["body"].to_string());
    let mut a: Vec<(String, String)> = bk.iter().map(key_of).collect();
    let mut b: Vec<(String, String)> = ours.iter().map(key_of).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "same methods and bodies (size_bytes as numbers, snake_case)");
    for l in &ours {
        assert_eq!(l["auth_scheme"], "Bearer");
        assert_eq!(l["content_type"], "application/json");
    }
    // Per key: lookup, then create, then finalize; the index is looked up (`#`) and written last.
    let pos = |method: &str, key: &str| {
        ours.iter()
            .position(|l| l["path"].as_str().unwrap().ends_with(method) && l["body"]["key"] == key)
            .unwrap_or_else(|| panic!("no {method} {key}"))
    };
    let index = "index-main-1-f921bd05#1";
    for e in ours
        .iter()
        .filter(|l| l["path"].as_str().unwrap().ends_with("CreateCacheEntry"))
    {
        let key = e["body"]["key"].as_str().unwrap();
        assert!(pos("CreateCacheEntry", key) < pos("FinalizeCacheEntryUpload", key));
        if key != index {
            assert!(pos("GetCacheEntryDownloadURL", key) < pos("CreateCacheEntry", key));
            assert!(
                pos("FinalizeCacheEntryUpload", key) < pos("CreateCacheEntry", index),
                "index last"
            );
        }
    }
    assert!(pos("GetCacheEntryDownloadURL", "index-main-1-f921bd05#") < pos("CreateCacheEntry", index));

    // The stored entries are BuildKit's, byte for byte (keys, sizes).
    let want: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("entries/entries.json")).unwrap()).unwrap();
    let want: BTreeMap<String, u64> = want
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_owned(), e["size"].as_u64().unwrap()))
        .collect();
    let got: BTreeMap<String, u64> = g
        .entries(&ns)
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_owned(), e["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, want);

    // Again: every blob is found (lookup + size check) and skipped; the index becomes #2.
    let before = g.log(&ns).len();
    let r = run(
        &[
            "-v",
            "copy",
            "--from",
            &src(&fixture_cache("local-max")),
            "--to",
            &remote,
            "--json",
        ],
        &[],
    )
    .ok();
    let t = &r.json()["targets"][0];
    assert_eq!(
        (t["blobs_copied"].as_u64(), t["blobs_present"].as_u64()),
        (Some(0), Some(7))
    );
    assert!(
        r.stderr.contains("entries_created=1") && r.stderr.contains("index-main-1-f921bd05#2"),
        "{}",
        r.stderr
    );
    let calls: Vec<(String, String)> = g.calls(&ns).split_off(before);
    let creates: Vec<&str> = calls
        .iter()
        .filter(|(m, _)| m.ends_with("CreateCacheEntry"))
        .map(|(_, k)| k.as_str())
        .collect();
    assert_eq!(creates, ["index-main-1-f921bd05#2"], "only the index is written");
    assert_eq!(
        calls.len(),
        7 + 3,
        "7 lookups, then the index: lookup, create, finalize"
    );

    // A different cache as #3: readers take the newest.
    run(
        &["copy", "--from", &src(&fixture_cache("local-min")), "--to", &remote],
        &[],
    )
    .ok();
    let s = run(&["inspect", &remote, "--json"], &[]).ok().json();
    assert_eq!(s["records"], facts_for("local-min", "latest")["config_records"]);
    assert_eq!(s["layers"].as_array().unwrap().len(), 2);
    let keys: Vec<String> = g
        .entries(&ns)
        .iter()
        .filter_map(|e| e["key"].as_str().filter(|k| k.starts_with("index-")).map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        [
            "index-main-1-f921bd05#1",
            "index-main-1-f921bd05#2",
            "index-main-1-f921bd05#3"
        ]
    );
}

#[test]
fn import_merges_every_token_scope_and_export_writes_the_last_writable() {
    let Some(g) = gha() else {
        return;
    };
    let ns = unique("scopes");
    // The default branch's cache, written by a job on main.
    let main = jwt(&[("refs/heads/main", 3)]);
    run(
        &[
            "copy",
            "--from",
            &src(&fixture_cache("local-min")),
            "--to",
            &g.spec(Api::V2, &ns, &main, ""),
        ],
        &[],
    )
    .ok();
    // A feature-branch job: writes its own ref, reads main's too.
    let feature = jwt(&[("refs/heads/feature", 3), ("refs/heads/main", 1)]);
    let remote = g.spec(Api::V2, &ns, &feature, "");
    run(
        &[
            "copy",
            "--from",
            &src(&fixture_cache("local-uncompressed")),
            "--to",
            &remote,
        ],
        &[],
    )
    .ok();
    let keys: Vec<String> = g
        .entries(&ns)
        .iter()
        .filter_map(|e| e["key"].as_str().filter(|k| k.starts_with("index-")).map(str::to_owned))
        .collect();
    let feature_hash = bkcache_gha::scope_hash("refs/heads/feature");
    assert_eq!(
        keys,
        [
            "index-buildkit-1-f921bd05#1".to_owned(),
            format!("index-buildkit-1-{feature_hash}#1")
        ]
    );
    let entries = g.entries(&ns);
    let scope_of = |k: &str| entries.iter().find(|e| e["key"] == k).unwrap()["scope"].clone();
    assert_eq!(
        scope_of(&format!("index-buildkit-1-{feature_hash}#1")),
        "refs/heads/feature"
    );

    let both = run(&["inspect", &remote, "--json"], &[]).ok().json();
    let only_main = run(&["inspect", &g.spec(Api::V2, &ns, &main, ""), "--json"], &[])
        .ok()
        .json();
    let min = facts_for("local-min", "latest");
    let unc = facts_for("local-uncompressed", "latest");
    assert_eq!(only_main["records"], min["config_records"]);
    assert_eq!(
        both["layers"].as_array().unwrap().len() as u64,
        min["config_layers"].as_u64().unwrap() + unc["config_layers"].as_u64().unwrap(),
        "the feature job imports its own cache and main's: {both}"
    );
    // inspect shows each scope's part of the merged cache, with its size.
    let mut parts: Vec<(String, u64, u64)> = both["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["scope"].as_str().unwrap().to_owned(),
                p["layers"].as_u64().unwrap(),
                p["layer_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    parts.sort();
    assert_eq!(parts.len(), 2, "{both}");
    assert_eq!(
        (parts[0].0.as_str(), parts[0].1),
        ("refs/heads/feature", unc["config_layers"].as_u64().unwrap())
    );
    assert_eq!(
        (parts[1].0.as_str(), parts[1].1),
        ("refs/heads/main", min["config_layers"].as_u64().unwrap())
    );
    assert_eq!(parts[1].2, 341 + 141, "local-min's two layers");
    run(&["verify", &remote], &[]).ok();
}

#[test]
fn rate_limits_and_faults_are_waited_out() {
    let Some(g) = gha() else {
        return;
    };
    let token = jwt(MAIN_RW);
    // A storm: at most 3 reservations per 2 s; an export needs 8.
    let ns = unique("storm");
    g.admin("limit", json!({"ns": ns, "creates": 3, "window_ms": 2000}));
    let remote = g.spec(Api::V2, &ns, &token, "scope=storm");
    let started = std::time::Instant::now();
    let r = run(
        &[
            "-v",
            "copy",
            "--from",
            &src(&fixture_cache("local-max")),
            "--to",
            &remote,
            "--json",
        ],
        &[],
    )
    .ok();
    let elapsed = started.elapsed();
    assert_eq!(r.json()["targets"][0]["outcome"]["status"], "committed", "{}", r.stderr);
    let log = g.log(&ns);
    let limited: Vec<&Value> = log.iter().filter(|l| l["status"] == 429).collect();
    let created = log
        .iter()
        .filter(|l| l["path"].as_str().unwrap().ends_with("CreateCacheEntry") && l["status"] == 200)
        .count();
    assert_eq!(created, 8);
    assert!(!limited.is_empty(), "the storm produced 429s");
    assert!(
        elapsed.as_secs_f64() >= 2.0,
        "8 creations at 3 per 2 s take two windows: {elapsed:?}"
    );
    assert!(
        r.stderr.contains(&format!("rate_limited={}", limited.len())),
        "{}",
        r.stderr
    );
    eprintln!(
        "storm: {} reservations answered 429, export took {elapsed:?}; {}",
        limited.len(),
        r.stderr.lines().find(|l| l.contains("export committed")).unwrap_or("")
    );
    run(&["verify", &remote], &[]).ok();

    // Injected 429s on lookups and 503s on finalization are retried.
    let ns = unique("faults");
    g.admin(
        "fault",
        json!({"ns": ns, "path_contains": "GetCacheEntryDownloadURL", "status": 429, "retry_after": 1, "count": 3}),
    );
    g.admin(
        "fault",
        json!({"ns": ns, "path_contains": "FinalizeCacheEntryUpload", "status": 503, "count": 2}),
    );
    let remote = g.spec(Api::V2, &ns, &token, "");
    run(
        &[
            "copy",
            "--parallelism",
            "1",
            "--from",
            &src(&fixture_cache("local-min")),
            "--to",
            &remote,
        ],
        &[],
    )
    .ok();
    let log = g.log(&ns);
    assert_eq!(log.iter().filter(|l| l["status"] == 429).count(), 3);
    assert_eq!(log.iter().filter(|l| l["status"] == 503).count(), 2);
    // Existence checks run several at once (4 per transfer slot), so a 429's retry is the
    // next request with the same body, and it comes no sooner than Retry-After.
    for (i, l) in log.iter().enumerate().filter(|(_, l)| l["status"] == 429) {
        let retry = log[i + 1..]
            .iter()
            .find(|r| r["path"] == l["path"] && r["body"] == l["body"])
            .unwrap_or_else(|| panic!("the 429 at #{i} was retried: {log:?}"));
        let gap = retry["t_ms"].as_u64().unwrap() - l["t_ms"].as_u64().unwrap();
        assert!(gap >= 950, "retried {gap} ms after a 429 with Retry-After: 1");
    }
    run(&["verify", &remote], &[]).ok();

    // v1 too.
    let ns = unique("faults-v1");
    g.admin(
        "fault",
        json!({"ns": ns, "path_contains": "caches", "status": 429, "retry_after": 1, "count": 2}),
    );
    let remote = g.spec(Api::V1, &ns, &token, "");
    run(
        &["copy", "--from", &src(&fixture_cache("local-min")), "--to", &remote],
        &[],
    )
    .ok();
    assert_eq!(g.log(&ns).iter().filter(|l| l["status"] == 429).count(), 2);
    run(&["verify", &remote], &[]).ok();

    // A budget smaller than the wait: a clear error, no index written.
    let ns = unique("budget");
    g.admin(
        "fault",
        json!({"ns": ns, "path_contains": "CreateCacheEntry", "status": 429, "retry_after": 5, "count": 100}),
    );
    let r = run(
        &[
            "copy",
            "--from",
            &src(&fixture_cache("local-min")),
            "--to",
            &g.spec(Api::V2, &ns, &token, "timeout=3s"),
        ],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("HTTP 429") && r.stderr.contains("timeout=3s"),
        "{}",
        r.stderr
    );
    assert!(g
        .entries(&ns)
        .iter()
        .all(|e| !e["key"].as_str().unwrap().starts_with("index-")));
}

#[test]
fn large_blobs_go_in_blocks_and_come_back_in_ranges() {
    let Some(g) = gha() else {
        return;
    };
    let token = jwt(MAIN_RW);
    let tmp = tempfile::tempdir().unwrap();
    // A 10 MiB incompressible layer: 3 Azure blocks (v2), 2 PATCH chunks (v1), 3 ranges.
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("big.bin"), random_bytes(10 << 20, 1)).unwrap();
    let cache = tmp.path().join("cache");
    let layers = [write_cache_of_dir(&cache, &files)];
    let size = std::fs::metadata(blob_path(&cache, &layers[0])).unwrap().len();
    assert!(size > 10 << 20);
    for api in [Api::V2, Api::V1] {
        let ns = unique(&format!("large-{api:?}"));
        let remote = g.spec(api, &ns, &token, "");
        run(&["copy", "--from", &src(&cache), "--to", &remote], &[]).ok();
        let entry = g
            .entries(&ns)
            .into_iter()
            .find(|e| e["key"] == format!("buildkit-blob-1-{}", layers[0]))
            .unwrap();
        assert_eq!(entry["size"].as_u64(), Some(size));
        if api == Api::V1 {
            let ranges: Vec<String> = g
                .log(&ns)
                .iter()
                .filter(|l| l["method"] == "PATCH" && l["body_len"].as_u64().unwrap() > 1 << 20)
                .map(|l| l["content_range"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                ranges.len(),
                size.div_ceil(bkcache_gha::CHUNK_SIZE as u64) as usize,
                "{ranges:?}"
            );
            assert!(
                ranges.contains(&format!("bytes 0-{}/*", bkcache_gha::CHUNK_SIZE - 1)),
                "{ranges:?}"
            );
        }
        let out = tmp.path().join(format!("back-{api:?}"));
        run(&["copy", "--from", &remote, "--to", &dest(&out, "")], &[]).ok();
        assert_eq!(
            std::fs::read(blob_path(&out, &layers[0])).unwrap(),
            std::fs::read(blob_path(&cache, &layers[0])).unwrap()
        );
        run(&["verify", &remote], &[]).ok();
    }
}

#[test]
fn a_corrupt_source_blob_is_never_committed() {
    let Some(g) = gha() else {
        return;
    };
    let token = jwt(MAIN_RW);
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("big.bin"), random_bytes(6 << 20, 2)).unwrap();
    let cache = tmp.path().join("cache");
    let layers = [write_cache_of_dir(&cache, &files)];
    // Same size, one byte changed near the end: the mismatch shows only after the last block.
    let path = blob_path(&cache, &layers[0]);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    for api in [Api::V2, Api::V1] {
        let ns = unique(&format!("corrupt-{api:?}"));
        let remote = g.spec(api, &ns, &token, "");
        let r = run(&["copy", "--from", &src(&cache), "--to", &remote, "--json"], &[]);
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains("corrupt") || r.stderr.contains("corrupt"),
            "{}{}",
            r.stdout,
            r.stderr
        );
        let entries = g.entries(&ns);
        // The reservation exists (no API can cancel one) but nothing was committed, and there
        // is no index.
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0]["finalized"], false);
        assert_eq!(entries[0]["size"], Value::Null);
        let finalize_or_commit = g
            .log(&ns)
            .iter()
            .filter(|l| {
                let p = l["path"].as_str().unwrap();
                p.ends_with("FinalizeCacheEntryUpload") || (l["method"] == "POST" && p.contains("/caches/"))
            })
            .count();
        assert_eq!(finalize_or_commit, 0);
        let s = run(&["inspect", &remote], &[]);
        assert_ne!(s.code, 0, "no cache to inspect: {}", s.stdout);
    }
}

#[test]
fn refused_signed_urls_are_refreshed() {
    let Some(g) = gha() else {
        return;
    };
    let token = jwt(MAIN_RW);
    let ns = unique("refresh");
    let remote = g.spec(Api::V2, &ns, &token, "");
    run(
        &["copy", "--from", &src(&fixture_cache("local-max")), "--to", &remote],
        &[],
    )
    .ok();
    let before = g.log(&ns).len();
    // The next 2 download URLs carry a bad signature: Azurite answers 403.
    g.admin("fault", json!({"ns": ns, "kind": "bad_sas", "count": 2}));
    let v = run(&["-v", "verify", &remote, "--json"], &[]).ok();
    assert_eq!(v.json()["ok"], true, "{}", v.stderr);
    assert_eq!(v.stderr.matches("asking for a fresh one").count(), 2, "{}", v.stderr);
    let lookups = g.log(&ns)[before..]
        .iter()
        .filter(|l| l["path"].as_str().unwrap().ends_with("GetCacheEntryDownloadURL"))
        .count();
    assert_eq!(lookups, 1 + 7 + 2, "index, 7 blobs, and one fresh URL per refused one");
}

#[test]
fn expired_signed_urls_are_refreshed_mid_download() {
    use bkcache_core::{CacheSpec, CacheStore, Direction, Env, VerifiedStream};
    let Some(g) = gha() else {
        return;
    };
    let token = jwt(MAIN_RW);
    let ns = unique("expiry");
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("big.bin"), random_bytes(9 << 20, 7)).unwrap();
    let cache = tmp.path().join("cache");
    write_cache_of_dir(&cache, &files);
    let remote = g.spec(Api::V2, &ns, &token, "");
    run(&["copy", "--from", &src(&cache), "--to", &remote], &[]).ok();
    // Signed URLs now live one to two seconds (`se` has whole seconds).
    g.admin("sas_ttl", json!({"ns": ns, "secs": 2}));
    let spec = &CacheSpec::parse(&remote).unwrap()[0];
    let store = bkcache_gha::GhaStore::open(
        bkcache_gha::GhaConfig::from_spec(spec, Direction::Import, &Env::empty("/")).unwrap(),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = rt.block_on(async {
        let loaded = store.load().await.unwrap().unwrap();
        let desc = loaded.cache.blobs.values().next().unwrap().clone();
        // The size check caches the blob's signed URL…
        assert_eq!(store.blob_size(&desc.digest).await.unwrap(), Some(desc.size));
        // …which has expired by the time the ranged download starts.
        tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
        let stream = store.open_blob(&desc, 0).await.unwrap();
        VerifiedStream::new(&desc, stream).drain().await.unwrap()
    });
    assert!(n > 9 << 20);
    let blob_lookups = g
        .log(&ns)
        .iter()
        .filter(|l| {
            l["path"].as_str().unwrap().ends_with("GetCacheEntryDownloadURL")
                && l["body"]["key"].as_str().unwrap().starts_with("buildkit-blob-1-")
        })
        .count();
    // Export (1), size check (1), and one refresh shared by the parallel ranges.
    assert_eq!(blob_lookups, 3);
}

#[test]
fn a_token_without_write_scope_is_a_clear_error() {
    let Some(g) = gha() else {
        return;
    };
    let ns = unique("readonly");
    let ro = jwt(&[("refs/pull/7/merge", 1), ("refs/heads/main", 1)]);
    let remote = g.spec(Api::V2, &ns, &ro, "");
    let r = run(
        &["copy", "--from", &src(&fixture_cache("local-min")), "--to", &remote],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.contains("no write scope") || r.stderr.contains("no write scope"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let text = format!("{}{}", r.stdout, r.stderr);
    assert!(
        text.contains("refs/pull/7/merge (read)") && text.contains("refs/heads/main (read)"),
        "{text}"
    );
    assert!(
        g.calls(&ns).iter().all(|(m, _)| !m.ends_with("CreateCacheEntry")),
        "nothing was reserved"
    );
    // ignore-error=true makes it a warning, as for any export failure.
    let r = run(
        &[
            "copy",
            "--from",
            &src(&fixture_cache("local-min")),
            "--to",
            &format!("{remote},ignore-error=true"),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no write scope"), "{}", r.stderr);
    // Reading with it is fine.
    let s = run(&["inspect", &remote], &[]);
    assert_ne!(s.code, 0);
    assert!(s.stderr.contains("no cache"), "{}", s.stderr);
}

#[test]
fn missing_settings_name_the_attribute_and_variable() {
    let token = jwt(MAIN_RW);
    let r = run(&["inspect", "type=gha"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("\"token\"") && r.stderr.contains("ACTIONS_RUNTIME_TOKEN"),
        "{}",
        r.stderr
    );
    let r = run(&["inspect", "type=gha"], &[("ACTIONS_RUNTIME_TOKEN", &token)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("\"url\"") && r.stderr.contains("ACTIONS_RESULTS_URL") && r.stderr.contains("url_v2"),
        "{}",
        r.stderr
    );
    let r = run(
        &["inspect", "type=gha,version=3,url=http://127.0.0.1:9/"],
        &[("ACTIONS_RUNTIME_TOKEN", &token)],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("version") && r.stderr.contains("expected 1") && r.stderr.contains("or 2"),
        "{}",
        r.stderr
    );
    let r = run(&["inspect", "type=gha,url=http://127.0.0.1:9/,token=not-a-jwt"], &[]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("attribute token") && r.stderr.contains("JWT"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("not-a-jwt"), "{}", r.stderr);
    let r = run(&["backends", "--json"], &[]).ok().json();
    let gha = r.as_array().unwrap().iter().find(|b| b["type"] == "gha").unwrap();
    let secret: Vec<&str> = gha["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["secret"] == true)
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(secret, ["token", "ghtoken"]);
}

#[test]
fn the_job_environment_is_enough() {
    let Some(g) = gha() else {
        return;
    };
    let token = jwt(MAIN_RW);
    let ns = unique("env");
    let v2 = [
        ("ACTIONS_RUNTIME_TOKEN", token.as_str()),
        ("ACTIONS_RESULTS_URL", &g.ns_url(&ns)),
        ("ACTIONS_CACHE_SERVICE_V2", "true"),
        // A v1 URL that must not be used when the v2 service is on.
        ("ACTIONS_CACHE_URL", "http://127.0.0.1:9/"),
    ];
    let r = run(
        &[
            "copy",
            "--from",
            &src(&fixture_cache("local-max")),
            "--to",
            "type=gha,mode=max",
            "--json",
        ],
        &v2,
    )
    .ok()
    .json();
    assert_eq!(r["targets"][0]["manifest"]["digest"], ANNOTATED_MAX);
    assert!(g.log(&ns)[0]["path"].as_str().unwrap().starts_with("/twirp/"));
    let s = run(&["inspect", "type=gha", "--json"], &v2).ok().json();
    assert_eq!(
        s["location"],
        format!("gha:buildkit@{}ns/{ns} (v2)", g.url.trim_start_matches("http://"))
    );

    let ns1 = unique("env-v1");
    let v1 = [
        ("ACTIONS_RUNTIME_TOKEN", token.as_str()),
        ("ACTIONS_CACHE_URL", &g.ns_url(&ns1)),
    ];
    run(
        &["copy", "--from", &src(&fixture_cache("local-min")), "--to", "type=gha"],
        &v1,
    )
    .ok();
    assert!(g
        .log(&ns1)
        .iter()
        .all(|l| l["path"].as_str().unwrap().starts_with("/_apis/artifactcache/")));
    run(&["verify", "type=gha"], &v1).ok();
}

#[test]
fn the_token_never_appears_in_any_output() {
    let Some(g) = gha() else {
        return;
    };
    let token = jwt(MAIN_RW);
    let ghtoken = "ghp_bkcacheTestSecret0123456789";
    let ns = unique("secrets");
    let remote = g.spec(Api::V2, &ns, &token, &format!("ghtoken={ghtoken},repository=o/r"));
    let api = [("GITHUB_API_URL", format!("{}api", g.ns_url(&ns)))];
    let api: Vec<(&str, &str)> = api.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut outputs = Vec::new();
    let mut keep = |r: Run| {
        outputs.push(format!("{}\n{}", r.stdout, r.stderr));
        r
    };
    keep(
        run(
            &[
                "-vv",
                "copy",
                "--from",
                &src(&fixture_cache("local-max")),
                "--to",
                &remote,
                "--json",
            ],
            &api,
        )
        .ok(),
    );
    keep(run(&["-vv", "inspect", &remote, "--json"], &api).ok());
    keep(run(&["-vv", "verify", &remote, "--json"], &api).ok());
    keep(
        run(
            &["-vv", "prune", &remote, "--dry-run", "--json", "--min-age", "0"],
            &api,
        )
        .ok(),
    );
    // A careless server that echoes the Authorization header in its errors.
    g.admin(
        "fault",
        json!({"ns": ns, "path_contains": "GetCacheEntryDownloadURL", "status": 400, "echo_auth": true, "count": 1}),
    );
    let r = keep(run(&["-vv", "inspect", &remote], &api));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("<redacted>"), "{}", r.stderr);
    g.admin(
        "fault",
        json!({"ns": ns, "path_contains": "/actions/caches", "status": 401, "echo_auth": true, "count": 1}),
    );
    let r = keep(run(&["-vv", "prune", &remote, "--dry-run", "--min-age", "0"], &api));
    assert_ne!(r.code, 0);
    // Failures with the token in the spec: bad URL, unreachable service, read-only token.
    keep(run(
        &[
            "-vv",
            "inspect",
            &format!("type=gha,url_v2=http://127.0.0.1:9/,token={token}"),
        ],
        &[],
    ));
    keep(run(
        &["-vv", "inspect", &format!("type=gha,url_v2=htp:/x,token={token}")],
        &[],
    ));
    let ro = jwt(&[("refs/heads/main", 1)]);
    keep(run(
        &[
            "-vv",
            "copy",
            "--from",
            &src(&fixture_cache("local-min")),
            "--to",
            &g.spec(Api::V2, &ns, &ro, ""),
        ],
        &[],
    ));
    keep(run(
        &[
            "-vv",
            "copy",
            "--from",
            &src(&fixture_cache("local-min")),
            "--to",
            "type=gha",
            "--json",
        ],
        &[
            ("ACTIONS_RUNTIME_TOKEN", &token),
            ("ACTIONS_RESULTS_URL", &g.ns_url(&ns)),
            ("ACTIONS_CACHE_SERVICE_V2", "1"),
        ],
    ));
    let payload = token.split('.').nth(1).unwrap();
    for text in &outputs {
        for secret in [token.as_str(), payload, ghtoken, ro.split('.').nth(1).unwrap()] {
            assert!(!text.contains(secret), "output shows a secret: {text}");
        }
        // No signature of a signed URL either.
        for (i, _) in text.match_indices("sig=") {
            assert!(
                text[i..].starts_with("sig=<redacted>"),
                "output shows a SAS signature: {text}"
            );
        }
    }
}

#[test]
fn prune_lists_and_deletes_through_the_rest_api() {
    let Some(g) = gha() else {
        return;
    };
    let token = jwt(MAIN_RW);
    let ns = unique("prune");
    let api_url = format!("{}api", g.ns_url(&ns));
    let env = [("GITHUB_API_URL", api_url.as_str())];
    let rest = "ghtoken=ghp_test,repository=octo/app";
    let app = g.spec(Api::V2, &ns, &token, &format!("scope=app,{rest}"));
    let other = g.spec(Api::V2, &ns, &token, &format!("scope=other,{rest}"));
    // app: local-max (7 layers) then local-min (2 of those 7) as the newest index.
    run(
        &["copy", "--from", &src(&fixture_cache("local-max")), "--to", &app],
        &env,
    )
    .ok();
    run(
        &["copy", "--from", &src(&fixture_cache("local-min")), "--to", &app],
        &env,
    )
    .ok();
    // other: a ctx1 cache with its own 3 layers.
    run(
        &[
            "copy",
            "--from",
            &src(&fixture_cache("local-uncompressed")),
            "--to",
            &other,
        ],
        &env,
    )
    .ok();

    // Without ghtoken: the service cannot list, and prune says so.
    let plain = g.spec(Api::V2, &ns, &token, "scope=app");
    let r = run(&["prune", &plain, "--min-age", "0", "--json"], &env).ok().json();
    assert_eq!(r["blobs_deleted"], 0);
    assert!(r["notes"].to_string().contains("cannot be listed"), "{r}");

    let r = run(&["prune", &app, "--min-age", "0", "--dry-run", "--json"], &env)
        .ok()
        .json();
    assert_eq!(r["blobs_listed"], 10, "{r}");
    assert_eq!(
        r["blobs_deleted"], 5,
        "local-max's layers that local-min does not use: {r}"
    );
    let r = run(&["prune", &app, "--min-age", "0", "--json"], &env).ok().json();
    assert_eq!(r["blobs_deleted"], 5, "{r}");
    let blobs = g
        .entries(&ns)
        .iter()
        .filter(|e| e["key"].as_str().unwrap().starts_with("buildkit-blob-"))
        .count();
    assert_eq!(blobs, 5);
    run(&["verify", &app], &env).ok();
    run(&["verify", &other], &env).ok();
    // The young-blob guard: nothing unreferenced is left, and a fresh export is safe.
    let r = run(&["prune", &app, "--json"], &env).ok().json();
    assert_eq!(r["blobs_deleted"], 0);

    // keep-tags: drop the `other` index (all numbers), then its blobs.
    let r = run(&["prune", &app, "--keep-tags", "app", "--min-age", "0", "--json"], &env)
        .ok()
        .json();
    assert_eq!(r["tags_removed"], json!(["other"]), "{r}");
    assert_eq!(r["blobs_deleted"], 3, "{r}");
    let left: Vec<String> = g
        .entries(&ns)
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .filter(|k| k.starts_with("index-"))
        .collect();
    assert!(left.iter().all(|k| k.starts_with("index-app-1-")), "{left:?}");
    run(&["verify", &app], &env).ok();
}

/// Where `.ci/install.d/gha.sh` installs the official client.
fn actions_cache_lib() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/bkcache/actions-cache/node_modules/@actions/cache/lib/cache.js");
    if p.is_file() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() || std::env::var_os("BKCACHE_REQUIRE_SERVERS").is_some() {
        panic!(
            "{} is missing: run .ci/install.d/gha.sh (npm install @actions/cache@6.3.0)",
            p.display()
        );
    }
    eprintln!("SKIPPED: @actions/cache is not installed in ~/.cache/bkcache/actions-cache (see .ci/install.d/gha.sh)");
    None
}

fn run_actions_cache(lib: &Path, work: &Path, key: &str, env: &[(&str, &str)]) -> Value {
    std::fs::create_dir_all(work.join("tmp")).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/gha/actions-cache-check.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script).current_dir(work);
    for (k, _) in std::env::vars() {
        if k.starts_with("ACTIONS_") || k.starts_with("GITHUB_") || k.starts_with("RUNNER_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("ACTIONS_CACHE_LIB", lib)
        .env("WORK_DIR", work)
        .env("CACHE_KEY", key)
        .env("RUNNER_TEMP", work.join("tmp"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("node (apt-get install nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {stdout}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn the_test_server_works_with_the_official_client() {
    let Some(g) = gha() else {
        return;
    };
    let Some(lib) = actions_cache_lib() else {
        return;
    };
    let token = jwt(MAIN_RW);
    let tmp = tempfile::tempdir().unwrap();
    let want =
        json!({"prefixHit": Value::Null, "prefixSame": true, "exactSame": true, "miss": Value::Null, "savedAgain": -1});

    // v2: @actions/cache puts /twirp/ at the root of ACTIONS_RESULTS_URL, so it uses the default
    // namespace, with a key of its own.
    let key = unique("node-v2");
    let r = run_actions_cache(
        &lib,
        &tmp.path().join("v2"),
        &key,
        &[
            ("ACTIONS_RUNTIME_TOKEN", &token),
            ("ACTIONS_RESULTS_URL", &g.url),
            ("ACTIONS_CACHE_SERVICE_V2", "true"),
        ],
    );
    assert!(r["saved"].as_i64().unwrap() > 0, "{r}");
    assert_eq!(r["prefixHit"], key, "restore by prefix: {r}");
    assert_eq!(r["exactHit"], key, "{r}");
    for k in ["prefixSame", "exactSame", "miss", "savedAgain"] {
        assert_eq!(r[k], want[k], "{k}: {r}");
    }
    // What the official client sent: snake_case, size_bytes as a string (protobuf-ts int64).
    let finalize = g
        .log("")
        .into_iter()
        .find(|l| l["path"].as_str().unwrap().ends_with("FinalizeCacheEntryUpload") && l["body"]["key"] == key)
        .unwrap();
    assert!(finalize["body"]["size_bytes"].is_string(), "{finalize}");
    assert!(
        finalize["user_agent"].as_str().unwrap().contains("actions/cache"),
        "{finalize}"
    );

    // v1 (GHES): query, reserve, PATCH with Content-Range, commit.
    let ns = unique("node-v1");
    let key = unique("node-v1");
    let r = run_actions_cache(
        &lib,
        &tmp.path().join("v1"),
        &key,
        &[("ACTIONS_RUNTIME_TOKEN", &token), ("ACTIONS_CACHE_URL", &g.ns_url(&ns))],
    );
    assert!(r["saved"].as_i64().unwrap() > 0, "{r}");
    assert_eq!(r["prefixHit"], key, "{r}");
    assert_eq!(r["exactHit"], key, "{r}");
    for k in ["prefixSame", "exactSame", "miss", "savedAgain"] {
        assert_eq!(r[k], want[k], "{k}: {r}");
    }
    let log = g.log(&ns);
    assert!(log
        .iter()
        .any(|l| l["method"] == "PATCH" && l["content_range"].as_str().unwrap().starts_with("bytes 0-")));
    assert!(
        log.iter().any(|l| l["status"] == 409),
        "the second save met an existing key"
    );
}

#[test]
fn inspect_warns_when_builds_share_a_scope() {
    let Some(g) = gha() else {
        return;
    };
    let ns = unique("shared");
    let token = jwt(&[("refs/heads/main", 3)]);
    let remote = g.spec(Api::V2, &ns, &token, "scope=app");
    // The same build twice: one scope, one image: no warning.
    for _ in 0..2 {
        run(
            &["copy", "--from", &src(&fixture_cache("local-max")), "--to", &remote],
            &[],
        )
        .ok();
    }
    let s = run(&["inspect", &remote, "--json"], &[]).ok().json();
    assert!(!s["warnings"].to_string().contains("share this scope"), "{s}");
    // Then another image's build into the same scope: its export replaced the first one's.
    let two = fixture_cache("local-two-tags");
    run(
        &["copy", "--from", &format!("{},tag=main", src(&two)), "--to", &remote],
        &[],
    )
    .ok();
    let s = run(&["inspect", &remote, "--json"], &[]).ok().json();
    let warnings = s["warnings"].to_string();
    assert!(
        warnings.contains("several images share this scope") && warnings.contains("#3") && warnings.contains("#2"),
        "{s}"
    );
}

/// Two signed scopes as BuildKit's `[cache.gha] sign` writes them (`index-<scope>-1-<hash>-sig#N`
/// plus a Sigstore bundle under `buildkit-blob-1-<sha256(config)>-sig`), sharing one build's blobs.
/// Returns the bundle keys of `main` and `old`.
fn load_signed_scopes(g: &Gha, ns: &str, dir: &Path) -> (String, String) {
    let fixture = fixture_dir().join("entries");
    std::fs::create_dir_all(dir).unwrap();
    let mut index = Vec::new();
    for e in std::fs::read_dir(&fixture).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("index-") {
            index = std::fs::read(e.path()).unwrap();
        } else if name.starts_with("buildkit-blob-") {
            std::fs::copy(e.path(), dir.join(&name)).unwrap();
        }
    }
    let mut old = index.clone();
    old.push(b'\n');
    let bundle = |config: &[u8]| format!("buildkit-blob-1-{}-sig", bkcache_core::Digest::of_bytes(config));
    for (scope, bytes) in [("main", &index), ("old", &old)] {
        std::fs::write(dir.join(format!("index-{scope}-1-f921bd05-sig%231")), bytes).unwrap();
        let file = bundle(bytes).replace(':', "%3A");
        std::fs::write(
            dir.join(file),
            br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#,
        )
        .unwrap();
    }
    g.admin("load", json!({"ns": ns, "scope": "refs/heads/main", "dir": dir}));
    (bundle(&index), bundle(&old))
}

#[test]
fn signed_scopes_are_shown_and_their_signatures_go_with_their_index() {
    let Some(g) = gha() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let token = jwt(MAIN_RW);
    let ns = unique("signed");
    let api_url = format!("{}api", g.ns_url(&ns));
    let env = [("GITHUB_API_URL", api_url.as_str())];
    let (main_bundle, old_bundle) = load_signed_scopes(&g, &ns, &tmp.path().join("entries"));
    let rest = "ghtoken=ghp_test,repository=octo/app";
    let main = g.spec(Api::V2, &ns, &token, &format!("scope=main,{rest}"));

    // inspect says the scope is signed; a copy says it is unsigned.
    let i = run(&["inspect", &main, "--json"], &env).ok().json();
    assert_eq!(i["parts"][0]["signed"], true, "{i}");
    assert_eq!(i["parts"][0]["name"], "index-main-1-f921bd05-sig#1");
    let text = run(&["inspect", &main], &env).ok();
    assert!(text.stdout.contains(", signed"), "{}", text.stdout);
    let copied = tmp.path().join("copy");
    let c = run(&["copy", "--from", &main, "--to", &dest(&copied, "mode=max")], &env).ok();
    assert!(c.stderr.contains("a copy of it is unsigned"), "{}", c.stderr);

    // Keeping main and dropping old: old's signed index and its bundle go, main's stay.
    let keys = |g: &Gha| -> Vec<String> {
        g.entries(&ns)
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_owned())
            .collect()
    };
    let dry = run(
        &[
            "prune",
            &main,
            "--keep-tags",
            "main",
            "--min-age",
            "0",
            "--dry-run",
            "--json",
        ],
        &env,
    )
    .ok()
    .json();
    let r = run(
        &["prune", &main, "--keep-tags", "main", "--min-age", "0", "--json"],
        &env,
    )
    .ok()
    .json();
    assert_eq!(dry["tags"], r["tags"]);
    assert_eq!(r["tags_removed"], json!(["old"]), "{r}");
    assert_eq!(r["tags"][0]["signed"], true, "{r}");
    assert_eq!(r["blobs_deleted"], 0, "main still references every blob: {r}");
    let left = keys(&g);
    assert!(
        left.contains(&"index-main-1-f921bd05-sig#1".to_owned()) && left.contains(&main_bundle),
        "{left:?}"
    );
    assert!(
        !left.iter().any(|k| k.starts_with("index-old-") || *k == old_bundle),
        "{left:?}"
    );
    run(&["verify", &main], &env).ok();

    // Rewriting a signed index would leave its signature over a config naming deleted blobs.
    let r = run(&["prune", &main, "--keep-storage", "1kB", "--min-age", "0"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is signed"), "{}", r.stderr);
    assert_eq!(keys(&g), left, "nothing changed");
}
