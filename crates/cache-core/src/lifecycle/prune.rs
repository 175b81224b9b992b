//! `prune`: plan everything first (reads only), refuse a plan that would leave a tag or the
//! location without cache, then carry the plan out. A dry run is the plan itself, so it reports
//! exactly what the real run does.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use super::{options_for, select, AgeBy, PrunePolicy, PruneSelection};
use crate::annotated::encode_annotated;
use crate::cache::AbstractCache;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gojson::GoTime;
use crate::manifest::encode_manifest;
use crate::store::{BlobEntry, CacheFormat, CacheStore, LoadedCache, TagEntry, TagStore};

/// What prune does with one tag (name, scope) at the location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagAction {
    /// Left as it is.
    Kept,
    /// Its manifest is written again with fewer results.
    Rewritten,
    /// Its manifest is deleted (its blobs then go to garbage collection).
    Removed,
}

/// One tag of the location in a prune report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagReport {
    /// The tag, name or scope.
    pub tag: String,
    /// When it was last written, by the backend's clock (`null`: the backend cannot tell).
    pub written: Option<String>,
    /// What prune does with it.
    pub action: TagAction,
    /// Why (e.g. `not written for 7d`, `not in --keep-tags`).
    pub reason: String,
    /// Whether it is signed (gha); its signature is kept or removed with it.
    pub signed: bool,
}

/// The result of `prune`. A dry run reports exactly what the real run does.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Where.
    pub location: String,
    /// What the policy dropped from this location's own tag.
    pub selection: PruneSelection,
    /// The manifest written for the pruned cache (none when nothing was rewritten; in a dry
    /// run, the one that would be written where the encoding is the backend-independent one).
    pub manifest: Option<Digest>,
    /// Every tag at the location and what happens to it.
    pub tags: Vec<TagReport>,
    /// Blobs listed at the location.
    pub blobs_listed: usize,
    /// Blobs deleted (or that would be, with `dry_run`).
    pub blobs_deleted: usize,
    /// Bytes freed (or that would be).
    pub bytes_freed: u64,
    /// The digests of the blobs deleted (or that would be).
    pub deleted: Vec<Digest>,
    /// Unreferenced blobs kept because they are younger than `min_age` (a concurrent export may
    /// be about to reference them).
    pub blobs_too_young: usize,
    /// Tags removed (by `keep_tags`, by `keep_duration`, or emptied with `allow_empty`).
    pub tags_removed: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Notes (e.g. a store that cannot delete blobs).
    pub notes: Vec<String>,
}

/// What happens to the location's own tag.
enum Own {
    Unchanged,
    /// The pruned cache, what it was loaded from, and the blobs its commit writes among the
    /// location's blobs (the manifest family's new config and manifest).
    Rewrite(AbstractCache, Box<LoadedCache>, Vec<Digest>),
    Remove,
}

/// Everything prune will change, decided before anything changes.
struct Plan {
    own: Own,
    own_tag: Option<String>,
    remove: Vec<String>,
    delete: Vec<BlobEntry>,
    /// What the location references once the plan is carried out.
    referenced_after: HashSet<Digest>,
}

/// Prune a cache in place: decide which tags stay, are rewritten or removed, and which
/// unreferenced blobs (older than `min_age`) go; refuse (changing nothing) a plan that would
/// leave a tag or the whole location without cache unless `policy.allow_empty`; then, unless
/// `dry_run`, carry the plan out: manifests first, then blobs, re-reading the references right
/// before deleting so that a manifest written meanwhile wins.
pub async fn prune(
    store: &dyn CacheStore,
    policy: &PrunePolicy,
    min_age: Duration,
    dry_run: bool,
) -> Result<PruneReport> {
    let mut report = PruneReport {
        location: store.location(),
        dry_run,
        ..Default::default()
    };
    let plan = make_plan(store, policy, min_age, &mut report).await?;
    if dry_run {
        return Ok(report);
    }
    match plan.own {
        Own::Rewrite(pruned, loaded, _) => {
            let committed = store.commit(&pruned, &options_for(&loaded)).await?;
            report.manifest = committed.manifest.map(|m| m.digest);
            report.notes.extend(committed.warnings);
        }
        Own::Remove => match &plan.own_tag {
            Some(t) => tag_store(store)?.remove_tag(t).await?,
            None => report
                .notes
                .push("every result was dropped, but this location has no tag to remove".into()),
        },
        Own::Unchanged => {}
    }
    for tag in &plan.remove {
        tag_store(store)?.remove_tag(tag).await?;
    }
    if plan.delete.is_empty() {
        return Ok(report);
    }
    // A manifest written since the plan was made wins over the plan.
    let gc = store.blob_gc().ok_or_else(|| unsupported(store, "deleting blobs"))?;
    let now_referenced = gc.referenced_blobs().await?;
    report.deleted.clear();
    report.blobs_deleted = 0;
    report.bytes_freed = 0;
    for blob in plan.delete {
        if now_referenced.contains(&blob.digest) || plan.referenced_after.contains(&blob.digest) {
            report
                .notes
                .push(format!("{}: referenced again meanwhile; kept", blob.digest));
            continue;
        }
        gc.delete_blob(&blob.digest).await?;
        report.blobs_deleted += 1;
        report.bytes_freed += blob.size;
        report.deleted.push(blob.digest);
    }
    Ok(report)
}

async fn make_plan(
    store: &dyn CacheStore,
    policy: &PrunePolicy,
    min_age: Duration,
    report: &mut PruneReport,
) -> Result<Plan> {
    let own_tag = store.tag();
    // Without a per-result policy the own tag need not exist: the rest is location-wide.
    let per_result =
        policy.keep_storage.is_some() || (policy.keep_duration.is_some() && policy.age_by == AgeBy::LayerCreated);
    let loaded = match store.load().await {
        Ok(l) => l,
        Err(e) if e.is_not_found() && !per_result => None,
        Err(e) => return Err(e),
    };
    let entries = match store.blob_gc() {
        None => None,
        Some(gc) => match gc.tag_entries().await {
            Ok(e) => Some(e),
            Err(Error::Unsupported { .. }) => None,
            Err(e) => return Err(e),
        },
    };
    let now = policy.now.unwrap_or_else(GoTime::now);
    let by_write = policy.keep_duration.filter(|_| policy.age_by == AgeBy::LastWrite);
    let tags = tag_list(
        store,
        entries.as_deref(),
        own_tag.as_deref(),
        policy,
        by_write.is_some(),
    )
    .await?;
    let remove = tags_to_remove(&tags, policy, by_write, now);
    let own = decide_own(loaded, own_tag.as_deref(), &remove, policy, report)?;
    let own_signed = tags
        .iter()
        .any(|(t, _, signed)| *signed && Some(t.as_str()) == own_tag.as_deref());
    if own_signed && matches!(own, Own::Rewrite(..)) {
        return Err(Error::InvalidCombination {
            reason: format!(
                "{}: {} is signed, and bkcache cannot sign: rewriting it would leave its signed index naming deleted blobs; nothing was changed. Remove the scope whole (--keep-tags or --keep-duration), or let BuildKit export it again",
                store.location(),
                own_tag.as_deref().unwrap_or("this cache")
            ),
        });
    }
    refuse_empty(store, policy, &own, own_tag.as_deref(), &tags, &remove, report)?;
    report_tags(&tags, &own, own_tag.as_deref(), &remove, report);
    let own_removed_by_policy = own_tag.as_ref().is_some_and(|t| remove.contains_key(t));
    let own = if own_removed_by_policy { Own::Unchanged } else { own };
    let mut plan = Plan {
        own,
        own_tag,
        remove: remove.into_keys().collect(),
        delete: Vec::new(),
        referenced_after: HashSet::new(),
    };
    let Some(entries) = entries else {
        report.notes.push(format!(
            "{}: blobs cannot be listed or deleted here; unreferenced blobs are left to the service's own garbage collection",
            store.location()
        ));
        return Ok(plan);
    };
    plan.referenced_after = referenced_after(&entries, &plan);
    let gc = store.blob_gc().ok_or_else(|| unsupported(store, "listing blobs"))?;
    plan.delete = deletions(gc.list_blobs().await?, &plan.referenced_after, min_age, report);
    Ok(plan)
}

/// The tags `keep_tags` and a last-write `keep_duration` remove, with why.
fn tags_to_remove(
    tags: &[(String, Option<GoTime>, bool)],
    policy: &PrunePolicy,
    by_write: Option<Duration>,
    now: GoTime,
) -> BTreeMap<String, String> {
    let mut remove = BTreeMap::new();
    for (tag, written, _) in tags {
        let keep_named = policy.keep_tags.as_ref().is_some_and(|k| k.contains(tag));
        // --keep-tags alone keeps only those; beside --keep-duration it protects them.
        if policy.keep_tags.is_some() && by_write.is_none() && !keep_named {
            remove.insert(tag.clone(), "not in --keep-tags".to_owned());
        } else if let (Some(d), Some(w), false) = (by_write, written, keep_named) {
            if w.unix_nanos() < now.unix_nanos() - d.as_nanos() as i128 {
                remove.insert(tag.clone(), format!("not written for {}", show_duration(d)));
            }
        }
    }
    remove
}

/// One row per tag in the report: kept, rewritten or removed, and why.
fn report_tags(
    tags: &[(String, Option<GoTime>, bool)],
    own: &Own,
    own_tag: Option<&str>,
    remove: &BTreeMap<String, String>,
    report: &mut PruneReport,
) {
    for (tag, written, signed) in tags {
        let is_own = Some(tag.as_str()) == own_tag;
        let (action, reason) = match (own, remove.get(tag)) {
            (_, Some(why)) => (TagAction::Removed, why.clone()),
            (Own::Remove, None) if is_own => (TagAction::Removed, "every result dropped (--allow-empty)".into()),
            (Own::Rewrite(..), None) if is_own => (
                TagAction::Rewritten,
                format!("{} results dropped", report.selection.results_dropped),
            ),
            _ => (TagAction::Kept, String::new()),
        };
        if action == TagAction::Removed {
            report.tags_removed.push(tag.clone());
        }
        report.tags.push(TagReport {
            tag: tag.clone(),
            written: written.map(|w| w.to_string()),
            action,
            reason,
            signed: *signed,
        });
    }
    if let (Own::Remove, Some(t)) = (own, own_tag) {
        if !report.tags_removed.iter().any(|r| r == t) {
            report.tags_removed.push(t.to_owned());
        }
    }
}

/// The listed blobs nothing references once the plan is done, older than `min_age`; counted in
/// the report.
fn deletions(
    listed: Vec<BlobEntry>,
    referenced_after: &HashSet<Digest>,
    min_age: Duration,
    report: &mut PruneReport,
) -> Vec<BlobEntry> {
    report.blobs_listed = listed.len();
    let now = GoTime::now().unix_nanos();
    let mut delete = Vec::new();
    for blob in listed {
        if referenced_after.contains(&blob.digest) {
            continue;
        }
        if blob
            .modified
            .is_some_and(|m| now - m.unix_nanos() < min_age.as_nanos() as i128)
        {
            report.blobs_too_young += 1;
            continue;
        }
        report.blobs_deleted += 1;
        report.bytes_freed += blob.size;
        report.deleted.push(blob.digest.clone());
        delete.push(blob);
    }
    delete
}

fn unsupported(store: &dyn CacheStore, operation: &str) -> Error {
    Error::Unsupported {
        location: store.location(),
        operation: operation.into(),
    }
}

/// The store's tags, or [`Error::Unsupported`].
fn tag_store(store: &dyn CacheStore) -> Result<&dyn TagStore> {
    store.tag_store().ok_or_else(|| unsupported(store, "removing tags"))
}

/// Every tag at the location with its write time and whether it is signed; only the own tag
/// where the store cannot list.
async fn tag_list(
    store: &dyn CacheStore,
    entries: Option<&[TagEntry]>,
    own_tag: Option<&str>,
    policy: &PrunePolicy,
    by_write: bool,
) -> Result<Vec<(String, Option<GoTime>, bool)>> {
    if let Some(entries) = entries {
        // One row per tag: a gha scope can have a signed and an unsigned index key.
        let mut rows: BTreeMap<String, (Option<GoTime>, bool)> = BTreeMap::new();
        for e in entries {
            let Some(tag) = &e.tag else { continue };
            let row = rows.entry(tag.clone()).or_insert((e.written, false));
            row.0 = row.0.max(e.written);
            row.1 |= e.signed;
        }
        return Ok(rows.into_iter().map(|(t, (w, s))| (t, w, s)).collect());
    }
    if by_write {
        return Err(Error::InvalidCombination {
            reason: format!(
                "{} cannot tell when a tag was last written (a registry keeps no write time), so --keep-duration cannot age its tags; age each result by its layers' creation time instead (--age-by layer-created)",
                store.location()
            ),
        });
    }
    let names = match store.tag_store() {
        Some(tags) => tags.tags().await?,
        None if policy.keep_tags.is_none() => own_tag.map(str::to_owned).into_iter().collect(),
        None => return Err(unsupported(store, "listing tags (--keep-tags)")),
    };
    Ok(names.into_iter().map(|t| (t, None, false)).collect())
}

/// Apply the per-result policy (`keep_storage`, `keep_duration` by layer creation) to the
/// location's own cache.
fn decide_own(
    loaded: Option<LoadedCache>,
    own_tag: Option<&str>,
    remove: &BTreeMap<String, String>,
    policy: &PrunePolicy,
    report: &mut PruneReport,
) -> Result<Own> {
    let Some(loaded) = loaded else {
        return Ok(Own::Unchanged);
    };
    if own_tag.is_some_and(|t| remove.contains_key(t)) {
        let all = loaded.cache.result_count();
        report.selection = PruneSelection {
            results_dropped: all,
            results_kept: 0,
            layer_bytes_before: loaded.cache.layer_bytes(),
            layer_bytes_after: 0,
        };
        return Ok(Own::Unchanged);
    }
    let (pruned, selection) = select(&loaded.cache, policy);
    report.selection = selection;
    if report.selection.results_dropped == 0 {
        return Ok(Own::Unchanged);
    }
    if pruned.has_no_layers() {
        return Ok(Own::Remove);
    }
    // Encoded once, as the commit will encode it: the report's digest and what it references.
    let (manifest, documents) = match loaded.format {
        CacheFormat::Manifest(w) => {
            let encoded = encode_manifest(&pruned, w, options_for(&loaded).oci_mediatypes)?;
            let digest = encoded.manifest.digest.clone();
            (Some(digest.clone()), vec![encoded.config.digest, digest])
        }
        CacheFormat::AnnotatedConfig => (Some(Digest::of_bytes(&encode_annotated(&pruned)?)), Vec::new()),
        CacheFormat::Inline => (None, Vec::new()),
    };
    report.manifest = manifest;
    Ok(Own::Rewrite(pruned, Box::new(loaded), documents))
}

/// Refuse a plan that leaves the own tag without results, or the location without any tag,
/// unless `allow_empty`.
fn refuse_empty(
    store: &dyn CacheStore,
    policy: &PrunePolicy,
    own: &Own,
    own_tag: Option<&str>,
    tags: &[(String, Option<GoTime>, bool)],
    remove: &BTreeMap<String, String>,
    report: &PruneReport,
) -> Result<()> {
    if policy.allow_empty {
        return Ok(());
    }
    if matches!(own, Own::Remove) {
        return Err(Error::WouldEmpty {
            location: store.location(),
            reason: format!(
                "the policy drops every result of {} ({} results, {} layer bytes) and would leave it with no cache",
                own_tag.unwrap_or("this cache"),
                report.selection.results_dropped,
                report.selection.layer_bytes_before
            ),
        });
    }
    let left = tags.iter().filter(|(t, ..)| !remove.contains_key(t)).count();
    if !tags.is_empty() && left == 0 {
        let why: Vec<String> = remove.iter().map(|(t, r)| format!("{t} ({r})")).collect();
        return Err(Error::WouldEmpty {
            location: store.location(),
            reason: format!("it would remove every tag: {}", why.join(", ")),
        });
    }
    Ok(())
}

/// What the location references once the plan is carried out: the entries kept as they are,
/// plus the rewritten own cache (its layers and, in the manifest family, its new config and
/// manifest).
fn referenced_after(entries: &[TagEntry], plan: &Plan) -> HashSet<Digest> {
    let own_changed = !matches!(plan.own, Own::Unchanged);
    let mut out: HashSet<Digest> = entries
        .iter()
        .filter(|e| match &e.tag {
            None => true,
            Some(t) => !(plan.remove.contains(t) || own_changed && plan.own_tag.as_deref() == Some(t.as_str())),
        })
        .flat_map(|e| e.blobs.iter().cloned())
        .collect();
    if let Own::Rewrite(pruned, _, documents) = &plan.own {
        out.extend(pruned.blobs.keys().cloned());
        out.extend(documents.iter().cloned());
    }
    out
}

/// `7d`, `36h`, `90m`, `45s`: the largest unit that divides the duration.
pub(crate) fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, n) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if s >= n && s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}
