//! `prune` and `diff` on real BuildKit caches: local directories and a real registry.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn blob_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count()
}

fn two_tags(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("two");
    copy_tree(&fixture_cache("local-two-tags"), &dir);
    dir
}

#[test]
fn prune_without_policy_deletes_exactly_the_orphans() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = two_tags(tmp.path());
    assert_eq!(blob_count(&dir), 17);
    let dry = bkcache(&["prune", &src(&dir), "--min-age", "0s", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(
        (dry["blobs_deleted"].as_u64(), dry["dry_run"].as_bool()),
        (Some(3), Some(true))
    );
    assert_eq!(blob_count(&dir), 17, "dry run changes nothing");
    // The default --min-age (1h) protects blobs written just now (these were copied now).
    let young = bkcache(&["prune", &src(&dir), "--json"]).ok().json();
    assert_eq!(
        (young["blobs_deleted"].as_u64(), young["blobs_too_young"].as_u64()),
        (Some(0), Some(3))
    );
    let r = bkcache(&["prune", &src(&dir), "--min-age", "0s", "--json"]).ok().json();
    assert_eq!(r["blobs_deleted"], 3);
    let orphan_bytes: u64 = [
        "902c35d8a3f493bfabfb850a150a751e577b004223498db3a20050f00453027b",
        "53c63906595685dbdad18ef6ee3785908c20cdc569ac29ed08da8ddb43459528",
        "866b0d995ea4a62b3fdd63197335aecd565c2c07adabf900e1a0db6d49ba9f38",
    ]
    .iter()
    .map(|h| {
        std::fs::metadata(fixture_cache("local-two-tags").join("blobs/sha256").join(h))
            .unwrap()
            .len()
    })
    .sum();
    assert_eq!(r["bytes_freed"].as_u64(), Some(orphan_bytes));
    assert_eq!(blob_count(&dir), 14);
    for orphan in [
        "902c35d8a3f493bfabfb850a150a751e577b004223498db3a20050f00453027b",
        "53c63906595685dbdad18ef6ee3785908c20cdc569ac29ed08da8ddb43459528",
        "866b0d995ea4a62b3fdd63197335aecd565c2c07adabf900e1a0db6d49ba9f38",
    ] {
        assert!(!dir.join("blobs/sha256").join(orphan).exists());
    }
    for tag in ["main", "feature"] {
        bkcache(&["verify", &format!("{},tag={tag}", src(&dir))]).ok();
    }
    assert_eq!(
        std::fs::read(dir.join("index.json")).unwrap(),
        std::fs::read(fixture_cache("local-two-tags").join("index.json")).unwrap(),
        "tags untouched"
    );
}

#[test]
fn keep_storage_and_duration_rewrite_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = two_tags(tmp.path());
    let feature = format!("{},tag=feature", src(&dir));
    // Old enough for nothing to go: unchanged.
    let r = bkcache(&[
        "prune",
        &feature,
        "--keep-duration",
        "100000d",
        "--min-age",
        "0",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(
        (r["selection"]["results_dropped"].as_u64(), r["manifest"].is_null()),
        (Some(0), true)
    );
    assert_eq!(r["blobs_deleted"], 3, "only the fixture's 3 orphans");
    // Fit 5 kB: the oldest results go first; what stays is the final stage, i.e. exactly what
    // BuildKit's own mode=min export of this build holds.
    let r = bkcache(&["prune", &feature, "--keep-storage", "5kB", "--min-age", "0", "--json"])
        .ok()
        .json();
    assert_eq!(
        (
            r["selection"]["results_dropped"].as_u64(),
            r["selection"]["results_kept"].as_u64()
        ),
        (Some(5), Some(2))
    );
    assert!(r["selection"]["layer_bytes_after"].as_u64().unwrap() <= 5000);
    assert_eq!(r["manifest"], facts_for("local-min", "latest")["manifest_digest"]);
    assert_eq!(r["blobs_deleted"], 7, "5 dropped layers + the old manifest and config");
    bkcache(&["verify", &feature]).ok();
    bkcache(&["verify", &format!("{},tag=main", src(&dir))]).ok();
    // Results older than 1 s, with --allow-empty: every result of main goes, so main is
    // untagged and its blobs freed.
    let r = bkcache(&[
        "prune",
        &format!("{},tag=main", src(&dir)),
        "--keep-duration",
        "1s",
        "--age-by",
        "layer-created",
        "--allow-empty",
        "--min-age",
        "0",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(r["tags_removed"], serde_json::json!(["main"]));
    let s = bkcache(&["inspect", &format!("{},tag=main", src(&dir))]);
    assert_eq!(s.code, 4, "no cache there: {}", s.stderr);
    bkcache(&["verify", &feature]).ok();
}

#[test]
fn keep_tags_removes_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = two_tags(tmp.path());
    let r = bkcache(&["prune", &src(&dir), "--keep-tags", "main", "--min-age", "0", "--json"])
        .ok()
        .json();
    assert_eq!(r["tags_removed"], serde_json::json!(["feature"]));
    bkcache(&["verify", &format!("{},tag=main", src(&dir))]).ok();
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(blob_count(&dir), 5, "main's 3 layers + manifest + config");
}

#[test]
fn concurrent_export_and_prune_keep_every_referenced_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    bkcache(&[
        "debug",
        "generate",
        "--to",
        &dest(&source, ""),
        "--blobs",
        "40",
        "--bytes",
        &(80u64 << 20).to_string(),
    ])
    .ok();
    let dir = two_tags(tmp.path());
    let mut copy = Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .args([
            "copy",
            "-q",
            "--parallelism",
            "2",
            "--from",
            &src(&source),
            "--to",
            &dest(&dir, "tag=generated"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Prune over and over while the export runs (default --min-age protects its new blobs).
    let mut prunes = 0;
    while copy.try_wait().unwrap().is_none() {
        bkcache(&["prune", "-q", &src(&dir)]).ok();
        prunes += 1;
    }
    assert!(copy.wait().unwrap().success());
    assert!(prunes > 0);
    for tag in ["main", "feature", "generated"] {
        bkcache(&["verify", &format!("{},tag={tag}", src(&dir))]).ok();
    }
}

#[test]
fn diff_reports_what_two_caches_share() {
    let d = bkcache(&[
        "diff",
        &src(&fixture_cache("local-max")),
        &src(&fixture_cache("local-min")),
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(
        (
            d["shared_layers"].as_u64(),
            d["only_a_layers"].as_u64(),
            d["only_b_layers"].as_u64()
        ),
        (Some(2), Some(5), Some(0))
    );
    assert_eq!(
        (
            d["shared_records"].as_u64(),
            d["only_a_records"].as_u64(),
            d["only_b_records"].as_u64()
        ),
        (Some(13), Some(0), Some(0))
    );
    assert_eq!(d["shared_bytes"], 341 + 141);
    let two = fixture_cache("local-two-tags");
    let d = bkcache(&[
        "diff",
        &format!("{},tag=main", src(&two)),
        &format!("{},tag=feature", src(&two)),
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(
        (d["shared_layers"].as_u64(), d["shared_records"].as_u64()),
        (Some(0), Some(0)),
        "different builds share nothing"
    );
}

#[test]
fn prune_in_a_registry_rewrites_and_untags() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let repo = format!("{host}/prune{run}/app");
    let two = fixture_cache("local-two-tags");
    for tag in ["main", "feature"] {
        bkcache(&[
            "copy",
            "--from",
            &format!("{},tag={tag}", src(&two)),
            "--to",
            &format!("type=registry,ref={repo}:{tag},mode=max"),
        ])
        .ok();
    }
    let r = bkcache(&[
        "prune",
        &format!("type=registry,ref={repo}:feature"),
        "--keep-storage",
        "5kB",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(r["manifest"], facts_for("local-min", "latest")["manifest_digest"]);
    assert!(r["notes"][0].as_str().unwrap().contains("garbage collection"), "{r}");
    bkcache(&["verify", &format!("type=registry,ref={repo}:feature")]).ok();
    let r = bkcache(&[
        "prune",
        &format!("type=registry,ref={repo}:feature"),
        "--keep-tags",
        "feature",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(r["tags_removed"], serde_json::json!(["main"]));
    assert_eq!(
        bkcache(&["inspect", &format!("type=registry,ref={repo}:main")]).code,
        4,
        "no cache there"
    );
    bkcache(&["verify", &format!("type=registry,ref={repo}:feature")]).ok();
}

fn azblob_spec(container: &str, name: &str) -> Option<String> {
    let url = server("BKCACHE_TEST_AZURITE")?;
    let account = std::env::var("BKCACHE_TEST_AZURITE_ACCOUNT").unwrap();
    let key = std::env::var("BKCACHE_TEST_AZURITE_KEY").unwrap();
    Some(format!(
        "type=azblob,account_url={url},account_name={account},secret_access_key={key},container={container},name={name}"
    ))
}

#[test]
fn prune_on_azblob_keeps_what_is_referenced_under_a_concurrent_export() {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let container = format!("prune{run}");
    let Some(main) = azblob_spec(&container, "main") else {
        return;
    };
    let feature = azblob_spec(&container, "feature").unwrap();
    let generated = azblob_spec(&container, "generated").unwrap();
    let two = fixture_cache("local-two-tags");
    bkcache(&["copy", "--from", &format!("{},tag=main", src(&two)), "--to", &main]).ok();
    bkcache(&[
        "copy",
        "--from",
        &format!("{},tag=feature", src(&two)),
        "--to",
        &feature,
    ])
    .ok();

    // A concurrent export of a bigger cache while prune runs again and again (default --min-age).
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    bkcache(&[
        "debug",
        "generate",
        "--to",
        &dest(&source, ""),
        "--blobs",
        "24",
        "--bytes",
        &(48u64 << 20).to_string(),
    ])
    .ok();
    let mut copy = Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .args(["copy", "-q", "--from", &src(&source), "--to", &generated])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut prunes = 0;
    while copy.try_wait().unwrap().is_none() {
        bkcache(&["prune", "-q", &main]).ok();
        prunes += 1;
    }
    assert!(copy.wait().unwrap().success());
    assert!(prunes > 0);
    for spec in [&main, &feature, &generated] {
        bkcache(&["verify", spec]).ok();
    }

    // A multi-name import shows each name's part.
    let all = azblob_spec(&container, "main;feature").unwrap();
    let s = bkcache(&["inspect", &all, "--json"]).ok().json();
    let scopes: Vec<&str> = s["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["main", "feature"]);
    assert_eq!(s["parts"][1]["layers"], 7);

    // Keep only main: the other names go, then their blobs (nothing is young with --min-age 0).
    let r = bkcache(&["prune", &main, "--keep-tags", "main", "--min-age", "0", "--json"])
        .ok()
        .json();
    let mut removed: Vec<String> = r["tags_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    removed.sort();
    assert_eq!(removed, ["feature", "generated"]);
    assert_eq!(
        r["blobs_deleted"],
        7 + 24,
        "feature's 7 layers and the 24 generated ones"
    );
    bkcache(&["verify", &main]).ok();
    assert_eq!(bkcache(&["inspect", &feature]).code, 4, "no cache there");
}
