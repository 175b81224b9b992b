//! `type=registry` and `type=inline` against a real registry (Debian's docker-registry, CNCF
//! distribution 2.8) started by `cargo xtask test`: plain HTTP, TLS + Basic auth, bearer tokens.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::fake::{self, Reply};
use common::*;

fn reg(host: &str, repo: &str) -> String {
    format!("type=registry,ref={host}/{repo}")
}

#[test]
fn every_local_fixture_round_trips_through_the_registry() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (i, (case, tag, opts)) in CASES.iter().enumerate() {
        let want = facts_for(case, tag)["manifest_digest"].clone();
        let from = format!("{},tag={tag}", src(&fixture_cache(case)));
        let to = format!("{},{opts}", reg(&host, &format!("fixtures/{case}:{tag}")))
            .replace(",tag=main", "")
            .replace(",tag=feature", "");
        let r = bkcache(&["copy", "--from", &from, "--to", &to, "--json"]).ok().json();
        assert_eq!(
            r["targets"][0]["manifest"]["digest"], want,
            "{case}:{tag} pushed byte-identical"
        );

        let registry_from = reg(&host, &format!("fixtures/{case}:{tag}"));
        let s = bkcache(&["inspect", &registry_from, "--json"]).ok().json();
        assert_eq!(s["manifest"]["digest"], want);
        assert_eq!(s["records"], facts_for(case, tag)["config_records"]);
        bkcache(&["verify", &registry_from]).ok();

        let out = tmp.path().join(format!("back-{i}"));
        let r = bkcache(&["copy", "--from", &registry_from, "--to", &dest(&out, opts), "--json"])
            .ok()
            .json();
        assert_eq!(
            r["targets"][0]["manifest"]["digest"], want,
            "{case}:{tag} pulled byte-identical"
        );
        bkcache(&["verify", &format!("{},tag={tag}", src(&out))]).ok();
    }
}

#[test]
fn pushed_caches_are_readable_by_skopeo() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (case, opts) in [
        ("local-max", "mode=max"),
        ("local-index", "mode=max,image-manifest=false"),
    ] {
        let to = format!("{},{opts}", reg(&host, &format!("skopeo/{case}:c")));
        bkcache(&["copy", "--from", &src(&fixture_cache(case)), "--to", &to]).ok();
        let raw = Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{host}/skopeo/{case}:c"),
            ])
            .output()
            .expect("skopeo (apt-get install skopeo)");
        assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
        let want = facts_for(case, "latest")["manifest_digest"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            bkcache_core::Digest::of_bytes(&raw.stdout).as_str(),
            want,
            "skopeo reads the manifest we pushed"
        );
    }
    // The image-manifest layout copies with skopeo back to an OCI layout, unchanged.
    let layout = tmp.path().join("oci");
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{host}/skopeo/local-max:c"),
        ])
        .arg(format!("oci:{}:latest", layout.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = bkcache(&["inspect", &src(&layout), "--json"]).ok().json();
    assert_eq!(
        s["manifest"]["digest"],
        facts_for("local-max", "latest")["manifest_digest"]
    );
    bkcache(&["verify", &src(&layout)]).ok();
}

#[test]
fn cross_repository_mount_and_idempotent_push() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    // A fresh target repository each run (the registry outlives one test run).
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let a = reg(&host, "mount/a:c");
    let b = reg(&host, &format!("mount/b{run}:c"));
    bkcache(&["copy", "--from", &src(&fixture_cache("local-max")), "--to", &a]).ok();
    let r = bkcache(&["copy", "--from", &a, "--to", &b, "--json"]).ok().json();
    assert_eq!(
        r["targets"][0]["blobs_server_side"], 7,
        "every layer mounted, none streamed: {r}"
    );
    let r = bkcache(&["copy", "--from", &a, "--to", &b, "--json"]).ok().json();
    assert_eq!(
        (
            r["targets"][0]["blobs_copied"].as_u64(),
            r["targets"][0]["blobs_present"].as_u64()
        ),
        (Some(0), Some(7))
    );
    bkcache(&["verify", &b]).ok();
}

#[test]
fn corrupt_blob_commits_nothing_and_bad_hosts_are_clear() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("corrupt");
    copy_tree(&fixture_cache("local-max"), &dir);
    let layer = "sha256:9966d6e1aca4ce2d128bf11e0fc0a477eca0cfa97b5c3f6caf06fa1aec716cdd";
    let path = blob_path(&dir, layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let target = reg(&host, "corrupt/x:c");
    let r = bkcache(&["copy", "--from", &src(&dir), "--to", &target]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("corrupt") && r.stderr.contains(layer), "{}", r.stderr);
    let i = bkcache(&["inspect", &target]);
    assert_eq!(i.code, 4, "the tag was never created");
    assert!(i.stderr.contains("no cache found"), "{}", i.stderr);

    let r = bkcache(&["inspect", "type=registry,ref=unknown-host.invalid/x:y"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot reach https://unknown-host.invalid/v2/"),
        "{}",
        r.stderr
    );
}

#[test]
fn tls_and_basic_auth() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY_TLS") else {
        return;
    };
    let ca = server("BKCACHE_TEST_REGISTRY_TLS_CA").unwrap();
    let user = server("BKCACHE_TEST_REGISTRY_TLS_USER").unwrap();
    let pass = server("BKCACHE_TEST_REGISTRY_TLS_PASS").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let target = reg(&host, "tls/app:c");
    let from = src(&fixture_cache("local-max"));
    let empty_cfg = tmp.path().join("empty");
    std::fs::create_dir_all(&empty_cfg).unwrap();

    // No credentials: 401 explained.
    let r = bkcache_env(
        &["copy", "--from", &from, "--to", &target],
        &[("SSL_CERT_FILE", &ca), ("DOCKER_CONFIG", empty_cfg.to_str().unwrap())],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("access denied (401)") && r.stderr.contains("docker login"),
        "{}",
        r.stderr
    );

    // Credentials from a Docker config.
    let cfg = tmp.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let env = [("SSL_CERT_FILE", ca.as_str()), ("DOCKER_CONFIG", cfg.to_str().unwrap())];
    let r = bkcache_env(&["copy", "--from", &from, "--to", &target, "--json"], &env)
        .ok()
        .json();
    assert_eq!(
        r["targets"][0]["manifest"]["digest"],
        facts_for("local-max", "latest")["manifest_digest"]
    );
    bkcache_env(&["verify", &target], &env).ok();
    assert!(!r.to_string().contains(&pass));

    // Without the CA: a TLS error, unless registry.insecure=true.
    let no_ca = [("DOCKER_CONFIG", cfg.to_str().unwrap())];
    let r = bkcache_env(&["inspect", &target], &no_ca);
    assert_eq!(r.code, 1);
    assert!(r.stderr.to_lowercase().contains("certificate"), "{}", r.stderr);
    bkcache_env(&["inspect", &format!("{target},registry.insecure=true")], &no_ca).ok();

    // Wrong password: refused, and the password is never printed.
    std::fs::write(
        cfg.join("config.json"),
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:wrong-secret-xyz"))
        ),
    )
    .unwrap();
    let r = bkcache_env(&["inspect", &target], &env);
    assert_eq!(r.code, 6, "credentials refused");
    assert!(r.stderr.contains("were refused"), "{}", r.stderr);
    assert!(!r.stderr.contains("wrong-secret-xyz"));
}

#[test]
fn bearer_token_flow() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY_TOKEN") else {
        return;
    };
    let port: u16 = server("BKCACHE_TEST_TOKEN_PORT").unwrap().parse().unwrap();
    let key = server("BKCACHE_TEST_TOKEN_KEY").unwrap();
    let cert = server("BKCACHE_TEST_TOKEN_CERT").unwrap();
    let log = token::start(port, Path::new(&key), Path::new(&cert), "bkuser", "tokpass");
    let tmp = tempfile::tempdir().unwrap();
    use base64::Engine as _;
    std::fs::write(
        tmp.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
            base64::engine::general_purpose::STANDARD.encode("bkuser:tokpass")
        ),
    )
    .unwrap();
    let env = [("DOCKER_CONFIG", tmp.path().to_str().unwrap())];
    let target = reg(&host, "tok/app:c");
    let r = bkcache_env(
        &[
            "copy",
            "--from",
            &src(&fixture_cache("local-min")),
            "--to",
            &target,
            "--json",
        ],
        &env,
    )
    .ok()
    .json();
    assert_eq!(
        r["targets"][0]["manifest"]["digest"],
        facts_for("local-min", "latest")["manifest_digest"]
    );
    bkcache_env(&["verify", &target], &env).ok();
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(ok, scopes)| *ok && scopes.iter().any(|s| s == "repository:tok/app:pull,push")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(ok, scopes)| *ok && scopes.iter().any(|s| s == "repository:tok/app:pull")),
        "{seen:?}"
    );

    // No credentials: the token server refuses, and the error says what to do.
    let empty = tempfile::tempdir().unwrap();
    let r = bkcache_env(
        &["inspect", &target],
        &[("DOCKER_CONFIG", empty.path().to_str().unwrap())],
    );
    assert_eq!(r.code, 6, "credentials refused");
    assert!(r.stderr.contains("docker login"), "{}", r.stderr);
}

/// An OCI layout holding the inline-cache image BuildKit pushed (fixture `inline/registry`),
/// optionally with the cache key removed from its config.
fn inline_image_layout(dir: &Path, strip_cache: bool) -> String {
    let fx = fixtures().join("inline/registry");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for e in std::fs::read_dir(fx.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    let mut config = std::fs::read(fx.join("config.json")).unwrap();
    let mut manifest = std::fs::read_to_string(fx.join("manifest.json")).unwrap();
    if strip_cache {
        // Keep every value's bytes (and nested key order) as BuildKit wrote them.
        let mut v: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_slice(&config).unwrap();
        v.remove("moby.buildkit.cache.v0");
        let new = serde_json::to_vec(&v).unwrap();
        let old_d = bkcache_core::Digest::of_bytes(&config);
        manifest = manifest
            .replace(old_d.as_str(), bkcache_core::Digest::of_bytes(&new).as_str())
            .replace(
                &format!("\"size\": {}", config.len()),
                &format!("\"size\": {}", new.len()),
            );
        config = new;
    }
    let cd = bkcache_core::Digest::of_bytes(&config);
    std::fs::write(dir.join("blobs/sha256").join(cd.hex()), &config).unwrap();
    let md = bkcache_core::Digest::of_bytes(manifest.as_bytes());
    std::fs::write(dir.join("blobs/sha256").join(md.hex()), &manifest).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#, manifest.len()),
    )
    .unwrap();
    md.to_string()
}

fn skopeo_push(layout: &Path, dest: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("skopeo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn inline_cache_import_and_export() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Import: the image BuildKit pushed with --export-cache type=inline.
    let with_cache = tmp.path().join("with");
    let digest = inline_image_layout(&with_cache, false);
    assert_eq!(
        digest,
        "sha256:d96a3cd11cdc96d112685068fbb8729126e3118e8a1a6b81225ef10de9a2f991"
    );
    skopeo_push(&with_cache, &format!("{host}/inline/img:latest"));
    let image = reg(&host, "inline/img:latest");
    let s = bkcache(&["inspect", &image, "--json"]).ok().json();
    assert_eq!(
        (s["format"].as_str(), s["records"].as_u64(), s["results"].as_u64()),
        (Some("inline"), Some(6), Some(3))
    );
    assert_eq!(s["layers"].as_array().unwrap().len(), 3);
    let out = tmp.path().join("from-inline");
    bkcache(&["copy", "--from", &image, "--to", &dest(&out, "")]).ok();
    bkcache(&["verify", &src(&out)]).ok();
    // The same image in a local OCI layout imports too.
    let s = bkcache(&["inspect", &src(&with_cache), "--json"]).ok().json();
    assert_eq!((s["format"].as_str(), s["records"].as_u64()), (Some("inline"), Some(6)));

    // Export: embed that cache into the same image without it; the config comes back
    // byte-identical to the one BuildKit wrote during the build.
    let without = tmp.path().join("without");
    inline_image_layout(&without, true);
    skopeo_push(&without, &format!("{host}/inline/bare:latest"));
    let bare = format!("type=inline,ref={host}/inline/bare:latest");
    let r = bkcache(&["copy", "--from", &image, "--to", &bare, "--json"])
        .ok()
        .json();
    assert_eq!(r["targets"][0]["outcome"]["status"], "committed", "{r}");
    let s = bkcache(&["inspect", &reg(&host, "inline/bare:latest"), "--json"])
        .ok()
        .json();
    assert_eq!(
        s["config"]["digest"],
        "sha256:8abef9c2826d8f3df7dcc56f7e725f87f649c4d846b867e5775e59f8b6c7140f"
    );
    assert_eq!(s["records"], 6);

    // A cache that shares no layer with the image: skipped with BuildKit's warning.
    let r = bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &bare,
        "--json",
    ])
    .ok();
    assert!(
        r.stderr.contains("failed to match any cache with layers"),
        "{}",
        r.stderr
    );
    // type=inline is export only.
    let r = bkcache(&["inspect", &bare]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("export only"), "{}", r.stderr);
}

#[test]
fn oversized_manifest_is_refused() {
    let (addr, _) = fake::serve(|_, path, _| match path {
        "/v2/" => Reply::new(200, "{}"),
        _ => Reply::new(200, vec![b' '; 5 << 20]).header("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
    });
    let r = bkcache(&["inspect", &reg(&addr, "big/x:t")]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("too large") && r.stderr.contains("5242880 bytes > limit 4194304"),
        "{}",
        r.stderr
    );
}

#[test]
fn retries_honour_retry_after_and_give_up_with_a_clear_error() {
    let manifest = std::fs::read(blob_path(
        &fixture_cache("local-max"),
        facts_for("local-max", "latest")["manifest_digest"].as_str().unwrap(),
    ))
    .unwrap();
    let config = std::fs::read(blob_path(
        &fixture_cache("local-max"),
        "sha256:69f9d08aca7363311b8dc19aa453e7962e95ef402280bf0f38960c7407ed5770",
    ))
    .unwrap();
    // 429 (Retry-After: 1) then 503 once, then the real answers.
    let (addr, seen) = fake::serve(move |_, path, n| {
        if path == "/v2/" {
            return Reply::new(200, "{}");
        }
        if path.contains("/manifests/") {
            return match n {
                1 => Reply::new(429, "slow down").header("Retry-After", "1"),
                2 => Reply::new(503, "busy"),
                _ => Reply::new(200, manifest.clone())
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
            };
        }
        if path.ends_with("69f9d08aca7363311b8dc19aa453e7962e95ef402280bf0f38960c7407ed5770") {
            return Reply::new(200, config.clone());
        }
        Reply::new(404, "")
    });
    let start = std::time::Instant::now();
    let s = bkcache(&["inspect", &reg(&addr, "retry/x:t"), "--json"]).ok().json();
    assert_eq!(s["records"], 13);
    assert!(
        start.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let manifest_gets = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, p)| m == "GET" && p.contains("/manifests/"))
        .count();
    assert_eq!(manifest_gets, 3);

    // A server that always fails: bounded attempts, then the status and body in the error.
    let (addr, seen) = fake::serve(|_, path, _| {
        if path == "/v2/" {
            Reply::new(200, "{}")
        } else {
            Reply::new(500, "internal trouble")
        }
    });
    let r = bkcache(&["inspect", &reg(&addr, "down/x:t")]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unexpected HTTP 500: internal trouble"),
        "{}",
        r.stderr
    );
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| p.contains("/manifests/"))
            .count(),
        5,
        "5 attempts"
    );
}

#[test]
fn large_blobs_upload_in_chunks_and_a_corrupt_one_is_never_committed() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("big");
    // One 70 MiB blob: three PATCH chunks (32 + 32 + 6 MiB) then the closing PUT.
    let manifest = bkcache(&[
        "debug",
        "generate",
        "--to",
        &dest(&source, ""),
        "--blobs",
        "1",
        "--bytes",
        &(70u64 << 20).to_string(),
    ])
    .ok()
    .stdout
    .trim()
    .to_owned();
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let target = reg(&host, &format!("chunks/big{run}:c"));
    let r = bkcache(&["copy", "--from", &src(&source), "--to", &target, "--json"])
        .ok()
        .json();
    assert_eq!(r["targets"][0]["manifest"]["digest"].as_str(), Some(manifest.as_str()));
    bkcache(&["verify", &target]).ok();

    // The same blob with one byte flipped near the end: the upload is cancelled, no tag.
    let s = bkcache(&["inspect", &src(&source), "--json"]).ok().json();
    let layer = s["layers"][0]["digest"].as_str().unwrap().to_owned();
    let path = blob_path(&source, &layer);
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&path, perm).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let bad = reg(&host, &format!("chunks/bad{run}:c"));
    let r = bkcache(&["copy", "--from", &src(&source), "--to", &bad]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("corrupt") && r.stderr.contains(&layer),
        "{}",
        r.stderr
    );
    assert_eq!(bkcache(&["inspect", &bad]).code, 4, "no tag was created");
    let head = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
        .arg(format!("http://{host}/v2/chunks/bad{run}/blobs/{layer}"))
        .output();
    if let Ok(out) = head {
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "404",
            "the corrupt blob never became visible"
        );
    }
}

/// A no-change re-export to a registry is one manifest HEAD (beside the `/v2/` ping): the tag's
/// manifest is byte-identical to what bkcache would push, and a registry keeps the blobs its
/// tags reference. `--recheck-target` checks every blob again.
#[test]
fn no_change_reexport_to_a_registry_is_one_manifest_head() {
    let Some(registry) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let fixture = src(&fixture_cache("local-max"));
    let target = |host: &str| format!("type=registry,ref={host}/nochange{run:x}/c:main");
    let first = bkcache(&["copy", "--json", "--from", &fixture, "--to", &target(&registry)])
        .ok()
        .json();
    let layers = first["targets"][0]["layers"].as_u64().unwrap();
    assert_eq!(first["targets"][0]["blobs_copied"].as_u64(), Some(layers), "{first}");

    let proxy = common::proxy::Proxy::start(&registry);
    let again = bkcache(&[
        "copy",
        "--json",
        "-v",
        "--from",
        &fixture,
        "--to",
        &target(&proxy.addr()),
    ])
    .ok();
    let j = again.json();
    assert_eq!(j["targets"][0]["blobs_copied"], 0, "{j}");
    assert_eq!(j["targets"][0]["manifest"], first["targets"][0]["manifest"]);
    assert!(
        again.stderr.contains("byte-identical"),
        "said in -v output: {}",
        again.stderr
    );
    let requests: Vec<String> = proxy
        .log()
        .iter()
        .filter(|e| e.path != "/v2/")
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    assert_eq!(
        requests,
        ["HEAD /v2/nochange".to_owned() + &format!("{run:x}/c/manifests/main")],
        "{requests:?}"
    );

    proxy.reset();
    let checked = bkcache(&[
        "copy",
        "--json",
        "--recheck-target",
        "--from",
        &fixture,
        "--to",
        &target(&proxy.addr()),
    ])
    .ok()
    .json();
    assert_eq!(checked["targets"][0]["blobs_copied"], 0, "{checked}");
    let blob_heads = proxy
        .log()
        .iter()
        .filter(|e| e.method == "HEAD" && e.path.contains("/blobs/"))
        .count();
    assert!(
        blob_heads as u64 >= layers,
        "--recheck-target HEADs every layer: {blob_heads}"
    );
}
