//! The rules `prune` keeps, on a local directory and on S3 (moto): a dry run reports exactly
//! what the real run does; `--keep-duration` ages tags by their last write, so a fresh export
//! of old layers survives; a prune that would leave a tag or the location with no cache is
//! refused with nothing changed.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::s3::*;
use common::*;
use serde_json::Value;

/// Every file under `dir` with its bytes (the cache, byte for byte).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn two_tags(tmp: &Path, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    copy_tree(&fixture_cache("local-two-tags"), &dir);
    dir
}

fn index_entry_digest(dir: &Path, tag: &str) -> String {
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Make a local tag look last written `days` ago (its manifest blob's mtime: the local clock).
fn age_local_tag(dir: &Path, tag: &str, days: u64) {
    let digest = index_entry_digest(dir, tag);
    let path = dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let file = std::fs::File::options().append(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(days * 86400))
        .unwrap();
}

/// The digests a prune report says it deletes.
fn deleted_of(report: &Value) -> BTreeSet<String> {
    report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}

fn without_dry_run(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("dry_run");
    v
}

/// Run `prune` dry, then for real, on the same state: the two reports must match, and the blobs
/// gone afterwards must be exactly the ones the dry run listed.
fn dry_equals_real_local(dir: &Path, spec: &str, policy: &[&str]) -> Value {
    let before: BTreeSet<PathBuf> = snapshot(dir).into_keys().collect();
    let mut args = vec!["prune", spec, "--min-age", "0s", "--json"];
    args.extend_from_slice(policy);
    let mut dry_args = args.clone();
    dry_args.push("--dry-run");
    let dry = bkcache(&dry_args).ok().json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(before, snapshot(dir).into_keys().collect(), "a dry run changes nothing");
    let real = bkcache(&args).ok().json();
    assert_eq!(
        without_dry_run(dry.clone()),
        without_dry_run(real.clone()),
        "{policy:?}"
    );
    let after: BTreeSet<PathBuf> = snapshot(dir).into_keys().collect();
    let gone: BTreeSet<String> = before
        .difference(&after)
        .map(|p| format!("sha256:{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    let listed = deleted_of(&dry);
    assert_eq!(gone, listed, "{policy:?}: deleted blobs");
    assert!(
        dry["blobs_deleted"].as_u64().unwrap() > 0,
        "{policy:?}: the case deletes something: {dry}"
    );
    real
}

#[test]
fn local_dry_run_reports_exactly_what_the_real_run_does() {
    let tmp = tempfile::tempdir().unwrap();
    // --keep-storage on one tag: its dropped layers, old manifest and config go; the other tag's
    // blobs stay.
    let dir = two_tags(tmp.path(), "storage");
    let feature = format!("{},tag=feature", src(&dir));
    let r = dry_equals_real_local(&dir, &feature, &["--keep-storage", "3kB"]);
    assert_eq!(r["selection"]["results_dropped"], 5, "{r}");
    assert_eq!(
        r["blobs_deleted"], 10,
        "5 layers + old manifest and config + 3 orphans: {r}"
    );
    bkcache(&["verify", &feature]).ok();
    bkcache(&["verify", &format!("{},tag=main", src(&dir))]).ok();

    // --keep-tags: the other tag and the blobs only it used.
    let dir = two_tags(tmp.path(), "tags");
    let r = dry_equals_real_local(&dir, &format!("{},tag=main", src(&dir)), &["--keep-tags", "main"]);
    assert_eq!(r["tags_removed"], serde_json::json!(["feature"]));
    assert_eq!(blob_files(&dir), 5, "main's 3 layers + manifest + config");

    // --keep-duration: a tag not written for 10 days goes whole, a fresh one stays.
    let dir = two_tags(tmp.path(), "duration");
    age_local_tag(&dir, "feature", 10);
    let r = dry_equals_real_local(&dir, &format!("{},tag=main", src(&dir)), &["--keep-duration", "7d"]);
    assert_eq!(r["tags_removed"], serde_json::json!(["feature"]), "{r}");
    let feature_row = r["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "feature")
        .unwrap()
        .clone();
    assert_eq!(
        (feature_row["action"].as_str(), feature_row["reason"].as_str()),
        (Some("removed"), Some("not written for 7d"))
    );
    bkcache(&["verify", &format!("{},tag=main", src(&dir))]).ok();
    // Named in --keep-tags, a stale tag is kept however old.
    let dir = two_tags(tmp.path(), "protected");
    age_local_tag(&dir, "feature", 10);
    let r = bkcache(&[
        "prune",
        &src(&dir),
        "--keep-duration",
        "7d",
        "--keep-tags",
        "feature",
        "--min-age",
        "0s",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(r["tags_removed"], serde_json::json!([]), "{r}");
}

fn blob_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count()
}

/// The fixture's layers were created by BuildKit more than 7 days before the test runs.
fn assert_layers_older_than(inspect: &Value, days: i64) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for l in inspect["layers"].as_array().unwrap() {
        let created: bkcache_core::GoTime = l["created_at"].as_str().unwrap().parse().unwrap();
        let age_days = (now * 1_000_000_000 - created.unix_nanos() as i64) / 86_400_000_000_000;
        assert!(age_days >= days, "layer {} is only {age_days} days old", l["digest"]);
    }
}

#[test]
fn a_fresh_export_of_old_layers_survives_keep_duration_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh");
    bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &dest(&dir, "mode=max"),
    ])
    .ok();
    let before = bkcache(&["inspect", &src(&dir), "--json"]).ok().json();
    assert_layers_older_than(&before, 8);
    let r = bkcache(&[
        "prune",
        &src(&dir),
        "--keep-duration",
        "7d",
        "--min-age",
        "0s",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(
        (r["selection"]["results_dropped"].as_u64(), r["tags_removed"].clone()),
        (Some(0), serde_json::json!([]))
    );
    let after = bkcache(&["inspect", &src(&dir), "--json"]).ok().json();
    assert_eq!(before, after, "every record and result kept");
    // Per result (the opt-in), the same policy would drop every result: refused, unchanged.
    let bytes = snapshot(&dir);
    let refused = bkcache(&[
        "prune",
        &src(&dir),
        "--keep-duration",
        "7d",
        "--age-by",
        "layer-created",
        "--min-age",
        "0s",
    ]);
    assert_eq!(refused.code, 5, "{}", refused.stderr);
    assert!(refused.stderr.contains("--allow-empty"), "{}", refused.stderr);
    assert_eq!(bytes, snapshot(&dir));
}

#[test]
fn a_prune_that_would_empty_a_tag_or_the_location_is_refused_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = two_tags(tmp.path(), "empty");
    let bytes = snapshot(&dir);
    let main = format!("{},tag=main", src(&dir));
    for (policy, says) in [
        (vec!["--keep-storage", "1"], "drops every result of main"),
        (vec!["--keep-tags", "nosuch"], "would remove every tag"),
        (vec!["--keep-duration", "0s"], "would remove every tag"),
    ] {
        for dry in [false, true] {
            let mut args = vec!["prune", main.as_str(), "--min-age", "0s"];
            args.extend_from_slice(&policy);
            if dry {
                args.push("--dry-run");
            }
            let r = bkcache(&args);
            assert_eq!(r.code, 5, "{policy:?}: {}", r.stderr);
            assert!(
                r.stderr.contains(says) && r.stderr.contains("nothing was changed"),
                "{}",
                r.stderr
            );
            assert_eq!(bytes, snapshot(&dir), "{policy:?}: the cache is byte-identical");
        }
    }
    // Asked for, it goes ahead: main is untagged and its blobs freed.
    let r = bkcache(&[
        "prune",
        &main,
        "--keep-storage",
        "1",
        "--allow-empty",
        "--min-age",
        "0s",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(r["tags_removed"], serde_json::json!(["main"]), "{r}");
    assert_eq!(bkcache(&["inspect", &main]).code, 4, "no cache under main any more");
    bkcache(&["verify", &format!("{},tag=feature", src(&dir))]).ok();
}

// ---- S3 (moto) ----

/// Every object with its ETag (the bucket, byte for byte as far as S3 tells).
fn objects(ep: &str, bucket: &str) -> BTreeMap<String, String> {
    list(ep, bucket).into_iter().map(|o| (o.key, o.etag)).collect()
}

/// A bucket with local-two-tags' `feature` under name `feature`, then, `gap` later, `main`;
/// returns the bucket and a time between the two writes.
fn two_names(ep: &str, label: &str, gap: Duration) -> (String, bkcache_core::GoTime) {
    let bucket = new_bucket(ep, label);
    let from = |tag: &str| format!("{},tag={tag}", src(&fixture_cache("local-two-tags")));
    bkcache(&[
        "copy",
        "--from",
        &from("feature"),
        "--to",
        &s3(ep, &bucket, "name=feature"),
    ])
    .ok();
    std::thread::sleep(gap);
    let between = bkcache_core::GoTime::now();
    std::thread::sleep(gap);
    bkcache(&["copy", "--from", &from("main"), "--to", &s3(ep, &bucket, "name=main")]).ok();
    (bucket, between)
}

fn dry_equals_real_s3(ep: &str, bucket: &str, spec: &str, policy: &[&str]) -> Value {
    let before = objects(ep, bucket);
    let mut args = vec!["prune", spec, "--min-age", "0s", "--json"];
    args.extend_from_slice(policy);
    let mut dry_args = args.clone();
    dry_args.push("--dry-run");
    let dry = bkcache(&dry_args).ok().json();
    assert_eq!(before, objects(ep, bucket), "a dry run changes nothing");
    let real = bkcache(&args).ok().json();
    assert_eq!(
        without_dry_run(dry.clone()),
        without_dry_run(real.clone()),
        "{policy:?}"
    );
    let after = objects(ep, bucket);
    let gone: BTreeSet<String> = before
        .keys()
        .filter(|k| !after.contains_key(*k) && k.starts_with("blobs/"))
        .map(|k| k.trim_start_matches("blobs/").to_owned())
        .collect();
    let listed = deleted_of(&dry);
    assert_eq!(gone, listed, "{policy:?}: deleted blobs");
    assert!(!listed.is_empty(), "{policy:?}: the case deletes something");
    real
}

#[test]
fn s3_dry_run_reports_exactly_what_the_real_run_does() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let (bucket, _) = two_names(&ep, "dry-storage", Duration::ZERO);
    let feature = s3(&ep, &bucket, "name=feature");
    let r = dry_equals_real_s3(&ep, &bucket, &feature, &["--keep-storage", "3kB"]);
    assert_eq!(r["selection"]["results_dropped"], 5, "{r}");
    bkcache(&["verify", &feature]).ok();
    bkcache(&["verify", &s3(&ep, &bucket, "name=main")]).ok();

    let (bucket, _) = two_names(&ep, "dry-tags", Duration::ZERO);
    let main = s3(&ep, &bucket, "name=main");
    let r = dry_equals_real_s3(&ep, &bucket, &main, &["--keep-tags", "main"]);
    assert_eq!(r["tags_removed"], serde_json::json!(["feature"]));
    assert!(!objects(&ep, &bucket).contains_key("manifests/feature"));
    bkcache(&["verify", &main]).ok();

    // moto's clock cannot be moved: "now" is 7 days after a moment between the two writes, so
    // feature (written before it) is stale and main (after it) is not.
    let (bucket, between) = two_names(&ep, "dry-duration", Duration::from_millis(1100));
    let now = bkcache_core::GoTime::from_unix(
        (between.unix_nanos() / 1_000_000_000) as i64 + 7 * 86400,
        (between.unix_nanos() % 1_000_000_000) as u32,
    )
    .to_string();
    let main = s3(&ep, &bucket, "name=main");
    let r = dry_equals_real_s3(&ep, &bucket, &main, &["--keep-duration", "7d", "--now", &now]);
    assert_eq!(r["tags_removed"], serde_json::json!(["feature"]), "{r}");
    bkcache(&["verify", &main]).ok();
}

#[test]
fn s3_keeps_a_fresh_export_of_old_layers_and_refuses_to_empty() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = new_bucket(&ep, "fresh");
    let spec = s3(&ep, &bucket, "name=main");
    // A first run: the bucket has no cache yet.
    let tmp = tempfile::tempdir().unwrap();
    let restore = [
        "copy",
        "--from",
        spec.as_str(),
        "--to",
        &dest(&tmp.path().join("r"), ""),
    ];
    assert_eq!(bkcache(&restore).code, 4);
    let mut allow = restore.to_vec();
    allow.push("--allow-empty");
    bkcache(&allow).ok();
    assert!(objects(&ep, &bucket).is_empty() && !tmp.path().join("r").exists());
    bkcache(&["copy", "--from", &src(&fixture_cache("local-max")), "--to", &spec]).ok();
    let before = bkcache(&["inspect", &spec, "--json"]).ok().json();
    assert_layers_older_than(&before, 8);
    let r = bkcache(&["prune", &spec, "--keep-duration", "7d", "--min-age", "0s", "--json"])
        .ok()
        .json();
    assert_eq!(
        (r["selection"]["results_dropped"].as_u64(), r["tags_removed"].clone()),
        (Some(0), serde_json::json!([]))
    );
    assert_eq!(before, bkcache(&["inspect", &spec, "--json"]).ok().json());

    let stored = objects(&ep, &bucket);
    for policy in [
        vec!["--keep-storage", "1"],
        vec!["--keep-tags", "nosuch"],
        vec!["--keep-duration", "7d", "--age-by", "layer-created"],
    ] {
        let mut args = vec!["prune", spec.as_str(), "--min-age", "0s"];
        args.extend_from_slice(&policy);
        let r = bkcache(&args);
        assert_eq!(r.code, 5, "{policy:?}: {}", r.stderr);
        assert_eq!(stored, objects(&ep, &bucket), "{policy:?}: nothing changed");
    }
}
