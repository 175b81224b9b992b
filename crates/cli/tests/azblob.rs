//! `type=azblob` against a real Azurite 3.35 (blob service) started by `cargo xtask test`:
//! round trips of every local fixture, BuildKit's own azblob export, multi-name merge, a 40 MiB
//! blob in blocks, container creation, clear errors, and no key ever in the output.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use bkcache_azblob::{AzblobConfig, AzblobStore, BLOCK_SIZE};
use bkcache_core::{BlobGc, CacheSpec, CacheStore, Descriptor, Digest, Direction, Env, MediaType, VerifiedStream};
use common::*;
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};

/// The Azurite from `cargo xtask test`: account URL, account name, key.
struct Azurite {
    url: String,
    account: String,
    key: String,
}

fn azurite() -> Option<Azurite> {
    let url = server("BKCACHE_TEST_AZURITE")?;
    Some(Azurite {
        url,
        account: std::env::var("BKCACHE_TEST_AZURITE_ACCOUNT").unwrap(),
        key: std::env::var("BKCACHE_TEST_AZURITE_KEY").unwrap(),
    })
}

/// A container name no other test or run uses (tests run in parallel, and a hand-started
/// Azurite outlives many runs).
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{nanos}")
}

impl Azurite {
    /// A `type=azblob` spec for a container, plus extra attributes.
    fn spec(&self, container: &str, extra: &str) -> String {
        let mut s = format!(
            "type=azblob,account_url={},account_name={},secret_access_key={},container={container}",
            self.url, self.account, self.key
        );
        if !extra.is_empty() {
            s.push(',');
            s.push_str(extra);
        }
        s
    }

    /// The library store for a spec (to look at what the CLI wrote).
    fn store(&self, container: &str, extra: &str) -> AzblobStore {
        let spec = &CacheSpec::parse(&self.spec(container, extra)).unwrap()[0];
        AzblobStore::open(AzblobConfig::from_spec(spec, Direction::Export, &Env::empty("/")).unwrap()).unwrap()
    }

    /// A plain object_store client on a container: puts objects under exact names.
    fn raw(&self, container: &str) -> MicrosoftAzure {
        let _ = rustls::crypto::ring::default_provider().install_default();
        MicrosoftAzureBuilder::new()
            .with_account(&self.account)
            .with_access_key(&self.key)
            .with_container_name(container)
            .with_endpoint(self.url.clone())
            .with_client_options(ClientOptions::new().with_allow_http(true))
            .build()
            .unwrap()
    }
}

/// One runtime for every test: the clients' connection pools live on it.
static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> =
    std::sync::LazyLock::new(|| tokio::runtime::Runtime::new().unwrap());

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME.block_on(f)
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../backend-azblob/testdata/buildkit-v0.32.2/azblob-max")
}

/// `keys.txt` of the fixture: (blob name, size, sha256 hex).
fn fixture_keys() -> Vec<(String, u64, String)> {
    std::fs::read_to_string(fixture_dir().join("keys.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[1].parse().unwrap(), f[2].to_owned())
        })
        .collect()
}

fn azblob_facts() -> serde_json::Value {
    let facts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("facts.json")).unwrap()).unwrap();
    facts["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == "azblob-max")
        .cloned()
        .unwrap()
}

/// The config digest BuildKit wrote for ctx2 mode=max to s3, azblob and gha.
const ANNOTATED_MAX: &str = "sha256:1a311571886e7fcbb53ab2dd438802acc7edbfc0adc54346899fa95a7672d1be";

#[test]
fn every_local_fixture_round_trips_through_azblob() {
    let Some(az) = azurite() else {
        return;
    };
    let container = unique("roundtrip");
    let tmp = tempfile::tempdir().unwrap();
    for (i, (case, tag, opts)) in CASES.iter().enumerate() {
        let facts = facts_for(case, tag);
        let from = format!("{},tag={tag}", src(&fixture_cache(case)));
        let remote = az.spec(&container, &format!("prefix=fixtures/{case},name={tag}"));
        let to_opts = opts.replace(",tag=main", "").replace(",tag=feature", "");
        let run = bkcache(&[
            "copy",
            "--from",
            &from,
            "--to",
            &format!("{remote},{to_opts}"),
            "--json",
        ])
        .ok();
        let r = run.json();
        let t = &r["targets"][0];
        assert_eq!(t["outcome"]["status"], "committed", "{case}: {r}");
        assert_eq!(t["records"], facts["config_records"], "{case}");
        // Like BuildKit, azblob ignores the manifest-family options, and says so.
        for opt in ["oci-mediatypes", "image-manifest", "compression"] {
            if to_opts.contains(&format!("{opt}=")) {
                assert!(
                    run.stderr.contains(&format!("{opt} has no effect on type=azblob")),
                    "{case}: {}",
                    run.stderr
                );
            }
        }
        if ["local-max", "local-index", "local-docker"].contains(case) || (*case, *tag) == ("local-two-tags", "feature")
        {
            assert_eq!(
                t["manifest"]["digest"], ANNOTATED_MAX,
                "{case}: the config BuildKit writes to azblob"
            );
        }

        let s = bkcache(&["inspect", &remote, "--json"]).ok().json();
        assert_eq!(s["format"], "annotated-config");
        assert_eq!(s["manifest"]["digest"], t["manifest"]["digest"]);
        assert_eq!(s["records"], facts["config_records"], "{case}");
        assert_eq!(
            s["layers"].as_array().unwrap().len() as u64,
            facts["config_layers"].as_u64().unwrap()
        );
        let v = bkcache(&["verify", &remote, "--json"]).ok().json();
        assert_eq!(v["blobs_checked"].as_u64(), facts["config_layers"].as_u64(), "{case}");

        // Back to a local layout with the fixture's options: the same bytes BuildKit wrote,
        // except estargz, whose TOC annotations the annotated config cannot carry (BuildKit's
        // own azblob export drops them too).
        let out = tmp.path().join(format!("back-{i}"));
        if *case == "local-estargz" {
            // Without the TOC annotation the layers look like plain gzip, so
            // force-compression=estargz would convert them again: copy them as they are.
            let r = bkcache(&[
                "copy",
                "--from",
                &remote,
                "--to",
                &dest(&out, "oci-mediatypes=true"),
                "--json",
            ])
            .ok()
            .json();
            assert_ne!(r["targets"][0]["manifest"]["digest"], facts["manifest_digest"]);
            let back = bkcache(&["inspect", &format!("{},tag={tag}", src(&out)), "--json"])
                .ok()
                .json();
            let orig = bkcache(&["inspect", &from, "--json"]).ok().json();
            assert_eq!(back["config"], orig["config"], "{case}: same cache config");
            let digests = |v: &serde_json::Value| -> Vec<serde_json::Value> {
                v["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["digest"].clone())
                    .collect()
            };
            assert_eq!(digests(&back), digests(&orig), "{case}: the same layer blobs");
        } else {
            let r = bkcache(&["copy", "--from", &remote, "--to", &dest(&out, opts), "--json"])
                .ok()
                .json();
            assert_eq!(
                r["targets"][0]["manifest"]["digest"], facts["manifest_digest"],
                "{case}:{tag} came back byte-identical"
            );
        }
        assert_blobs_intact(&out);
        bkcache(&["verify", &format!("{},tag={tag}", src(&out))]).ok();
    }
}

#[test]
fn buildkits_azblob_export_imports_and_reexports_byte_identical() {
    let Some(az) = azurite() else {
        return;
    };
    let facts = azblob_facts();
    let container = unique("bk-cache");
    let store = az.store(&container, "");
    block_on(store.ensure_container()).unwrap();
    let raw = az.raw(&container);
    let keys = fixture_keys();
    let names: Vec<&str> = keys.iter().map(|(n, _, _)| n.as_str()).collect();
    let fact_names: Vec<&str> = facts["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(names, fact_names, "keys.txt and facts.json agree");
    assert_eq!(keys.len() as u64, facts["objects"].as_u64().unwrap());
    for (name, size, sha) in &keys {
        let file = fixture_dir()
            .join("objects")
            .join(name.replace('/', "%2F").replace(':', "%3A"));
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(
            (bytes.len() as u64, Digest::of_bytes(&bytes).hex()),
            (*size, sha.as_str()),
            "{name}"
        );
        block_on(raw.put(&ObjectPath::parse(name).unwrap(), PutPayload::from(bytes))).unwrap();
    }

    let remote = az.spec(&container, "prefix=proj,name=main");
    let s = bkcache(&["inspect", &remote, "--json"]).ok().json();
    assert_eq!(s["format"], "annotated-config");
    assert_eq!(s["manifest"]["digest"], facts["config_digest"]);
    assert_eq!(s["manifest"]["digest"], ANNOTATED_MAX);
    assert_eq!(s["records"], 13);
    assert_eq!(s["records"], facts["config_records"]);
    assert_eq!(s["results"], 7);
    assert_eq!(s["results"], facts["records_with_layers"]);
    assert_eq!(s["layers"].as_array().unwrap().len(), 7);
    assert_eq!(s["total_bytes"], facts["total_object_bytes"]);
    let v = bkcache(&["verify", &remote, "--json"]).ok().json();
    assert_eq!((v["ok"].as_bool(), v["blobs_checked"].as_u64()), (Some(true), Some(7)));

    // Re-export with BuildKit's options to other names: the same config bytes, blobs reused.
    let again = az.spec(&container, "prefix=proj,name=copy1;copy2,mode=max");
    let r = bkcache(&["copy", "--from", &remote, "--to", &again, "--json"])
        .ok()
        .json();
    assert_eq!(r["targets"][0]["manifest"]["digest"], ANNOTATED_MAX);
    assert_eq!(
        (
            r["targets"][0]["blobs_copied"].as_u64(),
            r["targets"][0]["blobs_present"].as_u64()
        ),
        (Some(0), Some(7))
    );
    let main = block_on(raw.get(&ObjectPath::parse("proj/manifests/main").unwrap()))
        .map(|g| block_on(g.bytes()).unwrap())
        .unwrap();
    for name in ["proj/manifests/copy1", "proj/manifests/copy2"] {
        let got = block_on(raw.get(&ObjectPath::parse(name).unwrap()))
            .map(|g| block_on(g.bytes()).unwrap())
            .unwrap();
        assert_eq!(got, main, "{name} byte-identical to BuildKit's proj/manifests/main");
    }

    // Every blob name is exactly BuildKit's, and listing finds the 7 layers.
    let listed = block_on(az.store(&container, "prefix=proj").list_blobs()).unwrap();
    let want: Vec<String> = keys
        .iter()
        .filter(|(n, _, _)| n.starts_with("proj/blobs/"))
        .map(|(n, _, _)| n.trim_start_matches("proj/blobs/").to_owned())
        .collect();
    let mut got: Vec<String> = listed.iter().map(|b| b.digest.to_string()).collect();
    got.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted);
    assert!(listed.iter().all(|b| b.size > 0 && b.modified.is_some()));

    // And to a local layout: BuildKit's local-max, byte for byte.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("local");
    let r = bkcache(&["copy", "--from", &remote, "--to", &dest(&out, "mode=max"), "--json"])
        .ok()
        .json();
    assert_eq!(
        r["targets"][0]["manifest"]["digest"],
        facts_for("local-max", "latest")["manifest_digest"]
    );
}

#[test]
fn import_reads_every_name_and_merges() {
    let Some(az) = azurite() else {
        return;
    };
    let container = unique("merge");
    let a = az.spec(&container, "prefix=m,name=a");
    let b = az.spec(&container, "prefix=m,name=b");
    let max = src(&fixture_cache("local-max"));
    let main = format!("{},tag=main", src(&fixture_cache("local-two-tags")));
    bkcache(&["copy", "--from", &max, "--to", &a]).ok();
    bkcache(&["copy", "--from", &main, "--to", &b]).ok();

    // What two --from give, through the engine's merge...
    let tmp = tempfile::tempdir().unwrap();
    let merged_local = tmp.path().join("merged");
    let want = bkcache(&[
        "copy",
        "--from",
        &max,
        "--from",
        &main,
        "--to",
        &dest(&merged_local, ""),
        "--json",
    ])
    .ok()
    .json();
    let want_records = want["targets"][0]["records"].as_u64().unwrap();
    let want_layers = want["targets"][0]["layers"].as_u64().unwrap();
    assert!(want_records > 13 && want_layers == 10, "{want}");

    // ...one azblob import with name=a;b gives too, as BuildKit's importer reads every name.
    let both = az.spec(&container, "prefix=m,name=a;b");
    let s = bkcache(&["inspect", &both, "--json"]).ok().json();
    assert_eq!(
        (s["records"].as_u64(), s["layers"].as_array().unwrap().len() as u64),
        (Some(want_records), want_layers)
    );
    bkcache(&["verify", &both]).ok();
    let out = tmp.path().join("from-azblob");
    let r = bkcache(&["copy", "--from", &both, "--to", &dest(&out, ""), "--json"])
        .ok()
        .json();
    assert_eq!(
        r["targets"][0]["manifest"]["digest"],
        want["targets"][0]["manifest"]["digest"]
    );

    // A name that does not exist is a warning, not a failure; none existing is "no cache".
    let some = az.spec(&container, "prefix=m,name=a;nope");
    let r = bkcache(&["inspect", &some, "--json"]).ok().json();
    assert_eq!(r["records"], 13);
    assert!(
        r["warnings"].to_string().contains("\\\"nope\\\" has no cache config"),
        "{r}"
    );
    let none = az.spec(&container, "prefix=m,name=nope");
    let r = bkcache(&["inspect", &none]);
    assert_eq!(r.code, 4, "no cache there");
    assert!(r.stderr.contains("no cache found at azblob:"), "{}", r.stderr);
}

#[test]
fn large_blob_goes_in_blocks_and_a_corrupt_one_never_appears() {
    let Some(az) = azurite() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    bkcache(&[
        "debug",
        "generate",
        "--to",
        &dest(&big, ""),
        "--blobs",
        "1",
        "--bytes",
        &(40u64 << 20).to_string(),
    ])
    .ok();
    let layer = bkcache(&["inspect", &src(&big), "--json"]).ok().json()["layers"][0].clone();
    let digest = Digest::parse(layer["digest"].as_str().unwrap()).unwrap();
    assert_eq!(layer["size"], 40u64 << 20);

    let container = unique("big");
    let remote = az.spec(&container, "prefix=big");
    let r = bkcache(&["copy", "--from", &src(&big), "--to", &remote, "--json"])
        .ok()
        .json();
    assert_eq!(r["targets"][0]["bytes_copied"], 40u64 << 20);
    let store = az.store(&container, "prefix=big");
    let blocks = block_on(store.committed_blocks(&digest)).unwrap().unwrap();
    assert_eq!(
        blocks,
        vec![BLOCK_SIZE as u64; 5],
        "40 MiB committed as 5 staged blocks of 8 MiB"
    );
    bkcache(&["verify", &remote]).ok();
    let back = tmp.path().join("back");
    bkcache(&["copy", "--from", &remote, "--to", &dest(&back, "")]).ok();
    assert_blobs_intact(&back);
    assert!(blob_path(&back, digest.as_str()).exists());

    // Uploading it again (a concurrent writer's race) stages the blocks, but the block list is
    // committed with If-None-Match: *, which Azure refuses: the blob is not rewritten.
    let raw = az.raw(&container);
    let name = ObjectPath::parse(format!("big/blobs/{digest}")).unwrap();
    let before = block_on(raw.head(&name)).unwrap();
    let bytes = std::fs::read(blob_path(&big, digest.as_str())).unwrap();
    let desc = Descriptor::of_bytes(MediaType::OciLayer, &bytes);
    block_on(store.put_blob(&desc, VerifiedStream::from_bytes(&desc, bytes.into()))).unwrap();
    let after = block_on(raw.head(&name)).unwrap();
    assert_eq!((before.e_tag, before.last_modified), (after.e_tag, after.last_modified));

    // The same blob with its last byte flipped: the copy fails, no blob and no config appear.
    let bad = tmp.path().join("bad");
    copy_tree(&big, &bad);
    flip_last_byte(&blob_path(&bad, digest.as_str()));
    let other = unique("corrupt");
    let target = az.spec(&other, "prefix=c");
    let r = bkcache(&["copy", "--from", &src(&bad), "--to", &target]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("corrupt") && r.stderr.contains(digest.as_str()),
        "{}",
        r.stderr
    );
    let store = az.store(&other, "prefix=c");
    assert_eq!(
        block_on(store.blob_size(&digest)).unwrap(),
        None,
        "no half-written blob is visible"
    );
    assert_eq!(block_on(store.committed_blocks(&digest)).unwrap(), None);
    assert!(block_on(store.load()).unwrap().is_none(), "no config was written");
}

fn flip_last_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(path, perm).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn existing_blobs_are_not_rewritten_and_damaged_ones_are_replaced() {
    let Some(az) = azurite() else {
        return;
    };
    let container = unique("exist");
    let remote = az.spec(&container, "prefix=e");
    let max = src(&fixture_cache("local-max"));
    bkcache(&["copy", "--from", &max, "--to", &remote]).ok();
    let r = bkcache(&["copy", "--from", &max, "--to", &remote, "--json"])
        .ok()
        .json();
    assert_eq!(
        (
            r["targets"][0]["blobs_copied"].as_u64(),
            r["targets"][0]["blobs_present"].as_u64()
        ),
        (Some(0), Some(7))
    );

    // put_blob onto an existing blob (a concurrent writer's race) leaves it untouched:
    // If-None-Match: * answers 409 and the blob keeps its ETag.
    let store = az.store(&container, "prefix=e");
    let raw = az.raw(&container);
    let layer = "sha256:9966d6e1aca4ce2d128bf11e0fc0a477eca0cfa97b5c3f6caf06fa1aec716cdd";
    let bytes = std::fs::read(blob_path(&fixture_cache("local-max"), layer)).unwrap();
    let desc = Descriptor::of_bytes(MediaType::OciLayerGzip, &bytes);
    let name = ObjectPath::parse(format!("e/blobs/{layer}")).unwrap();
    let before = block_on(raw.head(&name)).unwrap();
    block_on(store.put_blob(&desc, VerifiedStream::from_bytes(&desc, bytes.clone().into()))).unwrap();
    let after = block_on(raw.head(&name)).unwrap();
    assert_eq!((before.e_tag, before.last_modified), (after.e_tag, after.last_modified));

    // A damaged blob (wrong size) at a blob's name is replaced by the copy.
    block_on(raw.put(&name, PutPayload::from_static(b"damaged"))).unwrap();
    let r = bkcache(&["copy", "--from", &max, "--to", &remote, "--json"])
        .ok()
        .json();
    assert_eq!(r["targets"][0]["blobs_copied"], 1, "{r}");
    bkcache(&["verify", &remote]).ok();
    assert_eq!(block_on(raw.head(&name)).unwrap().size, bytes.len() as u64);

    // delete_blob (for prune) removes it, and is idempotent; the cache then lacks a layer.
    let digest = Digest::parse(layer).unwrap();
    assert_eq!(block_on(store.list_blobs()).unwrap().len(), 7);
    block_on(store.delete_blob(&digest)).unwrap();
    block_on(store.delete_blob(&digest)).unwrap();
    assert_eq!(block_on(store.blob_size(&digest)).unwrap(), None);
    assert_eq!(block_on(store.list_blobs()).unwrap().len(), 6);
    let v = bkcache(&["verify", &remote]);
    assert_eq!(v.code, 3, "{}", v.stdout);
}

#[test]
fn container_is_created_on_export_only() {
    let Some(az) = azurite() else {
        return;
    };
    let container = unique("fresh");
    let remote = az.spec(&container, "");
    // Import from a container that does not exist: no cache, and nothing is created.
    let r = bkcache(&["inspect", &remote]);
    assert_eq!(r.code, 4, "no cache there");
    assert!(r.stderr.contains("no cache found"), "{}", r.stderr);
    let listed = block_on(az.raw(&container).list_with_delimiter(None));
    assert!(listed.is_err(), "import created the container");
    // Export creates it (default names: blobs/, manifests/buildkit).
    let r = bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-min")),
        "--to",
        &remote,
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(r["targets"][0]["outcome"]["status"], "committed");
    let s = bkcache(&["inspect", &remote, "--json"]).ok().json();
    assert_eq!(
        s["location"],
        format!("azblob:{}/{container}/manifests/buildkit", az.url)
    );
    let names: Vec<String> = block_on(az.raw(&container).list_with_delimiter(None))
        .unwrap()
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(names, ["blobs", "manifests"]);
}

#[test]
fn a_wrong_key_is_an_authentication_error_that_never_prints_a_key() {
    let Some(az) = azurite() else {
        return;
    };
    use base64::Engine;
    let wrong = base64::engine::general_purpose::STANDARD.encode("bkcache-wrong-key-ZQX7-distinctive-0042");
    let container = unique("auth");
    let good = az.spec(&container, "prefix=a");
    bkcache(&["copy", "--from", &src(&fixture_cache("local-max")), "--to", &good]).ok();
    let bad = good.replace(&az.key, &wrong);
    let bad_target = bad.replace("prefix=a", "prefix=b");
    let mut outputs = Vec::new();
    for args in [
        vec!["inspect", bad.as_str()],
        vec!["-vv", "inspect", bad.as_str(), "--json"],
        vec!["verify", bad.as_str()],
        vec!["-vv", "copy", "--from", bad.as_str(), "--to", good.as_str()],
        vec![
            "-vv",
            "copy",
            "--from",
            good.as_str(),
            "--to",
            bad_target.as_str(),
            "--json",
        ],
    ] {
        let r = bkcache(&args);
        // A refused credential is exit 6; a failed target of a copy stays 1.
        let want = if args.contains(&"--to") && args.contains(&bad_target.as_str()) {
            1
        } else {
            6
        };
        assert_eq!(r.code, want, "{args:?}");
        let text = format!("{}{}", r.stdout, r.stderr);
        assert!(
            text.contains("authentication failed") && text.contains("credentials from secret_access_key"),
            "{args:?}: {text}"
        );
        outputs.push(text);
    }
    // A key that is not even base64: refused before any request, value not echoed.
    let r = bkcache(&["inspect", &good.replace(&az.key, "not*base64*ZQX7")]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("secret_access_key") && r.stderr.contains("base64"),
        "{}",
        r.stderr
    );
    outputs.push(format!("{}{}", r.stdout, r.stderr));
    // The spec as printed (copy reports, errors) redacts the key.
    let r = bkcache(&[
        "copy",
        "--from",
        &good,
        "--to",
        &good.replace("prefix=a", "prefix=c"),
        "--json",
    ])
    .ok();
    outputs.push(format!("{}{}", r.stdout, r.stderr));
    for text in &outputs {
        for secret in [wrong.as_str(), az.key.as_str(), "not*base64", "ZQX7"] {
            assert!(!text.contains(secret), "output shows a key ({secret}): {text}");
        }
    }
}

#[test]
fn bad_options_fail_before_any_request() {
    let Some(az) = azurite() else {
        return;
    };
    let host = az.url.trim_start_matches("http://").to_owned();
    for (spec, want) in [
        (
            format!("type=azblob,account_url={host},secret_access_key={}", az.key),
            "no scheme",
        ),
        (
            format!("type=azblob,account_url=htp://{host},secret_access_key={}", az.key),
            "scheme \"htp\" is not http or https",
        ),
        (
            az.spec("c-ok", "upload_parallelism=0"),
            "upload_parallelism must be a positive integer",
        ),
        (az.spec("Bad_Container", ""), "container name is 3-63 characters"),
        (az.spec("c-ok", "name=a;;b"), "none of them empty"),
        (az.spec("c-ok", "mode=maximum"), "expected min or max"),
    ] {
        let r = bkcache(&["copy", "--from", &src(&fixture_cache("local-max")), "--to", &spec]);
        assert_eq!(r.code, 2, "{spec}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{spec}: {}", r.stderr);
        assert!(!r.stderr.contains(&az.key), "{}", r.stderr);
    }
    // upload_parallelism is an export option.
    let r = bkcache(&["inspect", &az.spec("c-ok", "upload_parallelism=2")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("only for the other direction"), "{}", r.stderr);
    // And a good one works with the environment instead of attributes.
    let container = unique("env");
    let r = bkcache_env(
        &[
            "copy",
            "--from",
            &src(&fixture_cache("local-min")),
            "--to",
            "type=azblob,upload_parallelism=1",
            "--json",
        ],
        &[
            ("BUILDKIT_AZURE_STORAGE_ACCOUNT_URL", &az.url),
            ("BUILDKIT_AZURE_STORAGE_CONTAINER", &container),
            ("BUILDKIT_AZURE_STORAGE_PREFIX", "envp"),
            ("AZURE_STORAGE_KEY", &az.key),
        ],
    )
    .ok()
    .json();
    assert_eq!(r["targets"][0]["outcome"]["status"], "committed");
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={};",
        az.account, az.key, az.url
    );
    let r = bkcache_env(
        &[
            "inspect",
            &format!("type=azblob,container={container},prefix=envp"),
            "--json",
        ],
        &[("AZURE_STORAGE_CONNECTION_STRING", &conn)],
    )
    .ok()
    .json();
    assert_eq!(r["records"], facts_for("local-min", "latest")["config_records"]);
}

/// An account SAS for the blob service (what `az storage account generate-sas` makes), signed
/// with the account key.
fn account_sas(az: &Azurite, permissions: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (sv, ss, srt, se, spr) = ("2021-08-06", "b", "sco", "2099-01-01T00:00:00Z", "https,http");
    let to_sign = format!("{}\n{permissions}\n{ss}\n{srt}\n\n{se}\n\n{spr}\n{sv}\n\n", az.account);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &b64.decode(&az.key).unwrap());
    let sig = b64.encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    let sig: String = sig
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_owned(),
            '/' => "%2F".to_owned(),
            '=' => "%3D".to_owned(),
            c => c.to_string(),
        })
        .collect();
    format!("sv={sv}&ss={ss}&srt={srt}&sp={permissions}&se={se}&spr={spr}&sig={sig}")
}

#[test]
fn sas_tokens_work_and_never_show() {
    let Some(az) = azurite() else {
        return;
    };
    let sas = account_sas(&az, "rwdlac");
    let sig = sas.split("sig=").nth(1).unwrap().to_owned();
    let container = unique("sas");
    let base = format!(
        "type=azblob,account_url={},account_name={},container={container},prefix=s",
        az.url, az.account
    );
    // Export (creating the container, staging nothing big) and import with the SAS attribute.
    // (Quoted: a SAS holds a comma in spr=https,http, and a spec is CSV.)
    let with_sas = format!("{base},\"sas_token={sas}\"");
    let r = bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &with_sas,
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(r["targets"][0]["manifest"]["digest"], ANNOTATED_MAX);
    let mut outputs = vec![r.to_string()];
    // A SAS in the account URL's query, and one from the environment.
    let in_url = format!(
        "type=azblob,account_name={},container={container},prefix=s,\"account_url={}?{sas}\"",
        az.account, az.url
    );
    let s = bkcache(&["inspect", &in_url, "--json"]).ok();
    assert_eq!(s.json()["records"], 13);
    assert!(!s.json()["location"].as_str().unwrap().contains('?'), "{}", s.stdout);
    outputs.push(format!("{}{}", s.stdout, s.stderr));
    let v = bkcache_env(&["verify", &base], &[("AZURE_STORAGE_SAS_TOKEN", &sas)]).ok();
    outputs.push(format!("{}{}", v.stdout, v.stderr));

    // A read-only SAS cannot export: a clear authorisation error, no signature shown.
    let read_only = account_sas(&az, "rl");
    let other = base.replace(&container, &unique("sas-ro"));
    let r = bkcache(&[
        "-vv",
        "copy",
        "--from",
        &with_sas,
        "--to",
        &format!("{other},\"sas_token={read_only}\""),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("authentication failed") && r.stderr.contains("credentials from sas_token"),
        "{}",
        r.stderr
    );
    outputs.push(format!("{}{}", r.stdout, r.stderr));
    // A SAS with a forged signature.
    let forged = sas.replace(&sig, "Zm9yZ2VkLXNpZ25hdHVyZS1RWDc%3D");
    let r = bkcache(&["-vv", "inspect", &format!("{base},\"sas_token={forged}\"")]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stderr.contains("authentication failed"), "{}", r.stderr);
    outputs.push(format!("{}{}", r.stdout, r.stderr));
    for text in &outputs {
        for secret in [
            sig.as_str(),
            "Zm9yZ2VkLXNpZ25hdHVyZS1RWDc",
            read_only.split("sig=").nth(1).unwrap(),
        ] {
            assert!(!text.contains(secret), "output shows a SAS signature: {text}");
        }
    }
}

/// A no-change re-export asks Azure with one listing of the blobs directory, not a HEAD per
/// blob, and uploads no blob: two requests in all.
#[test]
fn no_change_reexport_lists_once_and_uploads_no_blob() {
    let Some(az) = azurite() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("gen");
    bkcache(&[
        "debug",
        "generate",
        "--realistic",
        "--to",
        &dest(&local, ""),
        "--blobs",
        "40",
        "--bytes",
        "400000",
    ])
    .ok();
    let container = unique("reexport");
    let first = bkcache(&[
        "copy",
        "--json",
        "--from",
        &src(&local),
        "--to",
        &az.spec(&container, ""),
    ])
    .ok()
    .json();
    assert_eq!(first["targets"][0]["blobs_copied"], 40, "{first}");

    let proxy = common::proxy::Proxy::start(&az.url);
    let via = Azurite {
        url: proxy.rewrite(&az.url),
        account: az.account.clone(),
        key: az.key.clone(),
    };
    let again = bkcache(&[
        "copy",
        "--json",
        "--from",
        &src(&local),
        "--to",
        &via.spec(&container, ""),
    ])
    .ok()
    .json();
    assert_eq!(again["targets"][0]["blobs_copied"], 0, "{again}");
    assert_eq!(again["targets"][0]["manifest"], first["targets"][0]["manifest"]);
    let log = proxy.log();
    let per_blob: Vec<_> = log.iter().filter(|e| e.path.contains("/blobs/sha256:")).collect();
    assert!(per_blob.is_empty(), "no request per blob: {per_blob:?}");
    let lists = log
        .iter()
        .filter(|e| e.method == "GET" && e.path.contains("comp=list"))
        .count();
    assert_eq!(lists, 1, "{log:?}");
    let writes: Vec<_> = log
        .iter()
        .filter(|e| e.method == "PUT" && !e.path.contains("restype=container"))
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(writes.len(), 1, "only the config under the name: {writes:?}");
    // The listing proves the container exists: no container check on top (2 requests in all).
    assert_eq!(log.len(), 2, "one listing and one config PUT: {log:?}");
}
