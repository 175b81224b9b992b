//! What a manifest PUT must pass before and after it commits: every blob present in every
//! store, `--scan` over the layers serve has not yet seen clean, the commit itself (the
//! template's `mode`, the store's `select`, its native `commit`), and the prune policy after.

use std::sync::Arc;
use std::time::Duration;

use bkcache_core::lifecycle::{self, PrunePolicy};
use bkcache_core::{AbstractCache, Descriptor, Error as CoreError};
use hyper::StatusCode;

use crate::error::OciError;
use crate::state::{Opened, State};

/// Every blob the cache names is in every store (at its size), or `MANIFEST_BLOB_UNKNOWN`.
pub async fn check_present(state: &State, repo: &str, cache: &AbstractCache) -> Result<(), OciError> {
    let descs: Vec<&Descriptor> = cache.blobs.values().collect();
    let digests: Vec<_> = descs.iter().map(|d| d.digest.clone()).collect();
    for opened in state.blob_stores(repo)? {
        let sizes = opened.store.blob_sizes(&digests, 16).await?;
        if let Some((d, have)) = descs.iter().zip(&sizes).find(|(d, s)| **s != Some(d.size)) {
            return Err(OciError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                format!(
                    "blob {} ({} bytes) named by the manifest is {} in {}: push it first",
                    d.digest,
                    d.size,
                    match have {
                        Some(n) => format!("{n} bytes"),
                        None => "absent".into(),
                    },
                    opened.store.location()
                ),
            ));
        }
    }
    Ok(())
}

/// `--scan`: the layers not yet found clean, read back from the first store with the rules of
/// `bkcache scan`; a finding refuses the manifest (`DENIED`), naming the file, never the secret.
pub async fn scan_new_layers(state: &State, repo: &str, tag: &str, cache: &AbstractCache) -> Result<(), OciError> {
    let layers: Vec<Descriptor> = cache
        .blobs
        .values()
        .filter(|d| !state.is_clean(&d.digest))
        .cloned()
        .collect();
    if layers.is_empty() {
        return Ok(());
    }
    let opened = state.open(0, repo, crate::state::BLOB_TAG)?;
    let report =
        bkcache_core::scan::scan_layers(opened.store.as_ref(), layers.clone(), 4, state.options.max_uncompressed)
            .await?;
    if report.findings.is_empty() {
        state.mark_clean(layers.iter().map(|d| d.digest.clone()));
        return Ok(());
    }
    let shown: Vec<String> = report
        .findings
        .iter()
        .take(5)
        .map(|f| format!("{} in layer {} at {}", f.rule, f.layer.short(), f.path))
        .collect();
    let message = format!(
        "refused by --scan: the cache for {repo}:{tag} holds {} credential finding(s): {}{}; the stores keep their previous cache",
        report.findings.len(),
        shown.join("; "),
        if report.findings.len() > 5 { "; …" } else { "" }
    );
    state.log.event(
        "refused",
        serde_json::json!({"repository": repo, "tag": tag, "findings": report.findings.iter().map(|f| serde_json::json!({"layer": f.layer.as_str(), "path": f.path, "rule": f.rule})).collect::<Vec<_>>()}),
        &message,
    );
    Err(OciError::new(StatusCode::FORBIDDEN, "DENIED", message))
}

/// Commit to one store, as `bkcache copy` does: the template's `mode`, the store's `select`,
/// then its native `commit` (manifest written last).
pub async fn commit(
    state: &State,
    opened: &Opened,
    repo: &str,
    tag: &str,
    cache: &AbstractCache,
) -> Result<(), CoreError> {
    let cache = match opened.options.mode {
        Some(mode) => cache.apply_mode(mode),
        None => cache.clone(),
    };
    let cache = opened.store.select(cache).await?;
    let committed = opened.store.commit(&cache, &opened.options).await?;
    for w in committed.warnings {
        state.log.event(
            "warning",
            serde_json::json!({"repository": repo, "tag": tag, "store": opened.store.location(), "warning": w}),
            &format!("{repo}:{tag}: {}: {w}", opened.store.location()),
        );
    }
    Ok(())
}

/// A commit that failed at store `n` of several: say which stores already hold the new cache.
pub fn partial(e: CoreError, n: usize, stores: &[Arc<Opened>]) -> OciError {
    let mut oci = OciError::from(e);
    if stores.len() > 1 {
        let done: Vec<String> = stores[..n].iter().map(|o| o.store.location()).collect();
        oci.message = format!(
            "{} (committed to {} of {} stores before it: {})",
            oci.message,
            n,
            stores.len(),
            if done.is_empty() {
                "none".into()
            } else {
                done.join(", ")
            }
        );
    }
    oci
}

/// `--keep-storage` / `--keep-duration` after a commit. A failure is logged: the new cache is
/// already committed, so the client's export succeeded.
pub async fn prune_after_commit(state: &State, opened: &Opened, policy: &PrunePolicy) {
    // Blobs younger than this are never deleted: another export may be about to name them.
    const MIN_AGE: Duration = Duration::from_secs(3600);
    let location = opened.store.location();
    match lifecycle::prune(opened.store.as_ref(), policy, MIN_AGE, false).await {
        Ok(r) => state.log.event(
            "prune",
            serde_json::json!({"store": location, "results_dropped": r.selection.results_dropped, "tags_removed": r.tags_removed, "blobs_deleted": r.blobs_deleted, "bytes_freed": r.bytes_freed}),
            &format!(
                "prune {location}: {} result(s) dropped, {} blob(s) ({}) deleted",
                r.selection.results_dropped,
                r.blobs_deleted,
                crate::log::bytes(r.bytes_freed)
            ),
        ),
        Err(e) => state.log.event(
            "prune-error",
            serde_json::json!({"store": location, "error": e.chain()}),
            &format!("prune {location} after commit: {}", e.chain()),
        ),
    }
}
