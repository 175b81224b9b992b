//! Cache lifecycle: `prune` (remove stale tags, drop results to fit a size, then delete
//! unreferenced blobs; [`prune()`] in `prune.rs`) and `diff` (what two caches share).
//! Store-side work goes through [`crate::CacheStore`].
//!
//! Rules, and where they live:
//! - a dry run is the plan the real run carries out (`prune::make_plan`), so both report the
//!   same tags, blobs and bytes;
//! - `keep_duration` ages each tag by when it was last written ([`AgeBy::LastWrite`], the
//!   store's [`crate::TagEntry::written`]), per result only with [`AgeBy::LayerCreated`];
//! - a plan that leaves a tag, or the whole location, without cache is refused
//!   ([`Error::WouldEmpty`]) unless [`PrunePolicy::allow_empty`].

mod prune;

pub use prune::{prune, PruneReport, TagAction, TagReport};

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::cache::AbstractCache;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gojson::GoTime;
use crate::spec::ExportOptions;
use crate::store::{CacheFormat, LoadedCache};

/// Which clock `keep_duration` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgeBy {
    /// When each tag (name, scope) was last written, by the backend's clock: a tag not written
    /// for the duration is removed whole. BuildKit keeps a reused layer's `createdAt`, so a
    /// cache exported a minute ago can hold only old layers: this is the clock that keeps it.
    #[default]
    LastWrite,
    /// Each result's layer creation time (`buildkit/createdat`): results older than the
    /// duration are dropped from the location's own tag.
    LayerCreated,
}

/// What `prune` keeps.
#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    /// Remove tags not written for this long ([`AgeBy::LastWrite`]), or drop results created
    /// longer ago ([`AgeBy::LayerCreated`]).
    pub keep_duration: Option<Duration>,
    /// The clock `keep_duration` reads.
    pub age_by: AgeBy,
    /// Allow a prune that leaves a tag or the whole location without cache (refused otherwise).
    pub allow_empty: bool,
    /// Then drop the oldest results until the layer bytes fit.
    pub keep_storage: Option<u64>,
    /// "Now", for `keep_duration` (injectable for tests).
    pub now: Option<GoTime>,
    /// Keep only these tags at the location; the others are removed (before garbage
    /// collection frees their blobs). Beside `keep_duration` with [`AgeBy::LastWrite`] they are
    /// instead the tags kept however old (the others go only when stale).
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

/// Apply the per-result part of a policy to a cache. Records (cache keys, a few bytes each) are
/// all kept; results are dropped by layer age (with [`AgeBy::LayerCreated`]), then oldest first
/// until the layers fit `keep_storage`.
pub fn select(cache: &AbstractCache, policy: &PrunePolicy) -> (AbstractCache, PruneSelection) {
    let mut out = cache.clone();
    let before = cache.layer_bytes();
    let total = cache.result_count();
    if let Some(keep) = policy.keep_duration.filter(|_| policy.age_by == AgeBy::LayerCreated) {
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
