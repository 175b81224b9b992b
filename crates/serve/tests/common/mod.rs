//! A serve in this process over real local stores in temp dirs, and a client that speaks the
//! requests BuildKit v0.32.2 sends (`../shared/guide/serve.md`): blob HEAD, POST, monolithic
//! PUT with `digest=`, manifest HEAD, manifest PUT.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bkcache_core::{Backends, CacheSpec, Env};
use bkcache_serve::{ServeOptions, Server};
use reqwest::StatusCode;

pub fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/buildkit-v0.32.2")
        .join(case)
        .join("cache")
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

/// A running serve; stopped (gracefully) on drop.
pub struct Serve {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Serve {
    pub async fn start(
        stores: &[String],
        tweak: impl FnOnce(&mut ServeOptions),
    ) -> Result<Serve, bkcache_serve::ServeError> {
        Self::start_with(stores, Backends::new().with(bkcache_local::LocalFactory), tweak).await
    }

    pub async fn start_with(
        stores: &[String],
        backends: Backends,
        tweak: impl FnOnce(&mut ServeOptions),
    ) -> Result<Serve, bkcache_serve::ServeError> {
        let mut options = ServeOptions::new("127.0.0.1:0".parse().unwrap());
        options.stores = CacheSpec::parse_all(stores).unwrap();
        tweak(&mut options);
        let server = Server::bind(options, Arc::new(backends), Env::from_process()).await?;
        let url = format!("http://{}", server.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Ok(Serve {
            url,
            stop: Some(tx),
            task: Some(task),
        })
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn local_template(dir: &Path) -> String {
    format!("type=local,dest={}/{{repo}},tag={{tag}}", dir.display())
}

/// A fixture's top-level manifest: (bytes, media type, digest).
pub fn fixture_manifest(cache: &Path) -> (Vec<u8>, String, String) {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(cache.join("index.json")).unwrap()).unwrap();
    let m = &index["manifests"][0];
    let digest = m["digest"].as_str().unwrap().to_owned();
    let bytes = std::fs::read(blob(cache, &digest)).unwrap();
    (bytes, m["mediaType"].as_str().unwrap().to_owned(), digest)
}

pub fn blob(cache: &Path, digest: &str) -> PathBuf {
    cache.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// Every blob a manifest names (config + layers, or the index's manifests).
pub fn named_blobs(manifest: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let mut out = Vec::new();
    if let Some(c) = v.get("config") {
        out.push(c["digest"].as_str().unwrap().to_owned());
    }
    for key in ["layers", "manifests"] {
        for d in v.get(key).and_then(|l| l.as_array()).into_iter().flatten() {
            out.push(d["digest"].as_str().unwrap().to_owned());
        }
    }
    out
}

/// Push one blob as BuildKit does: HEAD, then POST + monolithic PUT when absent.
pub async fn push_blob(c: &reqwest::Client, base: &str, repo: &str, digest: &str, bytes: Vec<u8>) -> reqwest::Response {
    let head = c.head(format!("{base}/v2/{repo}/blobs/{digest}")).send().await.unwrap();
    if head.status() == StatusCode::OK {
        return head;
    }
    let post = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::ACCEPTED, "{:?}", post.text().await);
    let location = post.headers()["location"].to_str().unwrap().to_owned();
    let url = format!("{base}{location}?digest={}", digest.replace(':', "%3A"));
    c.put(url)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

/// Push a fixture cache under repo:tag; the manifest PUT's response.
pub async fn push_fixture(c: &reqwest::Client, base: &str, cache: &Path, repo: &str, tag: &str) -> reqwest::Response {
    let (manifest, media_type, _) = fixture_manifest(cache);
    for d in named_blobs(&manifest) {
        let r = push_blob(c, base, repo, &d, std::fs::read(blob(cache, &d)).unwrap()).await;
        assert!(r.status().is_success(), "blob {d}: {}", r.status());
    }
    c.put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", media_type)
        .body(manifest)
        .send()
        .await
        .unwrap()
}

/// The OCI error code of a response (and that its body is the spec's JSON).
pub async fn error_code(r: reqwest::Response) -> (StatusCode, String, String) {
    let status = r.status();
    let body: serde_json::Value = r.json().await.expect("an OCI error body");
    let e = &body["errors"][0];
    (
        status,
        e["code"].as_str().unwrap().to_owned(),
        e["message"].as_str().unwrap().to_owned(),
    )
}

pub const ACCEPT_ALL: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";
