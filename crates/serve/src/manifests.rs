//! Manifests: GET/HEAD of a tag encodes the first store's cache, without the results whose
//! blobs are gone (an evicted blob is a cache miss, not a failed build), in the form the client
//! reads; PUT decodes a cache in any of the three manifest-family forms, checks every blob it
//! names is in every store, applies `--scan`, and commits it to every store in its native
//! encoding (the code `bkcache copy` commits with), then applies the prune policy.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use bkcache_core::manifest::{encode_manifest, TopLevel};
use bkcache_core::{AbstractCache, Digest, Error as CoreError, LoadedCache, Wrapper};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use crate::blobs::parse_digest;
use crate::error::OciError;
use crate::http::{self, Reply};
use crate::names::{check_repo, check_tag};
use crate::state::{Doc, Opened, State};
use crate::{log, policy};

/// Largest cache config read back from a store for a manifest PUT.
const MAX_CONFIG: u64 = 64 << 20;

fn manifest_unknown(repo: &str, reference: &str) -> OciError {
    OciError::new(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        format!("no cache for {repo}:{reference} in any store"),
    )
}

/// HEAD or GET a manifest by tag or digest.
pub async fn get(state: &Arc<State>, repo: &str, reference: &str, head: bool, req: &Request<Incoming>) -> Reply {
    check_repo(repo)?;
    if reference.starts_with("sha256:") {
        let digest = parse_digest(reference)?;
        let doc = state
            .doc(repo, &digest)
            .ok_or_else(|| manifest_unknown(repo, reference))?;
        return Ok(manifest_response(&digest, &doc, head));
    }
    check_tag(reference)?;
    let mut failure = None;
    for opened in state.tag_stores(repo, reference)? {
        let loaded = match opened.store.load().await {
            Ok(Some(l)) => l,
            Ok(None) | Err(CoreError::CacheNotFound { .. }) => continue,
            Err(e) => {
                failure = Some(state.store_failed(&opened, e));
                continue;
            }
        };
        let cache = without_evicted(state, &opened, repo, reference, loaded).await?;
        let wrapper = wrapper_for(req, &opened);
        let encoded = encode_manifest(&cache, wrapper, opened.options.oci_mediatypes)?;
        state.put_doc(
            repo,
            encoded.config.digest.clone(),
            Doc {
                bytes: Bytes::from(encoded.config_bytes),
                media_type: encoded.config.media_type.as_str().to_owned(),
            },
        );
        let doc = Doc {
            bytes: Bytes::from(encoded.manifest_bytes),
            media_type: wrapper.media_type().as_str().to_owned(),
        };
        state.put_doc(repo, encoded.manifest.digest.clone(), doc.clone());
        return Ok(manifest_response(&encoded.manifest.digest, &doc, head));
    }
    Err(failure.unwrap_or_else(|| manifest_unknown(repo, reference)))
}

fn manifest_response(digest: &Digest, doc: &Doc, head: bool) -> hyper::Response<http::Body> {
    http::response(
        StatusCode::OK,
        &[
            ("content-type", doc.media_type.clone()),
            ("content-length", doc.bytes.len().to_string()),
            ("docker-content-digest", digest.to_string()),
            ("etag", format!("\"{digest}\"")),
        ],
        if head {
            http::empty()
        } else {
            http::full(doc.bytes.clone())
        },
    )
}

/// The cache without results whose blobs the store no longer has (or has at another size).
async fn without_evicted(
    state: &State,
    opened: &Opened,
    repo: &str,
    tag: &str,
    loaded: LoadedCache,
) -> Result<AbstractCache, OciError> {
    let mut cache = loaded.cache;
    let digests: Vec<Digest> = cache.blobs.keys().cloned().collect();
    let sizes = opened.store.blob_sizes(&digests, 16).await?;
    state.note_sizes(opened, repo, digests.iter().cloned().zip(sizes.iter().copied()));
    let present: HashSet<&Digest> = digests
        .iter()
        .zip(&sizes)
        .filter(|(d, s)| cache.blobs.get(*d).is_some_and(|desc| Some(desc.size) == **s))
        .map(|(d, _)| d)
        .collect();
    let dropped = cache.drop_results_without(|d| present.contains(d));
    if !dropped.is_empty() {
        state.log.event(
            "evicted",
            serde_json::json!({"repository": repo, "tag": tag, "store": opened.store.location(), "results_left_out": dropped.len(), "blobs_missing": digests.len() - present.len()}),
            &format!(
                "{repo}:{tag}: left out {} result(s) whose {} blob(s) are gone from {} (a cache miss for those steps, not a failed build)",
                dropped.len(),
                digests.len() - present.len(),
                opened.store.location()
            ),
        );
    }
    Ok(cache)
}

/// The form a client gets: the store's own (`image-manifest`, `oci-mediatypes` of its
/// template; image manifest by default) when the client accepts it, else the first form it
/// lists. BuildKit before v0.12 (dockerd 20.10's) reads only the index form though its resolver
/// accepts every type: its User-Agent says so.
fn wrapper_for(req: &Request<Incoming>, opened: &Opened) -> Wrapper {
    let accept = http::header_all(req, "accept");
    let accepts = |w: Wrapper| accept.contains(w.media_type().as_str());
    let own = opened.options.wrapper();
    let index = if opened.options.oci_mediatypes {
        Wrapper::OciIndex
    } else {
        Wrapper::DockerManifestList
    };
    if own == Wrapper::ImageManifest && reads_index_only(http::header(req, "user-agent").unwrap_or("")) {
        return index;
    }
    if accept.is_empty() || accept.contains("*/*") || accepts(own) {
        return own;
    }
    [Wrapper::OciIndex, Wrapper::DockerManifestList, Wrapper::ImageManifest]
        .into_iter()
        .find(|w| accepts(*w))
        .unwrap_or(own)
}

/// Whether a User-Agent is a BuildKit older than v0.12 (which added the image-manifest form).
/// Measured: dockerd 20.10.24's built-in BuildKit resolves with containerd's default agent,
/// `containerd/1.6.20+unknown`, accepts every manifest type, and finds no cache in an image
/// manifest (0 of 3 steps CACHED; 3 of 3 with the index form). BuildKit since v0.10 sends
/// `buildkit/vX.Y`. A store's `image-manifest=false` gives every client the index form.
fn reads_index_only(agent: &str) -> bool {
    if agent.starts_with("containerd/") {
        return true;
    }
    let version_after = |marker: &str| -> Option<(u32, u32)> {
        let rest = &agent[agent.find(marker)? + marker.len()..];
        let mut parts = rest.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    if let Some((major, minor)) = version_after("buildkit/v") {
        return major == 0 && minor < 12;
    }
    match version_after("docker/") {
        Some((major, _)) => major < 23,
        None => false,
    }
}

/// `PUT /v2/<name>/manifests/<tag>`.
pub async fn put(state: &Arc<State>, repo: &str, reference: &str, req: Request<Incoming>) -> Reply {
    check_repo(repo)?;
    if reference.starts_with("sha256:") {
        return Err(OciError::unsupported(
            "bkcache serve keeps caches under tags: push the manifest by tag",
        ));
    }
    check_tag(reference)?;
    let media_type = http::content_type(&req).map(str::to_owned);
    let body = read_manifest(state, req).await?;
    let started = Instant::now();
    let top = TopLevel::detect(&body, "the pushed manifest").map_err(|e| OciError::manifest_invalid(e.to_string()))?;
    let cm = top.cache_manifest().ok_or_else(|| {
        OciError::manifest_invalid(
            "the manifest is not a BuildKit cache (no application/vnd.buildkit.cacheconfig.v0 config): bkcache serve stores build caches only",
        )
    })?;
    let config = read_config(state, repo, &cm.config).await?;
    let (cache, warnings) = cm
        .decode(&config)
        .map_err(|e| OciError::manifest_invalid(e.to_string()))?;
    for w in warnings {
        tracing::info!("{repo}:{reference}: {w}");
    }
    let stores = state.tag_stores(repo, reference)?;
    policy::check_present(state, repo, &cache).await?;
    if state.options.scan {
        policy::scan_new_layers(state, repo, reference, &cache).await?;
    }
    let lock = state.commit_lock(repo, reference);
    let _held = lock.lock().await;
    for (n, opened) in stores.iter().enumerate() {
        policy::commit(state, opened, repo, reference, &cache)
            .await
            .map_err(|e| policy::partial(e, n, &stores))?;
    }
    let digest = Digest::of_bytes(&body);
    state.log.event(
        "commit",
        serde_json::json!({"repository": repo, "tag": reference, "manifest": digest.as_str(), "records": cache.records.len(), "layers": cache.blobs.len(), "layer_bytes": cache.layer_bytes(), "stores": stores.iter().map(|o| o.store.location()).collect::<Vec<_>>(), "seconds": started.elapsed().as_secs_f64()}),
        &format!(
            "commit {repo}:{reference}: {} records, {} layers ({}) -> {}",
            cache.records.len(),
            cache.blobs.len(),
            log::bytes(cache.layer_bytes()),
            stores.iter().map(|o| o.store.location()).collect::<Vec<_>>().join(", ")
        ),
    );
    if let Some(p) = &state.options.prune {
        for opened in &stores {
            policy::prune_after_commit(state, opened, p).await;
        }
    }
    let media_type = media_type.unwrap_or_else(|| cm.wrapper.media_type().as_str().to_owned());
    state.put_doc(
        repo,
        digest.clone(),
        Doc {
            bytes: body,
            media_type,
        },
    );
    Ok(http::response(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{repo}/manifests/{digest}")),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".into()),
        ],
        http::empty(),
    ))
}

async fn read_manifest(state: &State, req: Request<Incoming>) -> Result<Bytes, OciError> {
    let limit = state.options.limits.max_manifest;
    let too_large = || OciError::too_large(format!("a manifest may have at most {limit} bytes"));
    if http::content_length(&req).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let collected = Limited::new(req.into_body(), limit as usize)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                too_large()
            } else {
                OciError::manifest_invalid(format!("the manifest body broke off: {e}"))
            }
        })?;
    Ok(collected.to_bytes())
}

/// The pushed cache config: kept by serve, else from the first store that has it.
async fn read_config(state: &State, repo: &str, desc: &bkcache_core::Descriptor) -> Result<Vec<u8>, OciError> {
    if let Some(doc) = state.doc(repo, &desc.digest) {
        return Ok(doc.bytes.to_vec());
    }
    for opened in state.blob_stores(repo)? {
        if state.blob_size(&opened, repo, &desc.digest, false).await? == Some(desc.size) {
            let bytes =
                bkcache_core::store::read_small_blob(opened.store.as_ref(), desc, MAX_CONFIG, "cache config").await?;
            return Ok(bytes);
        }
    }
    Err(OciError::new(
        StatusCode::BAD_REQUEST,
        "MANIFEST_BLOB_UNKNOWN",
        format!(
            "the cache config {} is not in any store of {repo}: push it first",
            desc.digest
        ),
    ))
}

/// `GET /v2/<name>/tags/list`: the first store's tags that fit its template.
pub async fn tags(state: &Arc<State>, repo: &str) -> Reply {
    check_repo(repo)?;
    let template = &state.templates[0];
    let opened = state.open(0, repo, crate::state::BLOB_TAG)?;
    let Some(tag_store) = opened.store.tag_store() else {
        return Err(OciError::unsupported(format!(
            "type={} cannot list its tags",
            template.kind()
        )));
    };
    let all = tag_store.tags().await?;
    let mut tags: Vec<String> = match template.tag_pattern(repo) {
        Some((pre, post)) => all
            .iter()
            .filter_map(|t| t.strip_prefix(&pre)?.strip_suffix(&post))
            .filter(|t| check_tag(t).is_ok())
            .map(str::to_owned)
            .collect(),
        None => all,
    };
    tags.sort();
    tags.dedup();
    let body = serde_json::json!({"name": repo, "tags": tags}).to_string();
    Ok(http::response(
        StatusCode::OK,
        &[
            ("content-type", "application/json".into()),
            ("content-length", body.len().to_string()),
        ],
        http::full(body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_buildkit_agents_get_the_index_form() {
        assert!(reads_index_only(
            "docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84 kernel/6.1 os/linux arch/amd64"
        ));
        assert!(reads_index_only("buildkit/v0.8.3-4-gbc07b2b1"));
        assert!(!reads_index_only("buildkit/v0.32.2"));
        assert!(!reads_index_only("docker/24.0.7 go/go1.20"));
        assert!(reads_index_only("containerd/1.6.20+unknown"));
        assert!(!reads_index_only("bkcache/0.1.0"));
    }
}
