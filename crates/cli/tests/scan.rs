//! `scan` and `copy --scan`: planted credentials are found (without printing them); the real
//! BuildKit fixtures are clean.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETzz";
const GH_TOKEN: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

fn planted(tmp: &std::path::Path) -> std::path::PathBuf {
    let clean = tmp.join("clean");
    std::fs::create_dir_all(clean.join("app")).unwrap();
    std::fs::write(clean.join("app/main.txt"), "hello, nothing to see\n").unwrap();
    let dirty = tmp.join("dirty");
    for d in ["root/.aws", "root/.ssh", "app", "home/u/.docker"] {
        std::fs::create_dir_all(dirty.join(d)).unwrap();
    }
    std::fs::write(
        dirty.join("root/.aws/credentials"),
        format!("[default]\naws_access_key_id = AKIAABCDEFGHIJKLMNOP\naws_secret_access_key = {AWS_SECRET}\n"),
    )
    .unwrap();
    std::fs::write(
        dirty.join("root/.ssh/id_ed25519"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(
        dirty.join("app/settings.js"),
        format!("const token = \"{GH_TOKEN}\";\n"),
    )
    .unwrap();
    std::fs::write(
        dirty.join("app/.npmrc"),
        "//registry.npmjs.org/:_authToken=npm_abcdefghij0123456789\n",
    )
    .unwrap();
    std::fs::write(
        dirty.join("home/u/.docker/config.json"),
        r#"{"auths":{"ghcr.io":{"auth":"dXNlcjpzM2NyZXQ="}}}"#,
    )
    .unwrap();
    let cache = tmp.join("cache");
    write_cache_of_tars(&cache, &[tar_dir(&clean), tar_dir(&dirty)]);
    cache
}

#[test]
fn planted_secrets_are_found_without_being_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = planted(tmp.path());
    let r = bkcache(&["scan", &src(&cache), "--json"]);
    assert_eq!(r.code, 3, "scan exits 3 on findings: {}", r.stderr);
    let j = r.json();
    assert_eq!(j["layers_scanned"], 2);
    let mut found: Vec<(String, String)> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("app/.npmrc", "npm token in .npmrc"),
            ("app/settings.js", "GitHub token"),
            ("home/u/.docker/config.json", "registry auth in .docker/config.json"),
            ("root/.aws/credentials", "AWS access key id"),
            ("root/.aws/credentials", "AWS credentials file"),
            ("root/.ssh/id_ed25519", "ssh private key file"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let human = bkcache(&["scan", &src(&cache)]);
    for out in [&r.stdout, &r.stderr, &human.stdout, &human.stderr] {
        assert!(
            !out.contains(AWS_SECRET) && !out.contains(GH_TOKEN) && !out.contains("dXNlcjpzM2NyZXQ"),
            "{out}"
        );
    }

    // copy --scan refuses, and writes nothing.
    let out = tmp.path().join("out");
    let c = bkcache(&["copy", "--scan", "--from", &src(&cache), "--to", &dest(&out, "")]);
    assert_eq!(c.code, 3);
    assert!(c.stderr.contains("nothing was copied"), "{}", c.stderr);
    assert!(!out.exists());
}

#[test]
fn buildkit_fixtures_are_clean() {
    for (case, tag, _) in CASES {
        let r = bkcache(&["scan", &format!("{},tag={tag}", src(&fixture_cache(case))), "--json"])
            .ok()
            .json();
        assert_eq!(r["findings"].as_array().unwrap().len(), 0, "{case}");
        assert_eq!(
            r["layers_scanned"],
            facts_for(case, tag)["config_layers"],
            "{case}: every layer read"
        );
        assert!(r["files_scanned"].as_u64().unwrap() > 0, "{case}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    bkcache(&[
        "copy",
        "--scan",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &dest(&out, ""),
    ])
    .ok();
    bkcache(&["verify", &src(&out)]).ok();
}

#[test]
fn scan_reads_layers_from_a_registry_and_azure() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = planted(tmp.path());
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut targets = Vec::new();
    if let Some(host) = server("BKCACHE_TEST_REGISTRY") {
        targets.push(format!("type=registry,ref={host}/scan{run}/app:c"));
    }
    if let Some(url) = server("BKCACHE_TEST_AZURITE") {
        let account = std::env::var("BKCACHE_TEST_AZURITE_ACCOUNT").unwrap();
        let key = std::env::var("BKCACHE_TEST_AZURITE_KEY").unwrap();
        targets.push(format!(
            "type=azblob,account_url={url},account_name={account},secret_access_key={key},container=scan{run}"
        ));
    }
    for target in targets {
        bkcache(&["copy", "--from", &src(&cache), "--to", &target]).ok();
        let r = bkcache(&["scan", &target, "--json"]);
        assert_eq!(r.code, 3, "{target}: {}", r.stderr);
        assert_eq!(r.json()["findings"].as_array().unwrap().len(), 6, "{target}");
        assert!(!r.stdout.contains(AWS_SECRET) && !r.stdout.contains(GH_TOKEN));
    }
}
