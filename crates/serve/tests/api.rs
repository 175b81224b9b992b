//! The distribution API of `bkcache serve` against real local stores on disk, driven with the
//! requests BuildKit sends: what is stored is the native layout, what is served is byte-exact,
//! what is refused gets the spec's error, and nothing half-written becomes visible.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;

async fn loaded(dir: &std::path::Path, tag: &str) -> Option<bkcache_core::LoadedCache> {
    let spec = format!("type=local,src={},tag={tag}", dir.display());
    let spec = bkcache_core::CacheSpec::parse(&spec).unwrap().remove(0);
    let store = bkcache_core::Backends::new()
        .with(bkcache_local::LocalFactory)
        .open_source(&spec, &bkcache_core::Env::from_process())
        .unwrap();
    store.load().await.unwrap()
}

#[tokio::test]
async fn a_pushed_cache_lands_natively_and_reads_back_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&[local_template(dir.path())], |_| {}).await.unwrap();
    let c = client();
    let fixture = fixture("local-max");
    let (manifest, _, digest) = fixture_manifest(&fixture);
    let put = push_fixture(&c, &serve.url, &fixture, "team/app", "main").await;
    assert_eq!(put.status(), StatusCode::CREATED);
    assert_eq!(put.headers()["docker-content-digest"], digest.as_str());

    // Native layout: bkcache-local reads it under the tag, with every record.
    let source = loaded(&fixture, "latest").await.unwrap();
    let stored = loaded(&dir.path().join("team/app"), "main").await.unwrap();
    assert_eq!(stored.cache.records.len(), source.cache.records.len());
    assert_eq!(
        stored.manifest.digest.as_str(),
        digest,
        "the store holds BuildKit's own bytes"
    );

    // HEAD by tag: BuildKit's re-export compares this digest and skips the PUT when equal.
    let head = c
        .head(format!("{}/v2/team/app/manifests/main", serve.url))
        .header("accept", ACCEPT_ALL)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(
        head.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(head.headers()["content-length"], manifest.len().to_string().as_str());
    let get = c
        .get(format!("{}/v2/team/app/manifests/{digest}", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(get.bytes().await.unwrap().as_ref(), manifest.as_slice());

    // Blobs: HEAD gives the real size; GET the bytes; a range the slice.
    let layer = named_blobs(&manifest).pop().unwrap();
    let bytes = std::fs::read(blob(&fixture, &layer)).unwrap();
    let url = format!("{}/v2/team/app/blobs/{layer}", serve.url);
    let head = c.head(&url).send().await.unwrap();
    assert_eq!(head.headers()["content-length"], bytes.len().to_string().as_str());
    assert_eq!(
        c.get(&url).send().await.unwrap().bytes().await.unwrap().as_ref(),
        bytes.as_slice()
    );
    let part = c.get(&url).header("range", "bytes=1-4").send().await.unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &bytes[1..=4]);
    let (status, _, _) = error_code(c.get(&url).header("range", "bytes=999999-").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);

    // The index form for a client that accepts only that.
    let index = c
        .get(format!("{}/v2/team/app/manifests/main", serve.url))
        .header("accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        index.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let body: serde_json::Value = index.json().await.unwrap();
    assert!(body["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["mediaType"] == "application/vnd.buildkit.cacheconfig.v0"));
    serve.stop().await;
}

#[tokio::test]
async fn uploads_are_verified_chunked_or_whole_and_mounts_answered_honestly() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&[local_template(dir.path())], |_| {}).await.unwrap();
    let c = client();
    let data = b"some layer bytes".to_vec();
    let digest = bkcache_core::Digest::of_bytes(&data).to_string();
    let wrong = bkcache_core::Digest::of_bytes(b"other").to_string();

    // A body that does not match its digest: DIGEST_INVALID, and nothing visible.
    let r = push_blob(&c, &serve.url, "a", &wrong, data.clone()).await;
    assert_eq!(error_code(r).await.1, "DIGEST_INVALID");
    let head = c
        .head(format!("{}/v2/a/blobs/{wrong}", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    assert!(!dir
        .path()
        .join("a/blobs/sha256")
        .join(wrong.trim_start_matches("sha256:"))
        .exists());

    // Chunks: POST, PATCH, PATCH, PUT ?digest=.
    let post = c
        .post(format!("{}/v2/a/blobs/uploads/", serve.url))
        .send()
        .await
        .unwrap();
    let location = post.headers()["location"].to_str().unwrap().to_owned();
    for chunk in [&data[..5], &data[5..]] {
        let p = c
            .patch(format!("{}{location}", serve.url))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(p.status(), StatusCode::ACCEPTED);
    }
    let put = c
        .put(format!("{}{location}?digest={digest}", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let head = c
        .head(format!("{}/v2/a/blobs/{digest}", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["content-length"], data.len().to_string().as_str());
    // The session is gone once used.
    let again = c
        .put(format!("{}{location}?digest={digest}", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(again).await.1, "BLOB_UPLOAD_UNKNOWN");

    // POST with digest=: the whole upload in one request, into another repository.
    let one = c
        .post(format!("{}/v2/b/blobs/uploads/?digest={digest}", serve.url))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), StatusCode::CREATED);

    // mount=: 201 only when the blob really is in this repository's store; else an upload.
    let mount = |repo: &str| format!("{}/v2/{repo}/blobs/uploads/?mount={digest}&from=a", serve.url);
    assert_eq!(c.post(mount("b")).send().await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(c.post(mount("c")).send().await.unwrap().status(), StatusCode::ACCEPTED);
    serve.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_right_oci_error_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&[local_template(dir.path())], |_| {}).await.unwrap();
    let c = client();
    let url = |p: &str| format!("{}{p}", serve.url);
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (c.get(url("/v2/Team/manifests/main")), StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (c.get(url("/v2/a/.../b/manifests/main")), StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (c.get(url("/v2/a/..x/manifests/main")), StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (c.get(url("/v2/a/manifests/.hidden")), StatusCode::BAD_REQUEST, "TAG_INVALID"),
        (c.get(url("/v2/a/manifests/main")), StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        (c.get(url("/v2/a/blobs/sha256:xyz")), StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (c.get(url(&format!("/v2/a/blobs/sha256:{}", "0".repeat(64)))), StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        (c.put(url("/v2/a/manifests/main")).body("{not json"), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (
            c.put(url("/v2/a/manifests/main")).body(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            c.put(url("/v2/a/manifests/main")).body(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.buildkit.cacheconfig.v0","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#),
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (c.put(url("/v2/a/manifests/main")).body(vec![b' '; 5 << 20]), StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
        (c.put(url(&format!("/v2/a/manifests/sha256:{}", "0".repeat(64)))).body("{}"), StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        (c.put(url("/v2/a/blobs/uploads/nope?digest=sha256:00")), StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (c.patch(url("/v2/a/blobs/uploads/nope")).body("x"), StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        (c.delete(url("/v2/a/manifests/main")), StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        (c.get(url("/v3/whatever")), StatusCode::NOT_FOUND, "NOT_FOUND"),
    ];
    for (req, status, code) in cases {
        let req = req.build().unwrap();
        let what = format!("{} {}", req.method(), req.url());
        let r = c.execute(req).await.unwrap();
        let (s, got, message) = error_code(r).await;
        assert_eq!((s, got.as_str()), (status, code), "{what}: {message}");
        assert!(!message.is_empty());
    }
    // A blob over --max-blob-size is refused before a byte is read.
    serve.stop().await;
    let serve = Serve::start(&[local_template(dir.path())], |o| o.limits.max_blob = 10)
        .await
        .unwrap();
    let digest = bkcache_core::Digest::of_bytes(&[0u8; 11]).to_string();
    let r = push_blob(&c, &serve.url, "a", &digest, vec![0u8; 11]).await;
    assert_eq!(error_code(r).await.1, "SIZE_INVALID");
    serve.stop().await;
}

#[tokio::test]
async fn a_store_missing_blobs_serves_a_smaller_cache_instead_of_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&[local_template(dir.path())], |_| {}).await.unwrap();
    let c = client();
    let fixture = fixture("local-max");
    assert!(push_fixture(&c, &serve.url, &fixture, "app", "main")
        .await
        .status()
        .is_success());
    let (manifest, _, _) = fixture_manifest(&fixture);
    let v: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layers: Vec<String> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();
    // An eviction: one layer's file is gone from the store.
    std::fs::remove_file(blob(&dir.path().join("app"), &layers[0])).unwrap();

    let r = c
        .get(format!("{}/v2/app/manifests/main", serve.url))
        .header("accept", ACCEPT_ALL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let served: serde_json::Value = r.json().await.unwrap();
    let served_layers: Vec<&str> = served["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert!(
        !served_layers.contains(&layers[0].as_str()),
        "the gone layer is left out"
    );
    assert!(!served_layers.is_empty() && served_layers.len() < layers.len());
    for l in served_layers {
        let h = c.head(format!("{}/v2/app/blobs/{l}", serve.url)).send().await.unwrap();
        assert_eq!(h.status(), StatusCode::OK, "every layer served is present: {l}");
    }
    serve.stop().await;
}

#[tokio::test]
async fn fan_out_commits_to_every_store_and_reads_from_the_first_that_has_it() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let serve = Serve::start(&[local_template(one.path()), local_template(two.path())], |_| {})
        .await
        .unwrap();
    let c = client();
    let fixture = fixture("local-two-tags");
    let (_, _, digest) = fixture_manifest(&fixture);
    assert_eq!(
        push_fixture(&c, &serve.url, &fixture, "app", "main").await.status(),
        StatusCode::CREATED
    );
    for d in [one.path(), two.path()] {
        let l = loaded(&d.join("app"), "main").await.expect("a cache in every store");
        assert_eq!(l.manifest.digest.as_str(), digest);
    }
    // The first store loses its cache: reads come from the second.
    std::fs::remove_file(one.path().join("app/index.json")).unwrap();
    let r = c
        .head(format!("{}/v2/app/manifests/main", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    serve.stop().await;
}

#[tokio::test]
async fn clients_authenticate_and_only_loopback_may_go_without() {
    let dir = tempfile::tempdir().unwrap();
    let stores = [local_template(dir.path())];
    let refused = Serve::start(&stores, |o| o.listen = "0.0.0.0:0".parse().unwrap()).await;
    assert!(matches!(
        refused,
        Err(bkcache_serve::ServeError::Unauthenticated { .. })
    ));

    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ci-token-0123456789abcdef\n").unwrap();
    let auth = bkcache_serve::Auth::tokens(tokens.to_str().unwrap()).unwrap();
    let serve = Serve::start(&stores, |o| {
        o.listen = "0.0.0.0:0".parse().unwrap();
        o.auth = Some(auth);
    })
    .await
    .unwrap();
    let port = serve.url.rsplit(':').next().unwrap().to_owned();
    let url = format!("http://127.0.0.1:{port}/v2/");
    let c = client();
    let anonymous = c.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()["www-authenticate"], "Basic realm=\"bkcache serve\"");
    let wrong = c
        .get(&url)
        .bearer_auth("ci-token-0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let body = wrong.text().await.unwrap();
    assert!(!body.contains("ci-token"), "{body}");
    assert_eq!(
        c.get(&url)
            .bearer_auth("ci-token-0123456789abcdef")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let basic = c
        .get(&url)
        .basic_auth("ci", Some("ci-token-0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
    assert_eq!(basic.headers()["docker-distribution-api-version"], "registry/2.0");
    serve.stop().await;
}

#[tokio::test]
async fn a_tls_hello_on_the_plain_port_gets_gos_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&[local_template(dir.path())], |_| {}).await.unwrap();
    let addr = serve.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // The start of a TLS 1.2 ClientHello record.
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03])
        .await
        .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, bkcache_serve::listener::GO_TLS_ON_PLAIN);
    serve.stop().await;
}

#[tokio::test]
async fn concurrent_pushes_to_one_tag_end_with_one_complete_cache() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&[local_template(dir.path())], |_| {}).await.unwrap();
    let c = client();
    let (max, min) = (fixture("local-max"), fixture("local-min"));
    let digests = [fixture_manifest(&max).2, fixture_manifest(&min).2];
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            push_fixture(&c, &serve.url, &max, "app", "main"),
            push_fixture(&c, &serve.url, &min, "app", "main")
        );
        assert_eq!((a.status(), b.status()), (StatusCode::CREATED, StatusCode::CREATED));
        let store = dir.path().join("app");
        let l = loaded(&store, "main").await.unwrap();
        assert!(digests.contains(&l.manifest.digest.to_string()));
        for d in l.cache.blobs.keys() {
            assert!(blob(&store, d.as_str()).exists(), "{d} named and present");
        }
    }
    serve.stop().await;
}

/// bkcache-local's store, counting the blobs it opens for reading.
mod counting {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use bkcache_core::spec::ExportOptions;
    use bkcache_core::store::{BlobGc, Committed, TagStore};
    use bkcache_core::{
        AbstractCache, AttributeDoc, BackendFactory, BlobStream, CacheSpec, CacheStore, Descriptor, Digest, Direction,
        Env, Family, LoadedCache, Result, VerifiedStream,
    };

    pub type Opened = Arc<Mutex<Vec<Digest>>>;

    pub struct Factory(pub Opened);

    impl BackendFactory for Factory {
        fn type_name(&self) -> &'static str {
            "local"
        }
        fn summary(&self) -> &'static str {
            "local, counting reads"
        }
        fn family(&self) -> Family {
            bkcache_local::LocalFactory.family()
        }
        fn attributes(&self) -> &'static [AttributeDoc] {
            bkcache_local::LocalFactory.attributes()
        }
        fn open(&self, spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Box<dyn CacheStore>> {
            let inner = bkcache_local::LocalFactory.open(spec, direction, env)?;
            Ok(Box::new(Store(inner, self.0.clone())))
        }
    }

    #[derive(Debug)]
    pub struct Store(Box<dyn CacheStore>, Opened);

    #[async_trait]
    impl CacheStore for Store {
        fn location(&self) -> String {
            self.0.location()
        }
        async fn load(&self) -> Result<Option<LoadedCache>> {
            self.0.load().await
        }
        async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
            self.0.blob_size(digest).await
        }
        async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
            self.1.lock().unwrap().push(desc.digest.clone());
            self.0.open_blob(desc, offset).await
        }
        async fn put_blob(&self, desc: &Descriptor, data: VerifiedStream) -> Result<()> {
            self.0.put_blob(desc, data).await
        }
        async fn commit(&self, cache: &AbstractCache, options: &ExportOptions) -> Result<Committed> {
            self.0.commit(cache, options).await
        }
        fn tag(&self) -> Option<String> {
            self.0.tag()
        }
        fn tag_store(&self) -> Option<&dyn TagStore> {
            self.0.tag_store()
        }
        fn blob_gc(&self) -> Option<&dyn BlobGc> {
            self.0.blob_gc()
        }
    }
}

#[tokio::test]
async fn an_import_reads_from_the_store_only_the_blobs_the_client_gets() {
    let dir = tempfile::tempdir().unwrap();
    let opened = counting::Opened::default();
    let factory = counting::Factory(opened.clone());
    let serve = Serve::start_with(
        &[local_template(dir.path())],
        bkcache_core::Backends::new().with(factory),
        |_| {},
    )
    .await
    .unwrap();
    let c = client();
    let fixture = fixture("local-max");
    assert_eq!(
        push_fixture(&c, &serve.url, &fixture, "app", "main").await.status(),
        StatusCode::CREATED
    );
    opened.lock().unwrap().clear();

    // What BuildKit does for a fully cached build: manifest HEAD, GET by digest, config GET.
    let head = c
        .head(format!("{}/v2/app/manifests/main", serve.url))
        .header("accept", ACCEPT_ALL)
        .send()
        .await
        .unwrap();
    let digest = head.headers()["docker-content-digest"].to_str().unwrap().to_owned();
    let manifest = c
        .get(format!("{}/v2/app/manifests/{digest}", serve.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let config = v["config"]["digest"].as_str().unwrap();
    assert!(c
        .get(format!("{}/v2/app/blobs/{config}", serve.url))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let layers: Vec<String> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();
    let read = |o: &counting::Opened| o.lock().unwrap().iter().map(|d| d.to_string()).collect::<Vec<_>>();
    assert!(
        read(&opened).iter().all(|d| !layers.contains(d)),
        "no layer read: {:?}",
        read(&opened)
    );

    // One layer GET reads that layer, once.
    c.get(format!("{}/v2/app/blobs/{}", serve.url, layers[0]))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        read(&opened).iter().filter(|d| layers.contains(d)).collect::<Vec<_>>(),
        vec![&layers[0]]
    );
    serve.stop().await;
}

#[tokio::test]
async fn every_manifest_form_is_accepted_and_tags_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&[local_template(dir.path())], |_| {}).await.unwrap();
    let c = client();
    for (case, tag) in [
        ("local-max", "image"),
        ("local-index", "index"),
        ("local-docker", "docker"),
    ] {
        let fixture = fixture(case);
        let (_, media_type, digest) = fixture_manifest(&fixture);
        let r = push_fixture(&c, &serve.url, &fixture, "app", tag).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{case} ({media_type})");
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        let stored = loaded(&dir.path().join("app"), tag).await.unwrap();
        assert_eq!(
            stored.cache.records.len(),
            loaded(&fixture, "latest").await.unwrap().cache.records.len(),
            "{case}"
        );
    }
    let tags: serde_json::Value = c
        .get(format!("{}/v2/app/tags/list", serve.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        tags,
        serde_json::json!({"name": "app", "tags": ["docker", "image", "index"]})
    );
    serve.stop().await;
}

#[tokio::test]
async fn idle_uploads_expire_and_concurrent_uploads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&[local_template(dir.path())], |o| {
        o.limits.upload_idle = std::time::Duration::from_secs(1);
        o.limits.max_uploads = 1;
    })
    .await
    .unwrap();
    let c = client();
    let post = c
        .post(format!("{}/v2/a/blobs/uploads/", serve.url))
        .send()
        .await
        .unwrap();
    let location = post.headers()["location"].to_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let late = c
        .patch(format!("{}{location}", serve.url))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(late).await.1,
        "BLOB_UPLOAD_UNKNOWN",
        "expired after 1 s idle"
    );

    // One upload streams (its body held open); a second is told to come back (429).
    let data = vec![7u8; 1 << 20];
    let digest = bkcache_core::Digest::of_bytes(&data).to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let url = format!("{}/v2/a/blobs/uploads/?digest={digest}", serve.url);
    let slow = tokio::spawn({
        let c = c.clone();
        let url = url.clone();
        async move {
            c.post(url)
                .header("content-length", (1u64 << 20).to_string())
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    tx.send(Ok(data[..1024].to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = c.post(&url).body(data.clone()).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    tx.send(Ok(data[1024..].to_vec())).await.unwrap();
    drop(tx);
    assert_eq!(slow.await.unwrap(), StatusCode::CREATED);
    assert_eq!(
        c.post(&url).body(data).send().await.unwrap().status(),
        StatusCode::CREATED,
        "a slot again"
    );
    serve.stop().await;
}

#[tokio::test]
async fn tls_with_a_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert, ca) = (
        dir.path().join("key.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("ca.pem"),
    );
    // A CA and a leaf for 127.0.0.1 it signs (webpki refuses a CA certificate as the server's).
    let d = dir.path().display().to_string();
    let script = format!(
        "set -e; cd {d}; ec='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'
         openssl req -x509 $ec -days 2 -subj /CN=bkcache-test-ca -keyout ca.key -out ca.pem 2>/dev/null
         openssl req $ec -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr 2>/dev/null
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf
         openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem 2>/dev/null"
    );
    let made = std::process::Command::new("sh").arg("-c").arg(&script).status();
    if !made.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is needed for the TLS test (.ci/run installs it)"
        );
        eprintln!("SKIPPED: openssl cannot make certificates here");
        return;
    }
    let serve = Serve::start(&[local_template(dir.path())], |o| {
        o.tls = Some((cert.display().to_string(), key.display().to_string()));
    })
    .await
    .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let c = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let url = serve.url.replace("http://", "https://");
    let r = c.get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-distribution-api-version"], "registry/2.0");
    // Plain HTTP on the TLS port is refused by the handshake, not served.
    assert!(client().get(format!("{}/v2/", serve.url)).send().await.is_err());
    serve.stop().await;
}
