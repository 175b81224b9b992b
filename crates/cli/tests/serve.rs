//! `bkcache serve` end to end: the real binary in front of every store (local on disk, s3 on
//! moto, azblob on Azurite, gha on the test server), with bkcache's own registry backend and
//! skopeo as clients; what lands in each store is read back by that store's own backend.
//! Also: `--scan` refusals, authentication, secrets kept out of logs, and kill -9.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::serve::{http, ServeProc};
use common::*;

/// The stores reachable here: (label, serve template, native spec of team/app:main).
fn stores(tmp: &std::path::Path) -> Vec<(&'static str, String, String)> {
    let mut out = vec![(
        "local",
        format!("type=local,dest={}/local/{{repo}},tag={{tag}}", tmp.display()),
        format!("type=local,src={}/local/team/app,tag=main", tmp.display()),
    )];
    if let Some(registry) = server("BKCACHE_TEST_REGISTRY") {
        // Push/pull-through to a real registry: serve holds the client side.
        let ns = format!("serve{}", unique());
        out.push((
            "registry",
            format!("type=registry,ref={registry}/{ns}/{{repo}}:{{tag}}"),
            format!("type=registry,ref={registry}/{ns}/team/app:main"),
        ));
    }
    if let Some(ep) = server("BKCACHE_TEST_S3") {
        let bucket = s3::new_bucket(&ep, "serve");
        out.push((
            "s3",
            s3::s3(&ep, &bucket, "prefix={repo}/,name={tag}"),
            s3::s3(&ep, &bucket, "prefix=team/app/,name=main"),
        ));
    }
    if let Some(url) = server("BKCACHE_TEST_AZURITE") {
        let account = std::env::var("BKCACHE_TEST_AZURITE_ACCOUNT").unwrap();
        let key = std::env::var("BKCACHE_TEST_AZURITE_KEY").unwrap();
        let container = format!("serve-{}", unique());
        let base = format!(
            "type=azblob,account_url={url},account_name={account},secret_access_key={key},container={container}"
        );
        out.push((
            "azblob",
            format!("{base},prefix={{repo}}/,name={{tag}}"),
            format!("{base},prefix=team/app/,name=main"),
        ));
    }
    if let Some(url) = server("BKCACHE_TEST_GHA_URL") {
        let base = format!("type=gha,url_v2={url}ns/serve-{}/,token={}", unique(), gha_token());
        out.push((
            "gha",
            format!("{base},scope={{repo}}-{{tag}}"),
            format!("{base},scope=team/app-main"),
        ));
    }
    out
}

/// A local store template under `dir`: `dir/<repo>`, tag `<tag>`.
fn local_store(dir: &std::path::Path) -> String {
    format!("type=local,dest={}/{{repo}},tag={{tag}}", dir.display())
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}")
}

/// A runtime token as the runner makes one (alg none: the test server checks no signature).
fn gha_token() -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let ac = serde_json::json!([{"Scope": "refs/heads/main", "Permission": 3}]).to_string();
    let claims = serde_json::json!({"ac": ac, "exp": 4_102_444_800u64, "nbf": 1_600_000_000u64});
    format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims.to_string()))
}

fn records(spec: &str) -> u64 {
    bkcache(&["inspect", spec, "--json"]).ok().json()["records"]
        .as_u64()
        .unwrap()
}

#[test]
fn every_store_round_trips_through_serve_in_its_native_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = src(&fixture_cache("local-max"));
    let want = records(&fixture);
    for (label, template, native) in stores(tmp.path()) {
        let serve = ServeProc::start(&["--store", &template]);
        let target = serve.reference("team/app:main");
        bkcache(&["copy", "--from", &fixture, "--to", &format!("{target},mode=max")]).ok();
        // The store's own backend reads what serve wrote (BuildKit's importer of that type reads
        // the same layout: see buildkit_serve.rs).
        assert_eq!(records(&native), want, "{label}: native read of {native}");
        // And back out through serve: the same cache.
        let back = tmp.path().join(format!("back-{label}"));
        bkcache(&["copy", "--from", &target, "--to", &dest(&back, "")]).ok();
        let diff = bkcache(&["diff", &fixture, &src(&back), "--json"]).ok().json();
        assert_eq!(diff["only_a_layers"], 0, "{label}: {diff}");
        assert_eq!(diff["only_b_layers"], 0, "{label}: {diff}");
        assert_eq!(records(&src(&back)), want, "{label}");
        // skopeo reads the manifest as any registry's.
        let raw = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{}/team/app:main", serve.addr),
            ])
            .output();
        if let Ok(out) = raw {
            assert!(
                out.status.success(),
                "{label}: skopeo: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(
                m["config"]["mediaType"], "application/vnd.buildkit.cacheconfig.v0",
                "{label}"
            );
        } else if std::env::var_os("CI").is_some() {
            panic!("skopeo is not installed (.ci/run installs it)");
        }
        let log = serve.log();
        assert!(log.contains("commit team/app:main"), "{label}: {log}");
        let azure_key = std::env::var("BKCACHE_TEST_AZURITE_KEY").unwrap_or_default();
        for secret in [azure_key.as_str(), gha_token().as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
        {
            assert!(!log.contains(secret), "{label}: a credential in the log: {log}");
        }
    }
}

#[test]
fn skopeo_copies_through_serve_with_chunked_uploads() {
    let Ok(out) = std::process::Command::new("skopeo").arg("--version").output() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "skopeo is not installed (.ci/run installs it)"
        );
        eprintln!("SKIPPED: skopeo is not installed");
        return;
    };
    assert!(out.status.success());
    let tmp = tempfile::tempdir().unwrap();
    let serve = ServeProc::start(&["--store", &local_store(tmp.path())]);
    bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &serve.reference("a:main"),
    ])
    .ok();
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{}/a:main", serve.addr),
            &format!("docker://{}/b:copied", serve.addr),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        serve.log()
    );
    assert_eq!(
        records(&format!("type=local,src={}/b,tag=copied", tmp.path().display())),
        records(&src(&fixture_cache("local-max")))
    );
}

#[test]
fn scan_refuses_a_cache_with_credentials_and_the_store_keeps_its_previous_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = ServeProc::start(&["--scan", "--store", &local_store(tmp.path())]);
    let target = serve.reference("app:main");
    bkcache(&["copy", "--from", &src(&fixture_cache("local-max")), "--to", &target]).ok();
    let before = bkcache(&[
        "inspect",
        &format!("type=local,src={}/app,tag=main", tmp.path().display()),
        "--json",
    ])
    .ok()
    .json();

    let dirty = tmp.path().join("dirty");
    std::fs::create_dir_all(dirty.join("root/.aws")).unwrap();
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETzz";
    std::fs::write(
        dirty.join("root/.aws/credentials"),
        format!("[default]\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    let cache = tmp.path().join("cache");
    write_cache_of_tars(&cache, &[tar_dir(&dirty)]);
    let r = bkcache(&["copy", "--from", &src(&cache), "--to", &target]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("DENIED") || r.stderr.contains("refused by --scan"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("root/.aws/credentials"),
        "names the file: {}",
        r.stderr
    );
    assert!(!r.stderr.contains(secret) && !serve.log().contains(secret));
    let after = bkcache(&[
        "inspect",
        &format!("type=local,src={}/app,tag=main", tmp.path().display()),
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(before, after, "the store keeps its previous cache");
}

#[test]
fn a_public_address_needs_authentication_and_clients_then_authenticate() {
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("type=local,dest={}/{{repo}},tag={{tag}}", tmp.path().display());
    let r = bkcache(&["serve", "--listen", "0.0.0.0:0", "--store", &store]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("not a loopback address") && r.stderr.contains("--htpasswd"),
        "{}",
        r.stderr
    );
    let r = bkcache(&["serve", "--store", &format!("type=local,dest={}", tmp.path().display())]);
    assert_eq!(r.code, 2, "a template without placeholders: {}", r.stderr);
    assert!(r.stderr.contains("--one-cache"), "{}", r.stderr);
    let r = bkcache(&[
        "serve",
        "--store",
        &format!("type=local,dest={}/{{tag}},tag={{repo}}", tmp.path().display()),
    ]);
    assert_eq!(r.code, 2, "{{tag}} where blobs live: {}", r.stderr);

    let htpasswd = tmp.path().join("htpasswd");
    let out = std::process::Command::new("htpasswd")
        .args(["-Bbn", "ci", "s3cret-pass"])
        .output();
    let Ok(out) = out else {
        assert!(
            std::env::var_os("CI").is_none(),
            "htpasswd (apache2-utils) is not installed"
        );
        eprintln!("SKIPPED: htpasswd is not installed");
        return;
    };
    std::fs::write(&htpasswd, out.stdout).unwrap();
    let serve = ServeProc::start(&["--htpasswd", htpasswd.to_str().unwrap(), "--store", &store]);
    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let (anon, headers, _) = http(&serve.addr, "GET", "/v2/", &[], b"");
    assert_eq!(anon, 401);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"bkcache serve\""),
        "{headers}"
    );
    assert_eq!(
        http(
            &serve.addr,
            "GET",
            "/v2/",
            &[("Authorization", &basic("ci", "wrong"))],
            b""
        )
        .0,
        401
    );
    assert_eq!(
        http(
            &serve.addr,
            "GET",
            "/v2/",
            &[("Authorization", &basic("ci", "s3cret-pass"))],
            b""
        )
        .0,
        200
    );
    assert!(!serve.log().contains("s3cret-pass"));
}

#[test]
fn kill_9_at_random_points_of_an_export_never_leaves_a_broken_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    generate(&source, 40, 160 << 20);
    let template = |store: &std::path::Path| format!("type=local,dest={}/{{repo}},tag={{tag}}", store.display());
    let native = |store: &std::path::Path| format!("type=local,src={}/app,tag=main", store.display());
    // How long a whole export takes here: the kills are spread over it.
    let base = tmp.path().join("base");
    let serve = ServeProc::start(&["--store", &template(&base)]);
    let started = std::time::Instant::now();
    bkcache(&[
        "copy",
        "-q",
        "--from",
        &src(&source),
        "--to",
        &serve.reference("app:main"),
    ])
    .ok();
    let whole = started.elapsed();
    drop(serve);
    let mut outcomes = (0, 0);
    for run in 0..20u32 {
        let store = tmp.path().join(format!("run{run}"));
        let mut serve = ServeProc::start(&["--store", &template(&store)]);
        let mut copy = std::process::Command::new(env!("CARGO_BIN_EXE_bkcache"))
            .args([
                "copy",
                "-q",
                "--from",
                &src(&source),
                "--to",
                &serve.reference("app:main"),
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread over the export and a little beyond it (the client starts first).
        std::thread::sleep(whole.mul_f64(1.5 * (f64::from(run) + 0.5) / 20.0));
        serve.kill9();
        // The client would only retry against nothing.
        let _ = copy.kill();
        let _ = copy.wait();
        // Whatever is visible is whole: every blob file hashes to its name, and a cache that
        // loads names only blobs that are there.
        if store.join("app/blobs/sha256").exists() {
            assert_blobs_intact(&store.join("app"));
        }
        let v = bkcache(&["verify", &native(&store)]);
        match v.code {
            0 => outcomes.0 += 1,
            4 => outcomes.1 += 1,
            c => panic!("run {run}: verify exit {c}: {}{}", v.stdout, v.stderr),
        }
        // A fresh serve completes the export over what the killed one left.
        if run % 5 == 0 {
            let serve = ServeProc::start(&["--store", &template(&store)]);
            bkcache(&[
                "copy",
                "-q",
                "--from",
                &src(&source),
                "--to",
                &serve.reference("app:main"),
            ])
            .ok();
            bkcache(&["verify", &native(&store)]).ok();
        }
        let _ = std::fs::remove_dir_all(&store);
    }
    eprintln!(
        "kill -9 over a {:.2} s export: {} runs left a complete cache, {} none yet",
        whole.as_secs_f64(),
        outcomes.0,
        outcomes.1
    );
    assert!(outcomes.1 > 0, "some kills land before the manifest: {outcomes:?}");
}

#[test]
fn keep_storage_prunes_the_tag_after_each_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = ServeProc::start(&["--keep-storage", "3kB", "--store", &local_store(tmp.path())]);
    let fixture = src(&fixture_cache("local-max"));
    let full = bkcache(&["inspect", &fixture, "--json"]).ok().json();
    bkcache(&["copy", "--from", &fixture, "--to", &serve.reference("app:main")]).ok();
    let native = format!("type=local,src={}/app,tag=main", tmp.path().display());
    let after = bkcache(&["inspect", &native, "--json"]).ok().json();
    let bytes = |j: &serde_json::Value| {
        j["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(bytes(&full) > 3000, "{full}");
    assert!(
        bytes(&after) <= 3000 && bytes(&after) > 0,
        "the tag fits 3 kB after the commit: {after}"
    );
    assert!(serve.log().contains("prune local:"), "{}", serve.log());
    bkcache(&["verify", &native]).ok();
}

#[test]
fn sigterm_stops_serve_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut serve = ServeProc::start(&["--json-log", "--store", &local_store(tmp.path())]);
    bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-min")),
        "--to",
        &serve.reference("app:main"),
    ])
    .ok();
    let status = serve.terminate();
    assert!(status.success(), "{status}");
    let log = serve.log();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["event"].is_string() && v["time"].is_string(), "{line}");
    }
    assert!(
        log.contains("\"event\":\"commit\"") && log.contains("\"event\":\"shutdown\""),
        "{log}"
    );
}

#[test]
fn store_credentials_stay_out_of_responses_and_logs() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = s3::new_bucket(&ep, "serve-secret");
    // moto takes any key: a distinctive one, to look for.
    let secret = "Zq8SecretKeyThatMustNeverShow4Xv";
    let creds = format!("access_key_id=AKIASERVETEST0000001,secret_access_key={secret}");
    let template = |bucket: &str| {
        format!("type=s3,bucket={bucket},region=us-east-1,endpoint_url={ep},use_path_style=true,{creds},prefix={{repo}}/,name={{tag}}")
    };
    let serve = ServeProc::start(&["--json-log", "--store", &template(&bucket)]);
    bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-min")),
        "--to",
        &serve.reference("app:main"),
    ])
    .ok();
    let missing = format!("sha256:{}", "0".repeat(64));
    let mut bodies = Vec::new();
    for path in [
        "/v2/app/manifests/main",
        "/v2/app/manifests/nope",
        &format!("/v2/app/blobs/{missing}"),
    ] {
        let (_, head, body) = http(&serve.addr, "GET", path, &[], b"");
        bodies.push(format!("{head}{body}"));
    }
    // A store that fails (no such bucket): its error reaches the client, its key does not.
    let broken = ServeProc::start(&["--json-log", "--store", &template("no-such-bucket-here")]);
    let (status, head, body) = http(&broken.addr, "GET", "/v2/app/manifests/main", &[], b"");
    assert!(status >= 400, "{status} {body}");
    bodies.push(format!("{head}{body}"));
    for text in bodies.iter().chain([&serve.log(), &broken.log()]) {
        assert!(!text.contains(secret), "the secret key leaked: {text}");
    }
    assert!(
        serve.log().contains("secret_access_key=<redacted>") || !serve.log().contains("secret_access_key"),
        "{}",
        serve.log()
    );
}

#[test]
fn keep_duration_removes_the_tags_not_written_for_that_long() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = ServeProc::start(&["--keep-duration", "2s", "--store", &local_store(tmp.path())]);
    let tag = |t: &str| format!("type=local,src={}/app,tag={t}", tmp.path().display());
    bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-min")),
        "--to",
        &serve.reference("app:old"),
    ])
    .ok();
    std::thread::sleep(std::time::Duration::from_secs(3));
    bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &serve.reference("app:new"),
    ])
    .ok();
    assert_eq!(bkcache(&["inspect", &tag("old")]).code, 4, "old went: {}", serve.log());
    bkcache(&["verify", &tag("new")]).ok();
}

#[test]
fn sigterm_lets_an_open_upload_finish_and_aborts_one_past_the_grace() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let start = || {
        ServeProc::start(&[
            "--shutdown-grace",
            "3s",
            "--store",
            &format!("type=local,dest={}/{{repo}},tag={{tag}}", store.display()),
        ])
    };
    let body = vec![42u8; 1 << 20];
    let digest = bkcache_core::Digest::of_bytes(&body).to_string();
    let visible = || blob_path(&store.join("a"), &digest).exists();
    for finish in [true, false] {
        let mut serve = start();
        let (status, head, _) = http(&serve.addr, "POST", "/v2/a/blobs/uploads/", &[], b"");
        assert_eq!(status, 202, "{head}");
        let location = head
            .lines()
            .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
            .unwrap()
            .trim()
            .to_owned();
        let mut s = std::net::TcpStream::connect(&serve.addr).unwrap();
        write!(
            s,
            "PUT {location}?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(&body[..body.len() / 2]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let _ = std::process::Command::new("kill")
            .arg(serve.child.id().to_string())
            .status();
        std::thread::sleep(std::time::Duration::from_millis(300));
        if finish {
            s.write_all(&body[body.len() / 2..]).unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            assert!(answer.starts_with("HTTP/1.1 201"), "the open upload finished: {answer}");
            assert!(serve.terminate().success());
            assert!(visible(), "the finished blob is in the store");
            std::fs::remove_dir_all(&store).unwrap();
        } else {
            // The rest never comes: after the grace the upload is dropped, nothing visible.
            let status = serve.terminate();
            assert!(status.success(), "{status}");
            std::thread::sleep(std::time::Duration::from_millis(300));
            assert!(serve.log().contains("aborted"), "{}", serve.log());
            assert!(!visible(), "no partial blob");
        }
    }
}
