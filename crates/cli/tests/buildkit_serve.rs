//! Real BuildKit v0.32.2 through `bkcache serve`: `type=registry` exports `mode=max` onto each
//! store (local on disk, s3 on moto, azblob on Azurite, gha on the test server), imports back
//! through serve with every COPY step CACHED, and BuildKit's own importer of that store type
//! reads what serve wrote just as well. A store whose blobs were deleted still builds through
//! serve (the missing results become cache misses).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::buildkit::{binaries, copy_steps, Buildkitd};
use common::serve::ServeProc;
use common::*;

/// A store: (label, serve template, BuildKit's native --import-cache for app:main).
struct Store {
    label: &'static str,
    template: String,
    /// BuildKit's own `--import-cache` for app:main.
    native: String,
}

fn stores(tmp: &std::path::Path) -> Vec<Store> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut out = vec![Store {
        label: "local",
        template: format!("type=local,dest={}/local/{{repo}},tag={{tag}}", tmp.display()),
        native: format!("type=local,src={}/local/app,tag=main", tmp.display()),
    }];
    if let Some(ep) = server("BKCACHE_TEST_S3") {
        let bucket = s3::new_bucket(&ep, "bkserve");
        out.push(Store {
            label: "s3",
            template: s3::s3(&ep, &bucket, "prefix={repo}/,name={tag}"),
            native: s3::s3(&ep, &bucket, "prefix=app/,name=main"),
        });
    }
    if let Some(url) = server("BKCACHE_TEST_AZURITE") {
        let key = std::env::var("BKCACHE_TEST_AZURITE_KEY").unwrap();
        let account = std::env::var("BKCACHE_TEST_AZURITE_ACCOUNT").unwrap();
        let base = format!("type=azblob,account_url={url},secret_access_key={key},container=bkserve-{nanos}");
        out.push(Store {
            label: "azblob",
            template: format!("{base},account_name={account},prefix={{repo}}/,name={{tag}}"),
            // BuildKit signs with the account name it takes from the first label of the
            // account URL's host (its own test adds `<account>.blob.localhost.com` to
            // /etc/hosts): Azurite's production-style URL, a name only our buildkitd resolves.
            native: format!(
                "type=azblob,account_url=http://{account}.blob.localhost:{}/,secret_access_key={key},container=bkserve-{nanos},prefix=app/,name=main",
                url.split("127.0.0.1:").nth(1).and_then(|r| r.split('/').next()).unwrap()
            ),
        });
    }
    if let Some(url) = server("BKCACHE_TEST_GHA_URL") {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let ac = serde_json::json!([{"Scope": "refs/heads/main", "Permission": 3}]).to_string();
        let claims = serde_json::json!({"ac": ac, "exp": 4_102_444_800u64, "nbf": 1_600_000_000u64});
        let token = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims.to_string()));
        let base = format!("type=gha,url_v2={url}ns/bkserve-{nanos:x}/,token={token}");
        out.push(Store {
            label: "gha",
            template: format!("{base},scope={{repo}}-{{tag}}"),
            native: format!("{base},scope=app-main"),
        });
    }
    out
}

fn build(bk: &Buildkitd, ctx: &std::path::Path, cache: &[&str]) -> (bool, String) {
    let args = Buildkitd::build_args(ctx, cache);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bk.try_buildctl(&args)
}

#[test]
fn buildkit_exports_and_imports_through_serve_on_every_store() {
    let Some((buildkitd, buildctl)) = binaries() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let stores = stores(tmp.path());
    // One serve per store, all started first: buildkitd's config names each plain-HTTP port.
    let serves: Vec<ServeProc> = stores
        .iter()
        .map(|s| ServeProc::start(&["--store", &s.template]))
        .collect();
    let registries: String = serves
        .iter()
        .map(|s| format!("[registry.\"{}\"]\n  http = true\n  insecure = true\n", s.addr))
        .collect();
    let account = std::env::var("BKCACHE_TEST_AZURITE_ACCOUNT").unwrap_or_default();
    let azure_host = format!("{account}.blob.localhost");
    let bk = Buildkitd::start_with_hosts(
        &buildkitd,
        &buildctl,
        tmp.path(),
        &registries,
        &[(&azure_host, "127.0.0.1")],
    );
    let ctx = tmp.path().join("ctx");
    copy_tree(&fixtures().join("contexts/ctx1"), &ctx);

    for (store, serve) in stores.iter().zip(&serves) {
        let reference = format!("{}/app:main", serve.addr);
        bk.buildctl(&["prune", "--all"]);
        let (ok, out) = build(
            &bk,
            &ctx,
            &["--export-cache", &format!("type=registry,ref={reference},mode=max")],
        );
        assert!(ok, "{}: export through serve:\n{out}\n{}", store.label, serve.log());
        assert!(
            serve.log().contains("commit app:main"),
            "{}: {}",
            store.label,
            serve.log()
        );

        for (how, import) in [
            ("through serve", format!("type=registry,ref={reference}")),
            ("with BuildKit's own importer", store.native.clone()),
        ] {
            bk.buildctl(&["prune", "--all"]);
            let (ok, out) = build(&bk, &ctx, &["--import-cache", &import]);
            assert!(ok, "{} {how}:\n{out}", store.label);
            assert_eq!(
                copy_steps(&out),
                (3, 3),
                "{} {how}: every COPY step CACHED:\n{out}",
                store.label
            );
        }
    }

    // Damage: the local store loses a layer blob (an eviction).
    let local = tmp.path().join("local/app");
    let manifest_digest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(local.join("index.json")).unwrap()).unwrap();
    let manifest_digest = manifest_digest["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_path(&local, &manifest_digest)).unwrap()).unwrap();
    // The layer of the middle step (COPY b.bin): the first step's result stays whole, the
    // others name the gone blob. Found by its contents: layer order is not fixed.
    let layers = manifest["layers"].as_array().unwrap();
    let gone = layers
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .find(|d| {
            let list = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("gzip -dc '{}' | tar -t", blob_path(&local, d).display()))
                .output()
                .unwrap();
            String::from_utf8_lossy(&list.stdout).contains("data/b.bin")
        })
        .expect("the layer of COPY b.bin");
    std::fs::remove_file(blob_path(&local, gone)).unwrap();
    let out_dir = tmp.path().join("out");
    let output = format!("type=local,dest={}", out_dir.display());
    bk.buildctl(&["prune", "--all"]);
    let (native_ok, native_out) = build(&bk, &ctx, &["--import-cache", &stores[0].native, "--output", &output]);
    bk.buildctl(&["prune", "--all"]);
    let (ok, out) = build(
        &bk,
        &ctx,
        &[
            "--import-cache",
            &format!("type=registry,ref={}/app:main", serves[0].addr),
            "--output",
            &output,
        ],
    );
    assert!(ok, "a damaged store builds through serve:\n{out}\n{}", serves[0].log());
    assert!(
        out_dir.join("dir").exists() && out_dir.join("a.txt").exists(),
        "the build's output is complete"
    );
    assert!(serves[0].log().contains("left out"), "{}", serves[0].log());
    eprintln!(
        "damaged store: BuildKit's own importer {} ({} of 3 COPY CACHED); through serve: ok, {} of 3 CACHED",
        if native_ok { "succeeded" } else { "failed" },
        copy_steps(&native_out).1,
        copy_steps(&out).1
    );
    assert!(
        !native_ok,
        "BuildKit v0.32.2's own importer fails on the damaged store (../shared/guide/serve.md):\n{native_out}"
    );

    // Two BuildKit exports to one tag at once (different contexts): one complete cache.
    let ctx2 = tmp.path().join("ctx2");
    copy_tree(&ctx, &ctx2);
    std::fs::write(ctx2.join("a.txt"), "a different first layer\n").unwrap();
    let race = format!("type=registry,ref={}/race:main,mode=max", serves[0].addr);
    bk.buildctl(&["prune", "--all"]);
    let (a, b) = std::thread::scope(|s| {
        let one = s.spawn(|| build(&bk, &ctx, &["--export-cache", &race]));
        let two = s.spawn(|| build(&bk, &ctx2, &["--export-cache", &race]));
        (one.join().unwrap(), two.join().unwrap())
    });
    assert!(a.0 && b.0, "both exports succeed:\n{}\n{}", a.1, b.1);
    let store = format!("type=local,src={}/local/race,tag=main", tmp.path().display());
    bkcache(&["verify", &store]).ok();
    let records = bkcache(&["inspect", &store, "--json"]).ok().json()["records"]
        .as_u64()
        .unwrap();
    assert!(records > 0);
}
