//! A corpus of bad input, table-driven: malformed and mistyped cache options, cache configs with
//! loops, out-of-range indexes, wrong types and bad digests, manifests that lie about their size
//! or media type, decompression bombs. Each gives a clear error (the expected words on stderr)
//! and exit code 1 or 2, never a panic (`common::bkcache` checks stderr for one), and a copy
//! from a bad cache never leaves an `index.json` behind.
//!
//! The bad caches are the real local-max fixture with its JSON edited (config and manifest
//! re-hashed, so only the planted problem is wrong).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

const MANIFEST: &str = "sha256:83b2b9fb42354a1f2928260f80624dd4bf1dd4dd5598626425eb0eba1a2abf6a";

/// Write `bytes` as a blob; returns its digest.
fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    let d = bkcache_core::Digest::of_bytes(bytes);
    std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    d.to_string()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A copy of local-max whose config bytes are `config(original)` and whose manifest is
/// `manifest(original with the new config descriptor)`, both re-hashed; `index(...)` edits
/// index.json last.
fn edited(
    tmp: &Path,
    name: &str,
    config: impl FnOnce(Value) -> Vec<u8>,
    manifest: impl FnOnce(&mut Value),
    index: impl FnOnce(&mut Value),
) -> PathBuf {
    let dir = tmp.join(name);
    copy_tree(&fixture_cache("local-max"), &dir);
    let mut m = read_json(&blob_path(&dir, MANIFEST));
    let c = read_json(&blob_path(&dir, m["config"]["digest"].as_str().unwrap()));
    let c = config(c);
    m["config"]["digest"] = json!(put_blob(&dir, &c));
    m["config"]["size"] = json!(c.len());
    manifest(&mut m);
    let mb = serde_json::to_vec(&m).unwrap();
    let mut idx = read_json(&dir.join("index.json"));
    idx["manifests"][0]["digest"] = json!(put_blob(&dir, &mb));
    idx["manifests"][0]["size"] = json!(mb.len());
    index(&mut idx);
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    dir
}

/// Only the config changes (as JSON).
fn config_edit(tmp: &Path, name: &str, f: impl FnOnce(&mut Value)) -> PathBuf {
    edited(
        tmp,
        name,
        |mut c| {
            f(&mut c);
            serde_json::to_vec(&c).unwrap()
        },
        |_| {},
        |_| {},
    )
}

/// Only the config changes (as bytes).
fn config_bytes(tmp: &Path, name: &str, bytes: Vec<u8>) -> PathBuf {
    edited(tmp, name, |_| bytes, |_| {}, |_| {})
}

/// Only the manifest changes.
fn manifest_edit(tmp: &Path, name: &str, f: impl FnOnce(&mut Value)) -> PathBuf {
    edited(tmp, name, |c| serde_json::to_vec(&c).unwrap(), f, |_| {})
}

/// Only index.json changes (the manifest stays BuildKit's).
fn index_edit(tmp: &Path, name: &str, f: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = tmp.join(name);
    copy_tree(&fixture_cache("local-max"), &dir);
    let mut idx = read_json(&dir.join("index.json"));
    f(&mut idx);
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    dir
}

/// A cache loads with an error (exit 1, the expected words) from `inspect`, `verify` and
/// `copy`; the copy leaves no index.json.
fn assert_refused(dir: &Path, expected: &[&str]) {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    for cmd in ["inspect", "verify"] {
        let r = bkcache(&[cmd, &src(dir)]);
        assert_eq!(r.code, 1, "{name}: {cmd} exit code: {}", r.stderr);
        for e in expected {
            assert!(r.stderr.contains(e), "{name}: {cmd}: {:?} not in {}", e, r.stderr);
        }
        assert!(r.stderr.starts_with("error: "), "{name}: {cmd}: {}", r.stderr);
    }
    let out = dir.with_extension("out");
    let r = bkcache(&["copy", "--from", &src(dir), "--to", &dest(&out, "")]);
    assert_eq!(r.code, 1, "{name}: copy: {}", r.stderr);
    assert!(r.stderr.contains("nothing to copy"), "{name}: copy: {}", r.stderr);
    assert!(!out.join("index.json").exists(), "{name}: copy wrote an index.json");
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

fn valid_digest(i: usize) -> String {
    bkcache_core::Digest::of_bytes(format!("record-{i}").as_bytes()).to_string()
}

#[test]
fn malformed_and_mistyped_cache_options() {
    let f = src(&fixture_cache("local-max"));
    let long = format!("type=local,src=/tmp/{}", "a".repeat(100_000));
    let bad_utf = format!("type=local,src={}", "\u{feff}\u{202e}x");
    let cases: Vec<(Vec<String>, i32, &[&str])> = vec![
        (args(&["inspect", "type=local,src=\"unterminated"]), 2, &["bare \""]),
        // The other malformed strings are unit tests of the parser (cache-core `spec.rs`); the
        // ones here show the CLI's exit code and message for each kind of input.
        (args(&["inspect", ",,,"]), 2, &["expected exactly one cache, got 0"]),
        (args(&["inspect", ""]), 2, &["expected exactly one cache, got 0"]),
        (
            args(&["inspect", "[{\"type\":\"local\""]),
            2,
            &["invalid JSON cache option"],
        ),
        (args(&["inspect", "[]"]), 2, &["expected exactly one cache, got 0"]),
        (
            args(&[
                "inspect",
                "[{\"type\":\"local\",\"src\":\"/a\"},{\"type\":\"local\",\"src\":\"/b\"}]",
            ]),
            2,
            &["expected exactly one cache, got 2"],
        ),
        (
            args(&["inspect", "{\"type\":\"local\",\"src\":\"/x\",\"tag\":7}"]),
            2,
            &["\"tag\" is a number; every value must be a string (write \"7\")"],
        ),
        (
            args(&["inspect", "type=LOCAL,src=/x"]),
            2,
            &["unknown cache type \"LOCAL\""],
        ),
        (
            args(&["inspect", "type=local,src=/x,mode=max"]),
            2,
            &["mode is only for the other direction"],
        ),
        (args(&["inspect", &long]), 1, &["File name too long"]),
        (args(&["inspect", &bad_utf]), 4, &["no cache found"]),
        // Wrong types for export options.
        (
            args(&[
                "copy",
                "--from",
                &f,
                "--to",
                "type=local,dest=/tmp/x,oci-mediatypes=yes",
            ]),
            2,
            &["expected a boolean"],
        ),
        (
            args(&["copy", "--from", &f, "--to", "type=local,dest=/tmp/x,image-manifest=2"]),
            2,
            &["expected a boolean"],
        ),
        (
            args(&[
                "copy",
                "--from",
                &f,
                "--to",
                "type=local,dest=/tmp/x,ignore-error=maybe",
            ]),
            2,
            &["expected a boolean"],
        ),
        (
            args(&[
                "copy",
                "--from",
                &f,
                "--to",
                "type=local,dest=/tmp/x,compression-level=abc",
            ]),
            2,
            &["expected an integer from -2 to 9"],
        ),
        (
            args(&[
                "copy",
                "--from",
                &f,
                "--to",
                "type=local,dest=/tmp/x,compression=zstd,compression-level=99",
            ]),
            2,
            &["expected an integer from 0 to 22"],
        ),
        (
            args(&[
                "copy",
                "--from",
                &f,
                "--to",
                "type=local,dest=/tmp/x,force-compression=sometimes",
            ]),
            2,
            &["expected a boolean"],
        ),
        (
            args(&[
                "copy",
                "--from",
                &f,
                "--to",
                "type=local,dest=/tmp/x",
                "--parallelism",
                "0",
            ]),
            2,
            &["1..=256"],
        ),
        (
            args(&[
                "copy",
                "--from",
                &f,
                "--to",
                "type=local,dest=/tmp/x",
                "--parallelism",
                "many",
            ]),
            2,
            &["invalid value"],
        ),
        (
            args(&[
                "copy",
                "--from",
                &f,
                "--to",
                "type=local,dest=/tmp/x",
                "--max-uncompressed",
                "-1",
            ]),
            2,
            &["unexpected argument"],
        ),
        (args(&["verify", &f, "--parallelism", "99999"]), 2, &["1..=256"]),
        (
            args(&["prune", &f, "--keep-duration", "7days"]),
            2,
            &["expected a number with unit"],
        ),
        (
            args(&["prune", &f, "--keep-storage", "lots"]),
            2,
            &["expected a number with an optional unit"],
        ),
        (
            args(&["prune", &f, "--keep-storage", "1.5e300GB"]),
            2,
            &["for attribute \"size\""],
        ),
        (
            args(&["prune", &f, "--min-age", "forever"]),
            2,
            &["expected a number with unit"],
        ),
        // Backends check their values before any request (no server needed).
        (
            args(&[
                "inspect",
                "type=s3,bucket=b,region=r,endpoint_url=http://127.0.0.1:1,touch_refresh=forever",
            ]),
            2,
            &["touch_refresh", "Go duration"],
        ),
        (
            args(&[
                "inspect",
                "type=s3,bucket=b,region=r,endpoint_url=http://127.0.0.1:1,retry_max_attempts=-1",
            ]),
            2,
            &["retry_max_attempts must be a positive integer"],
        ),
        (
            args(&[
                "inspect",
                "type=s3,bucket=b,region=r,endpoint_url=http://127.0.0.1:1,use_path_style=maybe",
            ]),
            2,
            &["expected a boolean"],
        ),
        (
            args(&["inspect", "type=s3,bucket=b,region=r,endpoint_url=ftp://127.0.0.1:1"]),
            2,
            &["endpoint_url"],
        ),
        (
            args(&[
                "inspect",
                "type=azblob,account_url=http://127.0.0.1:1/a,container=UPPER_case",
            ]),
            2,
            &["container name"],
        ),
        (
            args(&["inspect", "type=registry,ref="]),
            2,
            &["requires attribute \"ref\""],
        ),
        // Digests and references: refused before any request or file access, as usage errors.
        (
            args(&["inspect", &format!("{f},digest=sha256:../../x")]),
            2,
            &["for attribute \"digest\""],
        ),
        (
            args(&["inspect", &format!("{f},digest={}", MANIFEST.to_uppercase())]),
            2,
            &["for attribute \"digest\""],
        ),
        (
            args(&["inspect", &format!("{f},digest=sha512:{}", "a".repeat(128))]),
            2,
            &["for attribute \"digest\""],
        ),
        (
            args(&["inspect", &format!("{f},digest=sha256:83b2")]),
            2,
            &["for attribute \"digest\""],
        ),
        (
            args(&["inspect", &format!("{f},tag=../../etc")]),
            4,
            &["no tag \"../../etc\""],
        ),
        (
            args(&["inspect", "type=registry,ref=UPPER/Case:tag"]),
            2,
            &["for attribute \"ref\""],
        ),
        (
            args(&["inspect", "type=registry,ref=a/b@sha256:../x"]),
            2,
            &["for attribute \"ref\"", "invalid digest"],
        ),
        (
            args(&["inspect", "type=registry,ref=a/b:c:d"]),
            2,
            &["for attribute \"ref\""],
        ),
    ];
    for (argv, code, expected) in cases {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let r = bkcache(&argv);
        let shown: Vec<String> = argv.iter().map(|a| a.chars().take(100).collect()).collect();
        let stderr: String = r.stderr.chars().take(2000).collect();
        assert_eq!(r.code, code, "{shown:?}: {stderr}");
        for e in expected {
            assert!(r.stderr.contains(e), "{shown:?}: {e:?} not in {stderr}");
        }
    }
}

#[test]
fn bad_digest_and_ref_values_are_usage_errors() {
    let f = src(&fixture_cache("local-max"));
    for spec in [
        format!("{f},digest=sha256:../../x"),
        format!("{f},digest=md5:abc"),
        "type=registry,ref=UPPER/Case:tag".to_owned(),
    ] {
        let r = bkcache(&["inspect", &spec]);
        assert_eq!(r.code, 2, "{spec}: {}", r.stderr);
    }
}

#[test]
fn bad_cache_configs_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "self-loop",
            Box::new(|c| c["records"][0]["inputs"] = json!([[{"link": 0}]])),
            &["invalid looping record"],
        ),
        (
            "two-record-loop",
            Box::new(|c| {
                c["records"][0]["inputs"] = json!([[{"link": 1}]]);
                c["records"][1]["inputs"] = json!([[{"link": 0}]]);
            }),
            &["invalid looping record"],
        ),
        (
            "link-out-of-range",
            Box::new(|c| c["records"][0]["inputs"] = json!([[{"link": 999}]])),
            &["invalid record ID", "links to record 999"],
        ),
        (
            "link-negative",
            Box::new(|c| c["records"][0]["inputs"] = json!([[{"link": -5}]])),
            &["invalid record ID"],
        ),
        (
            "link-huge",
            Box::new(|c| c["records"][0]["inputs"] = json!([[{"link": i64::MAX}]])),
            &["invalid record ID"],
        ),
        (
            "empty-input-slot",
            Box::new(|c| c["records"][0]["inputs"] = json!([[]])),
            &["invalid empty input"],
        ),
        (
            "result-layer-out-of-range",
            Box::new(|c| {
                let r = c["records"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|r| r.get("layers").is_some())
                    .unwrap();
                r["layers"][0]["layer"] = json!(999);
            }),
            &["invalid layer index 999"],
        ),
        (
            "result-layer-negative",
            Box::new(|c| {
                let r = c["records"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|r| r.get("layers").is_some())
                    .unwrap();
                r["layers"][0]["layer"] = json!(-1);
            }),
            &["invalid layer index -1"],
        ),
        (
            "layer-parent-out-of-range",
            Box::new(|c| {
                for l in c["layers"].as_array_mut().unwrap() {
                    if l.get("parent").and_then(Value::as_i64) != Some(-1) {
                        l["parent"] = json!(12345);
                    }
                }
            }),
            &["invalid layer index 12345"],
        ),
        (
            "layer-parent-loop",
            Box::new(|c| {
                let layers = c["layers"].as_array_mut().unwrap();
                for (i, l) in layers.iter_mut().enumerate() {
                    l["parent"] = json!(i as i64); // each layer its own parent
                }
            }),
            &["invalid looping layer"],
        ),
        (
            "chain-index-out-of-range",
            Box::new(|c| c["records"][0]["chains"] = json!([{"layers": [0, 77], "createdAt": "2026-01-01T00:00:00Z"}])),
            &["invalid layer index 77"],
        ),
        (
            "layers-not-an-array",
            Box::new(|c| c["layers"] = json!("x")),
            &["not valid JSON of the expected shape"],
        ),
        (
            "records-an-object",
            Box::new(|c| c["records"] = json!({})),
            &["not valid JSON of the expected shape"],
        ),
        (
            "record-digest-a-number",
            Box::new(|c| c["records"][0]["digest"] = json!(5)),
            &["not valid JSON of the expected shape"],
        ),
        (
            "created-at-not-a-time",
            Box::new(|c| {
                let r = c["records"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|r| r.get("layers").is_some())
                    .unwrap();
                r["layers"][0]["createdAt"] = json!("yesterday");
            }),
            &["invalid time \"yesterday\""],
        ),
        (
            "created-at-feb-30",
            Box::new(|c| {
                let r = c["records"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|r| r.get("layers").is_some())
                    .unwrap();
                r["layers"][0]["createdAt"] = json!("2026-02-30T00:00:00Z");
            }),
            &["invalid time"],
        ),
        (
            "parent-a-string",
            Box::new(|c| c["layers"][0]["parent"] = json!("0")),
            &["not valid JSON of the expected shape"],
        ),
        (
            "layer-index-a-float",
            Box::new(|c| {
                let r = c["records"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|r| r.get("layers").is_some())
                    .unwrap();
                r["layers"][0]["layer"] = json!(1.5);
            }),
            &["not valid JSON of the expected shape"],
        ),
        (
            "layer-index-overflows-i64",
            Box::new(|c| c["layers"][0]["parent"] = json!(u64::MAX)),
            &["not valid JSON of the expected shape"],
        ),
        (
            "blob-path-traversal",
            Box::new(|c| c["layers"][0]["blob"] = json!("sha256:../../../etc/passwd")),
            &["invalid digest \"sha256:../../../etc/passwd\""],
        ),
        (
            "blob-uppercase",
            Box::new(|c| {
                let b = c["layers"][0]["blob"].as_str().unwrap().to_uppercase();
                c["layers"][0]["blob"] = json!(b);
            }),
            &["invalid digest \"SHA256:"],
        ),
        (
            "blob-uppercase-hex",
            Box::new(|c| {
                let b = c["layers"][0]["blob"].as_str().unwrap();
                let b = format!("sha256:{}", b[7..].to_uppercase());
                c["layers"][0]["blob"] = json!(b);
            }),
            &["invalid digest"],
        ),
        (
            "record-digest-sha512",
            Box::new(|c| c["records"][0]["digest"] = json!(format!("sha512:{}", "ab".repeat(64)))),
            &["invalid digest \"sha512:"],
        ),
        (
            "record-digest-with-nul",
            Box::new(|c| c["records"][0]["digest"] = json!(format!("sha256:{}\u{0}", "a".repeat(63)))),
            &["invalid digest"],
        ),
    ];
    for (name, edit, expected) in cases {
        let dir = config_edit(t, name, edit);
        assert_refused(&dir, expected);
    }

    // Not JSON, the wrong JSON, JSON nested past serde's recursion limit.
    let raw: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("config-not-json", b"not json at all".to_vec(), &["not valid JSON"]),
        ("config-null", b"null".to_vec(), &["not valid JSON"]),
        ("config-empty", Vec::new(), &["not valid JSON"]),
        ("config-binary", vec![0xff, 0xfe, 0x00, 0x7b], &["not valid JSON"]),
        (
            "config-truncated",
            {
                let b = std::fs::read(blob_path(
                    &fixture_cache("local-max"),
                    "sha256:69f9d08aca7363311b8dc19aa453e7962e95ef402280bf0f38960c7407ed5770",
                ))
                .unwrap();
                b[..b.len() / 2].to_vec()
            },
            &["not valid JSON"],
        ),
    ];
    for (name, bytes, expected) in raw {
        let dir = config_bytes(t, name, bytes);
        assert_refused(&dir, expected);
    }
}

#[test]
fn config_that_is_a_json_array_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = config_bytes(tmp.path(), "config-array", b"[]".to_vec());
    assert_refused(&dir, &["not valid JSON"]);
}

#[test]
fn huge_but_valid_configs_load_in_reasonable_time() {
    // 200 000 records without results (a 19 MB config: past BuildKit's 1 MiB import limit,
    // which bkcache accepts with a warning) and one record with 2 000 input slots.
    let tmp = tempfile::tempdir().unwrap();
    let dir = config_edit(tmp.path(), "many-records", |c| {
        let recs = c["records"].as_array_mut().unwrap();
        for i in 0..200_000 {
            recs.push(json!({"digest": valid_digest(i)}));
        }
    });
    let start = std::time::Instant::now();
    let j = bkcache(&["inspect", &src(&dir), "--json"]).ok().json();
    assert_eq!(j["records"], 200_013);
    assert!(
        j["warnings"]
            .to_string()
            .contains("BuildKit v0.32 refuses to import more than"),
        "{}",
        j["warnings"]
    );
    let out = tmp.path().join("out");
    let c = bkcache(&["copy", "--from", &src(&dir), "--to", &dest(&out, "")]).ok();
    assert!(c.stderr.contains("BuildKit"), "{}", c.stderr);
    bkcache(&["verify", &src(&out)]).ok();
    let took = start.elapsed();
    assert!(took.as_secs() < 60, "200k records took {took:?}");

    // An unknown field nested 100 000 deep is skipped without recursion (no stack overflow).
    let deep = format!("{{\"unknown\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let dir = config_bytes(tmp.path(), "deep-unknown-field", deep.into_bytes());
    let r = bkcache(&["inspect", &src(&dir), "--json"]).ok();
    assert_eq!(r.json()["records"], 0);

    let dir = config_edit(tmp.path(), "wide-record", |c| {
        c["records"][0]["inputs"] = json!((0..2000).map(|_| json!([{"link": 1}])).collect::<Vec<_>>());
    });
    let r = bkcache(&["inspect", &src(&dir), "--json"]).ok();
    assert_eq!(r.json()["records"], 13);
}

#[test]
fn lying_manifests_and_index_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    type Edit = Box<dyn Fn(&mut Value)>;
    let manifests: Vec<(&str, Edit, &[&str])> = vec![
        (
            "media-type-mismatch",
            Box::new(|m| m["mediaType"] = json!("application/vnd.oci.image.index.v1+json")),
            &["mediaType in manifest does not match"],
        ),
        (
            "ambiguous",
            Box::new(|m| m["manifests"] = json!([])),
            &["ambiguous manifest and manifest list"],
        ),
        (
            "config-declared-300mib",
            Box::new(|m| m["config"]["size"] = json!(300u64 << 20)),
            &["too large", "limit 268435456"],
        ),
        (
            "config-declared-too-small",
            Box::new(|m| m["config"]["size"] = json!(10)),
            &["corrupt"],
        ),
        (
            "config-declared-negative",
            Box::new(|m| m["config"]["size"] = json!(-1)),
            &["not valid JSON of the expected shape"],
        ),
        (
            "config-missing",
            Box::new(|m| m["config"]["digest"] = json!(valid_digest(1))),
            &["not found"],
        ),
        (
            "layer-uppercase",
            Box::new(|m| m["layers"][0]["digest"] = json!(m["layers"][0]["digest"].as_str().unwrap().to_uppercase())),
            &["invalid digest"],
        ),
        (
            "layer-traversal",
            Box::new(|m| m["layers"][0]["digest"] = json!("sha256:../../../../tmp/x")),
            &["invalid digest \"sha256:../../../../tmp/x\""],
        ),
        (
            "layers-not-an-array",
            Box::new(|m| m["layers"] = json!({"a": 1})),
            &["not valid JSON of the expected shape"],
        ),
        (
            "schema-version-string",
            Box::new(|m| m["schemaVersion"] = json!("2")),
            &["not valid JSON of the expected shape"],
        ),
    ];
    for (name, edit, expected) in manifests {
        let dir = manifest_edit(t, name, edit);
        assert_refused(&dir, expected);
    }

    let indexes: Vec<(&str, Edit, &[&str])> = vec![
        (
            "manifest-declared-300mib",
            Box::new(|i| i["manifests"][0]["size"] = json!(300u64 << 20)),
            &["too large", "limit 268435456"],
        ),
        (
            "manifest-declared-too-small",
            Box::new(|i| i["manifests"][0]["size"] = json!(100)),
            &["corrupt"],
        ),
        (
            "manifest-digest-uppercase",
            Box::new(|i| i["manifests"][0]["digest"] = json!(MANIFEST.to_uppercase())),
            &["invalid digest"],
        ),
        (
            "manifest-digest-traversal",
            Box::new(|i| i["manifests"][0]["digest"] = json!("sha256:../../index")),
            &["invalid digest \"sha256:../../index\""],
        ),
        (
            "manifest-missing",
            Box::new(|i| i["manifests"][0]["digest"] = json!(valid_digest(2))),
            &["not found"],
        ),
        (
            "manifests-not-an-array",
            Box::new(|i| i["manifests"] = json!("x")),
            &["index.json"],
        ),
        (
            "manifest-is-its-own-index",
            Box::new(|i| i["manifests"][0]["mediaType"] = json!("application/vnd.oci.image.index.v1+json")),
            &[],
        ),
    ];
    for (name, edit, expected) in indexes {
        let dir = index_edit(t, name, edit);
        if name == "manifest-is-its-own-index" {
            // The media type in index.json is only a hint: the bytes decide (as BuildKit).
            bkcache(&["verify", &src(&dir)]).ok();
            continue;
        }
        assert_refused(&dir, expected);
    }

    // A manifest blob that is not JSON, empty, or nested 100 000 deep, under a correct digest.
    // The nesting is a shape error, never a stack overflow: the manifest is detected with
    // `IgnoredAny` (serde_json skips nested values with a heap stack, not recursion) and the
    // typed decode refuses an array where a descriptor belongs.
    let deep = format!(
        "{{\"schemaVersion\":2,\"config\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for (name, bytes, expected) in [
        ("manifest-not-json", b"<html>".to_vec(), "not valid JSON"),
        ("manifest-empty", Vec::new(), "not valid JSON"),
        (
            "manifest-deep-nesting",
            deep.into_bytes(),
            "not valid JSON of the expected shape",
        ),
    ] {
        let dir = index_edit(t, name, |_| {});
        let d = put_blob(&dir, &bytes);
        let mut idx = read_json(&dir.join("index.json"));
        idx["manifests"][0]["digest"] = json!(d);
        idx["manifests"][0]["size"] = json!(bytes.len());
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
        assert_refused(&dir, &[expected]);
    }
}

/// A tar holding one file of `size` zero bytes (a sparse file, so nothing big is written).
fn zeros_tar(tmp: &Path, size: u64) -> Vec<u8> {
    let d = tmp.join("zeros-src");
    std::fs::create_dir_all(&d).unwrap();
    let f = std::fs::File::create(d.join("zeros")).unwrap();
    f.set_len(size).unwrap();
    tar_dir(&d)
}

#[test]
fn decompression_bombs_and_broken_layers() {
    let tmp = tempfile::tempdir().unwrap();
    // 64 MiB of zeros in a ~64 KiB gzip layer: force-compression stops at the limit.
    let bomb = tmp.path().join("bomb");
    let layers = write_cache_of_tars(&bomb, &[zeros_tar(tmp.path(), 64 << 20)]);
    let gz = std::fs::metadata(blob_path(&bomb, &layers[0])).unwrap().len();
    assert!(gz < 1 << 20, "the bomb is small: {gz}");
    let out = tmp.path().join("bomb-out");
    let r = bkcache(&[
        "copy",
        "--from",
        &src(&bomb),
        "--to",
        &dest(&out, "compression=zstd,force-compression=true"),
        "--max-uncompressed",
        &(16u64 << 20).to_string(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("too large") && r.stderr.contains(&layers[0]) && r.stderr.contains("limit 16777216"),
        "{}",
        r.stderr
    );
    assert!(!out.join("index.json").exists());
    assert_blobs_intact(&out);
    // Scan streams the tar (nothing unpacked, memory bounded): it reads the bomb through
    // under the default bound, and stops at a lower one (scan and copy --scan alike).
    let r = bkcache(&["scan", &src(&bomb), "--json"]).ok();
    assert_eq!(r.json()["files_scanned"], 1);
    let limit = (16u64 << 20).to_string();
    for args in [
        vec!["scan", &src(&bomb), "--max-uncompressed", &limit],
        vec![
            "copy",
            "--scan",
            "--from",
            &src(&bomb),
            "--to",
            &dest(&out, ""),
            "--max-uncompressed",
            &limit,
        ],
    ] {
        let r = bkcache(&args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("too large") && r.stderr.contains(&layers[0]) && r.stderr.contains("limit 16777216"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(!out.join("index.json").exists(), "copy --scan stopped before copying");

    // A "gzip" layer that is not gzip: conversion and scan say so.
    let garbage = tmp.path().join("garbage");
    let layers = write_cache_of_tars(&garbage, &[b"x".to_vec()]);
    let path = blob_path(&garbage, &layers[0]);
    let junk = b"this is not gzip data at all, just text".to_vec();
    // Re-point the cache at the junk blob (manifest and index re-hashed).
    let fake = edit_layer(&garbage, &layers[0], &junk);
    std::fs::remove_file(path).unwrap();
    for args in [
        vec![
            "copy".to_owned(),
            "--from".into(),
            src(&fake),
            "--to".into(),
            dest(
                &tmp.path().join("garbage-out"),
                "compression=zstd,force-compression=true",
            ),
        ],
        vec!["scan".to_owned(), src(&fake)],
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = bkcache(&a);
        assert_eq!(r.code, 1, "{a:?}: {}", r.stderr);
        assert!(
            r.stderr.to_lowercase().contains("gzip") || r.stderr.contains("header"),
            "{a:?}: {}",
            r.stderr
        );
    }

    // A tar cut in the middle of an entry: scan reports it.
    let cut = tmp.path().join("cut");
    let mut tar = zeros_tar(tmp.path(), 100_000);
    tar.truncate(20_000);
    write_cache_of_tars(&cut, &[tar]);
    let r = bkcache(&["scan", &src(&cut)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("truncated") || r.stderr.contains("EOF"),
        "{}",
        r.stderr
    );
}

/// Replace layer `old` of the one-result cache at `dir` by `bytes` (a new blob, same
/// annotations), re-hashing config, manifest and index.json.
fn edit_layer(dir: &Path, old: &str, bytes: &[u8]) -> PathBuf {
    let new = put_blob(dir, bytes);
    let mut idx = read_json(&dir.join("index.json"));
    let md = idx["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let mut m = read_json(&blob_path(dir, &md));
    let cd = m["config"]["digest"].as_str().unwrap().to_owned();
    let c = std::fs::read_to_string(blob_path(dir, &cd)).unwrap().replace(old, &new);
    m["config"]["digest"] = json!(put_blob(dir, c.as_bytes()));
    m["config"]["size"] = json!(c.len());
    m["layers"][0]["digest"] = json!(new);
    m["layers"][0]["size"] = json!(bytes.len());
    let mb = serde_json::to_vec(&m).unwrap();
    idx["manifests"][0]["digest"] = json!(put_blob(dir, &mb));
    idx["manifests"][0]["size"] = json!(mb.len());
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    dir.to_path_buf()
}

/// A ustar header for `name` of type `kind` whose size field holds `size` in GNU base-256.
fn tar_header_base256(name: &str, kind: u8, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000777\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124] = 0x80;
    h[128..136].copy_from_slice(&size.to_be_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157] = b'x';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

#[test]
fn tar_entries_with_absurd_sizes_are_reported_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    // A regular file claiming 2^63 bytes: the scan reads to the end of the layer and says so.
    let mut tar = tar_header_base256("huge-file", b'0', 1 << 63).to_vec();
    tar.extend_from_slice(&[0u8; 1024]);
    let dir = tmp.path().join("huge-file");
    write_cache_of_tars(&dir, &[tar]);
    let r = bkcache(&["scan", &src(&dir)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("truncated"), "{}", r.stderr);
}

#[test]
fn symlink_entry_with_a_size_near_u64_max_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tar = tar_header_base256("evil-link", b'2', u64::MAX).to_vec();
    tar.extend_from_slice(&[0u8; 1024]);
    let dir = tmp.path().join("evil");
    write_cache_of_tars(&dir, &[tar]);
    let r = bkcache(&["scan", &src(&dir)]); // asserts no panic
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("invalid tar"), "{}", r.stderr);
}
