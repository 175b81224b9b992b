//! Damaged caches and bad input: a clear error or warning, never a panic, never a
//! half-written destination.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

const LAYER: &str = "sha256:9966d6e1aca4ce2d128bf11e0fc0a477eca0cfa97b5c3f6caf06fa1aec716cdd";

fn damaged_copy(tmp: &Path, name: &str) -> std::path::PathBuf {
    let dir = tmp.join(name);
    copy_tree(&fixture_cache("local-max"), &dir);
    dir
}

fn assert_nothing_written(out: &Path) {
    assert!(
        !out.join("index.json").exists(),
        "no index.json may name a cache that was not fully written"
    );
    assert_blobs_intact(out);
}

#[test]
fn corrupt_blob_is_reported_and_never_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = damaged_copy(tmp.path(), "corrupt");
    let path = blob_path(&dir, LAYER);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let v = bkcache(&["verify", &src(&dir), "--json"]);
    assert_eq!(v.code, 3, "verify exits 3 on problems: {}", v.stderr);
    let j = v.json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["problems"][0]["digest"], LAYER);
    assert!(j["problems"][0]["problem"].as_str().unwrap().contains("corrupt"));

    let out = tmp.path().join("out");
    let c = bkcache(&["copy", "--from", &src(&dir), "--to", &dest(&out, "mode=max")]);
    assert_eq!(c.code, 1, "{}", c.stderr);
    assert!(c.stderr.contains(LAYER) && c.stderr.contains("corrupt"), "{}", c.stderr);
    assert_nothing_written(&out);
    assert!(!blob_path(&out, LAYER).exists());

    // ignore-error=true: a warning and exit 0, still nothing half-written.
    let c = bkcache(&[
        "copy",
        "--from",
        &src(&dir),
        "--to",
        &dest(&out, "mode=max,ignore-error=true"),
    ]);
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert!(c.stderr.contains("ignore-error=true"), "{}", c.stderr);
    assert_nothing_written(&out);
}

#[test]
fn deleted_blob_skips_the_results_that_need_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = damaged_copy(tmp.path(), "deleted");
    std::fs::remove_file(blob_path(&dir, LAYER)).unwrap();

    let v = bkcache(&["verify", &src(&dir), "--json"]);
    assert_eq!(v.code, 3);
    assert!(v.json()["problems"][0]["problem"]
        .as_str()
        .unwrap()
        .contains("not found"));

    // As BuildKit: the results whose chain needs the blob are dropped, with a warning.
    let out = tmp.path().join("out");
    let c = bkcache(&["copy", "--from", &src(&dir), "--to", &dest(&out, "mode=max"), "--json"]).ok();
    assert!(c.stderr.contains(LAYER) && c.stderr.contains("missing"), "{}", c.stderr);
    let s = bkcache(&["inspect", &src(&out), "--json"]).ok().json();
    assert_eq!(s["records"], 13, "every cache key kept");
    assert!(
        s["results"].as_u64().unwrap() < 7,
        "results over the missing blob dropped"
    );
    assert!(s["layers"].as_array().unwrap().iter().all(|l| l["digest"] != LAYER));
    bkcache(&["verify", &src(&out)]).ok();
}

#[test]
fn truncated_index_json_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = damaged_copy(tmp.path(), "truncated");
    let index = dir.join("index.json");
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() / 2]).unwrap();

    let i = bkcache(&["inspect", &src(&dir)]);
    assert_eq!(i.code, 1);
    assert!(i.stderr.contains("index.json is not valid JSON"), "{}", i.stderr);

    let out = tmp.path().join("out");
    let c = bkcache(&["copy", "--from", &src(&dir), "--to", &dest(&out, "")]);
    assert_eq!(c.code, 1);
    assert!(
        c.stderr.contains("nothing to copy") && c.stderr.contains("index.json"),
        "{}",
        c.stderr
    );
    assert!(!out.exists(), "no destination created when nothing could be imported");

    // Exporting into a directory whose index.json is broken refuses to overwrite it.
    let c = bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &dest(&dir, ""),
    ]);
    assert_eq!(c.code, 1);
    assert!(c.stderr.contains("refusing to overwrite"), "{}", c.stderr);
    assert_eq!(
        std::fs::read(&index).unwrap(),
        &bytes[..bytes.len() / 2],
        "broken index.json left as it was"
    );
}

#[test]
fn path_traversal_digests_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    // In index.json.
    let dir = damaged_copy(tmp.path(), "traversal-index");
    let index = dir.join("index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let bad = text.replace(
        "sha256:83b2b9fb42354a1f2928260f80624dd4bf1dd4dd5598626425eb0eba1a2abf6a",
        "sha256:../../x",
    );
    std::fs::write(&index, bad).unwrap();
    let i = bkcache(&["inspect", &src(&dir)]);
    assert_eq!(i.code, 1);
    assert!(i.stderr.contains("invalid digest \"sha256:../../x\""), "{}", i.stderr);

    // In a manifest's layer descriptor (manifest re-hashed so only the bad digest is wrong).
    let dir = damaged_copy(tmp.path(), "traversal-manifest");
    let m = std::fs::read_to_string(blob_path(
        &dir,
        "sha256:83b2b9fb42354a1f2928260f80624dd4bf1dd4dd5598626425eb0eba1a2abf6a",
    ))
    .unwrap();
    let m = m.replace(LAYER, "sha256:../../x");
    let d = bkcache_core::Digest::of_bytes(m.as_bytes());
    std::fs::write(blob_path(&dir, d.as_str()), &m).unwrap();
    let idx = std::fs::read_to_string(dir.join("index.json"))
        .unwrap()
        .replace(
            "sha256:83b2b9fb42354a1f2928260f80624dd4bf1dd4dd5598626425eb0eba1a2abf6a",
            d.as_str(),
        )
        .replace("\"size\":2538", &format!("\"size\":{}", m.len()));
    std::fs::write(dir.join("index.json"), idx).unwrap();
    let out = tmp.path().join("out");
    let c = bkcache(&["copy", "--from", &src(&dir), "--to", &dest(&out, "")]);
    assert_eq!(c.code, 1);
    assert!(c.stderr.contains("invalid digest \"sha256:../../x\""), "{}", c.stderr);
    assert!(!tmp.path().join("x").exists() && !out.exists());

    // As an attribute.
    let c = bkcache(&[
        "inspect",
        &format!("{},digest=sha256:../../x", src(&fixture_cache("local-max"))),
    ]);
    assert_eq!(c.code, 2, "a bad attribute value is a usage error");
    assert!(
        c.stderr
            .contains("invalid value \"sha256:../../x\" for attribute \"digest\""),
        "{}",
        c.stderr
    );
}

#[test]
fn missing_source_is_a_warning_and_the_copy_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = bkcache(&[
        "copy",
        "--from",
        &src(&tmp.path().join("nope")),
        "--from",
        &format!("{},tag=nope", src(&fixture_cache("local-max"))),
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &dest(&out, ""),
    ])
    .ok();
    assert!(c.stderr.contains("no cache there"), "{}", c.stderr);
    assert!(
        c.stderr.contains("no tag \"nope\" (tags present: latest)"),
        "{}",
        c.stderr
    );
    bkcache(&["verify", &src(&out)]).ok();

    let c = bkcache(&[
        "copy",
        "--from",
        &src(&tmp.path().join("nope")),
        "--to",
        &dest(&out, ""),
    ]);
    assert_eq!(c.code, 4, "the only source has no cache: a first run");
    assert!(c.stderr.contains("no cache to copy"), "{}", c.stderr);
}

fn check_usage_error(args: &[&str], expected: &[&str]) {
    let r = bkcache(args);
    assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    for e in expected {
        assert!(r.stderr.contains(e), "{args:?}: {} should contain {e}", r.stderr);
    }
}

#[test]
fn bad_options_name_what_is_wrong_and_what_is_allowed() {
    let f = src(&fixture_cache("local-max"));
    check_usage_error(
        &["copy", "--from", &f, "--to", "type=local,dest=/tmp/x,mode=maximum"],
        &["mode", "maximum", "min or max"],
    );
    check_usage_error(
        &["copy", "--from", &f, "--to", "type=local,src=/tmp/x"],
        &[
            "unknown attribute \"src\"",
            "export (--to)",
            "dest",
            "only for the other direction",
        ],
    );
    check_usage_error(
        &["copy", "--from", &f, "--to", "type=local,dest=/tmp/x,bogus=1"],
        &["unknown attribute \"bogus\"", "allowed: "],
    );
    check_usage_error(
        &["copy", "--from", &f, "--to", "type=nosuch,dest=/tmp/x"],
        &["unknown cache type \"nosuch\"", "local"],
    );
    check_usage_error(
        &[
            "copy",
            "--from",
            &f,
            "--to",
            "type=s3,bucket=b,region=r,upload_parallelism=0",
        ],
        &["upload_parallelism must be a positive integer"],
    );
    check_usage_error(
        &["copy", "--from", &f, "--to", "type=local"],
        &["requires attribute \"dest\""],
    );
    check_usage_error(
        &["copy", "--from", "type=local", "--to", "type=local,dest=/tmp/x"],
        &["requires attribute \"src\""],
    );
    check_usage_error(
        &[
            "copy",
            "--from",
            &f,
            "--to",
            "type=local,dest=/tmp/x,oci-mediatypes=false,image-manifest=true",
        ],
        &["OCI mediatypes are required"],
    );
    check_usage_error(&["copy", "--from", &f, "--to", "dest=/tmp/x"], &["type required"]);
    check_usage_error(
        &["copy", "--from", &f, "--to", "type=local,dest=/tmp/x,compression=lz4"],
        &["compression", "lz4", "gzip"],
    );
    check_usage_error(
        &[
            "copy",
            "--from",
            &f,
            "--to",
            "type=local,dest=/tmp/x,token=hunter2,bogus=1",
        ],
        &["unknown attribute"],
    );
    let r = bkcache(&["copy", "--from", &f, "--to", "type=local,dest=/tmp/x,token=hunter2"]);
    assert!(!r.stderr.contains("hunter2"), "secrets never printed: {}", r.stderr);
}
