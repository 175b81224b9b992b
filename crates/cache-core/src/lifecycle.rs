//! Cache lifecycle: `prune` (drop old results, fit a size, then delete unreferenced blobs)
//! and `diff` (what two caches share). Store-side work goes through [`CacheStore`].

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::cache::AbstractCache;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gojson::GoTime;
use crate::spec::ExportOptions;
use crate::store::{CacheFormat, CacheStore, LoadedCache};

/// What `prune` keeps.
#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    /// Drop results created longer ago than this.
    pub keep_duration: Option<Duration>,
    /// Then drop the oldest results until the layer bytes fit.
    pub keep_storage: Option<u64>,
    /// "Now", for `keep_duration` (injectable for tests).
    pub now: Option<GoTime>,
    /// Keep only these tags at the location; the others are removed (before garbage
    /// collection frees their blobs).
    pub keep_tags: Option<Vec<String>>,
}

/// What the policy dropped from one cache.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneSelection {
    /// Results dropped.
    pub results_dropped: usize,
    /// Results kept.
    pub results_kept: usize,
    /// Layer bytes before.
    pub layer_bytes_before: u64,
    /// Layer bytes after.
    pub layer_bytes_after: u64,
}

/// Apply a policy to a cache. Records (cache keys, a few bytes each) are all kept; results are
/// dropped by age, then oldest first until the layers fit `keep_storage`.
pub fn select(cache: &AbstractCache, policy: &PrunePolicy) -> (AbstractCache, PruneSelection) {
    let mut out = cache.clone();
    let before = cache.layer_bytes();
    let total = cache.result_count();
    if let Some(keep) = policy.keep_duration {
        let now = policy.now.unwrap_or_else(GoTime::now);
        let cutoff = now.unix_nanos() - keep.as_nanos() as i128;
        for rec in &mut out.records {
            rec.results.retain(|r| r.created_at.unix_nanos() >= cutoff);
        }
        out.prune_blobs();
    }
    if let Some(limit) = policy.keep_storage {
        // Oldest first; a blob's bytes are freed only when no kept result uses it.
        let mut order: Vec<(GoTime, usize, usize)> = out
            .records
            .iter()
            .enumerate()
            .flat_map(|(r, rec)| {
                rec.results
                    .iter()
                    .enumerate()
                    .map(move |(i, res)| (res.created_at, r, i))
            })
            .collect();
        order.sort();
        let mut dropped: HashSet<(usize, usize)> = HashSet::new();
        let size_of = |c: &AbstractCache, dropped: &HashSet<(usize, usize)>| -> u64 {
            let used: BTreeSet<&Digest> = c
                .records
                .iter()
                .enumerate()
                .flat_map(|(r, rec)| {
                    rec.results
                        .iter()
                        .enumerate()
                        .filter(move |(i, _)| !dropped.contains(&(r, *i)))
                        .flat_map(|(_, res)| res.blobs.iter())
                })
                .collect();
            used.iter().filter_map(|d| c.blobs.get(*d)).map(|d| d.size).sum()
        };
        for (_, r, i) in order {
            if size_of(&out, &dropped) <= limit {
                break;
            }
            dropped.insert((r, i));
        }
        for (r, rec) in out.records.iter_mut().enumerate() {
            let mut i = 0;
            rec.results.retain(|_| {
                let keep = !dropped.contains(&(r, i));
                i += 1;
                keep
            });
        }
        out.prune_blobs();
    }
    let kept = out.result_count();
    let after = out.layer_bytes();
    (
        out,
        PruneSelection {
            results_dropped: total - kept,
            results_kept: kept,
            layer_bytes_before: before,
            layer_bytes_after: after,
        },
    )
}

/// Export options that re-encode a loaded cache in the format it came in.
pub fn options_for(loaded: &LoadedCache) -> ExportOptions {
    let mut o = ExportOptions::default();
    if let CacheFormat::Manifest(w) = loaded.format {
        o.oci_mediatypes = w != crate::manifest::Wrapper::DockerManifestList;
        o.image_manifest = w == crate::manifest::Wrapper::ImageManifest;
    }
    o
}

/// The result of `prune`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Where.
    pub location: String,
    /// What the policy dropped.
    pub selection: PruneSelection,
    /// The manifest written for the pruned cache (none when nothing was dropped).
    pub manifest: Option<Digest>,
    /// Blobs listed at the location.
    pub blobs_listed: usize,
    /// Blobs deleted (or that would be, with `dry_run`).
    pub blobs_deleted: usize,
    /// Bytes freed (or that would be).
    pub bytes_freed: u64,
    /// Unreferenced blobs kept because they are younger than `min_age` (a concurrent export may
    /// be about to reference them).
    pub blobs_too_young: usize,
    /// Tags removed by `keep_tags`.
    pub tags_removed: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Notes (e.g. a store that cannot delete blobs).
    pub notes: Vec<String>,
}

/// Prune a cache in place: apply `policy` to the cache at `store` (rewriting its manifest when
/// results were dropped), then delete every blob at the location that no manifest references,
/// unless it is younger than `min_age`.
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
    let has_policy = policy.keep_duration.is_some() || policy.keep_storage.is_some();
    let loaded = match store.load().await {
        Ok(l) => l,
        // No cache under this tag/name: nothing to select, garbage collection still runs.
        Err(e) if e.is_not_found() && !has_policy => None,
        Err(e) => return Err(e),
    };
    if let Some(loaded) = loaded {
        let (pruned, selection) = select(&loaded.cache, policy);
        if selection.results_dropped > 0 && !dry_run {
            if pruned.has_no_layers() {
                // Nothing left to write (BuildKit would skip an empty export): untag instead,
                // so garbage collection frees the blobs.
                match store.tag() {
                    Some(t) => {
                        store.remove_tag(&t).await?;
                        report.tags_removed.push(t);
                    }
                    None => report
                        .notes
                        .push("every result was dropped, but this location has no tag to remove".into()),
                }
            } else {
                let committed = store.commit(&pruned, &options_for(&loaded)).await?;
                report.manifest = committed.manifest.map(|m| m.digest);
                report.notes.extend(committed.warnings);
            }
        }
        report.selection = selection;
    }
    if let Some(keep) = &policy.keep_tags {
        for tag in store.tags().await? {
            if !keep.contains(&tag) {
                if !dry_run {
                    store.remove_tag(&tag).await?;
                }
                report.tags_removed.push(tag);
            }
        }
    }
    let referenced = match store.referenced_blobs().await {
        Ok(r) => r,
        Err(Error::Unsupported { .. }) => {
            report.notes.push(format!(
                "{}: blobs cannot be listed or deleted here; unreferenced blobs are left to the service's own garbage collection",
                store.location()
            ));
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    let listed = store.list_blobs().await?;
    report.blobs_listed = listed.len();
    // Read the references again after listing: a manifest written meanwhile wins.
    let referenced: std::collections::HashSet<Digest> = if dry_run {
        referenced
    } else {
        referenced.union(&store.referenced_blobs().await?).cloned().collect()
    };
    let now = GoTime::now().unix_nanos();
    for blob in listed {
        if referenced.contains(&blob.digest) {
            continue;
        }
        let young = blob
            .modified
            .is_some_and(|m| now - m.unix_nanos() < min_age.as_nanos() as i128);
        if young {
            report.blobs_too_young += 1;
            continue;
        }
        if !dry_run {
            store.delete_blob(&blob.digest).await?;
        }
        report.blobs_deleted += 1;
        report.bytes_freed += blob.size;
    }
    Ok(report)
}

/// What two caches share (`bkcache diff`). Stable JSON: fields are only ever added.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// Layers in both.
    pub shared_layers: usize,
    /// Layers only in A.
    pub only_a_layers: usize,
    /// Layers only in B.
    pub only_b_layers: usize,
    /// Bytes of the shared layers.
    pub shared_bytes: u64,
    /// Bytes only in A.
    pub only_a_bytes: u64,
    /// Bytes only in B.
    pub only_b_bytes: u64,
    /// Records (cache keys) in both.
    pub shared_records: usize,
    /// Records only in A.
    pub only_a_records: usize,
    /// Records only in B.
    pub only_b_records: usize,
    /// Records with a result in both (builds of B's steps that A's cache would hit).
    pub shared_results: usize,
}

/// Compare two caches by layer digest and record key.
pub fn diff(a: &AbstractCache, b: &AbstractCache) -> DiffReport {
    let la: BTreeSet<&Digest> = a.blobs.keys().collect();
    let lb: BTreeSet<&Digest> = b.blobs.keys().collect();
    let bytes = |set: &mut dyn Iterator<Item = &&Digest>, c: &AbstractCache| -> u64 {
        set.filter_map(|d| c.blobs.get(*d)).map(|d| d.size).sum()
    };
    let ra: BTreeSet<&Digest> = a.records.iter().map(|r| &r.digest).collect();
    let rb: BTreeSet<&Digest> = b.records.iter().map(|r| &r.digest).collect();
    let with_results = |c: &AbstractCache| -> BTreeSet<Digest> {
        c.records
            .iter()
            .filter(|r| !r.results.is_empty())
            .map(|r| r.digest.clone())
            .collect()
    };
    DiffReport {
        shared_layers: la.intersection(&lb).count(),
        only_a_layers: la.difference(&lb).count(),
        only_b_layers: lb.difference(&la).count(),
        shared_bytes: bytes(&mut la.intersection(&lb), a),
        only_a_bytes: bytes(&mut la.difference(&lb), a),
        only_b_bytes: bytes(&mut lb.difference(&la), b),
        shared_records: ra.intersection(&rb).count(),
        only_a_records: ra.difference(&rb).count(),
        only_b_records: rb.difference(&ra).count(),
        shared_results: with_results(a).intersection(&with_results(b)).count(),
    }
}

/// Parse `7d`, `36h`, `90m`, `45s`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| bad_value("duration", s, "a number with unit s, m, h, d or w, e.g. 7d"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(bad_value("duration", s, "a number with unit s, m, h, d or w, e.g. 7d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// Parse `5GB`, `500MiB`, `1024`: decimal (kB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB) units.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| bad_value("size", s, "a number with an optional unit, e.g. 5GB or 500MiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        _ => {
            return Err(bad_value(
                "size",
                s,
                "a number with unit B, kB, MB, GB, TB, KiB, MiB, GiB or TiB",
            ))
        }
    };
    Ok((n * mult) as u64)
}

fn bad_value(what: &str, value: &str, allowed: &str) -> Error {
    Error::InvalidValue {
        attribute: what.into(),
        value: value.into(),
        allowed: format!("expected {allowed}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("7 days").is_err() && parse_duration("").is_err());
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("500MiB").unwrap(), 500 << 20);
        assert_eq!(parse_size("1.5kB").unwrap(), 1500);
        assert!(parse_size("5 parsecs").is_err());
    }
}
