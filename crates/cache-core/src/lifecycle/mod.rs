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

use std::collections::{BTreeSet, HashMap, HashSet};
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
        let dropped = oldest_over(&out, limit);
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

/// The results to drop, oldest first, until the layer bytes the rest use fit `limit`; a blob's
/// bytes are freed only when no kept result uses it. Linear in the chains' total length: each
/// blob counts the kept results that use it.
fn oldest_over(cache: &AbstractCache, limit: u64) -> HashSet<(usize, usize)> {
    let mut order: Vec<(GoTime, usize, usize)> = Vec::new();
    let mut users: HashMap<&Digest, usize> = HashMap::new();
    for (r, rec) in cache.records.iter().enumerate() {
        for (i, res) in rec.results.iter().enumerate() {
            order.push((res.created_at, r, i));
            for d in res.blobs.iter().collect::<BTreeSet<_>>() {
                *users.entry(d).or_default() += 1;
            }
        }
    }
    order.sort();
    let size = |d: &Digest| cache.blobs.get(d).map_or(0, |desc| desc.size);
    let mut used: u64 = users.keys().map(|d| size(d)).sum();
    let mut dropped = HashSet::new();
    for (_, r, i) in order {
        if used <= limit {
            break;
        }
        for d in cache.records[r].results[i].blobs.iter().collect::<BTreeSet<_>>() {
            if let Some(n) = users.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    used -= size(d);
                }
            }
        }
        dropped.insert((r, i));
    }
    dropped
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

    /// `n` records with one result each over its own 1000-byte blob, result `i` created at second
    /// `i`, plus the blob of record 0 also under the newest result's chain (shared).
    fn many(n: usize) -> AbstractCache {
        use crate::cache::{LayerChain, Record};
        let mut cache = AbstractCache::default();
        let blob = |i: usize| {
            crate::Descriptor::new(
                crate::MediaType::OciLayerGzip,
                Digest::of_bytes(format!("{i}").as_bytes()),
                1000,
            )
        };
        for i in 0..n {
            let d = blob(i);
            cache.blobs.insert(d.digest.clone(), d.clone());
            let mut chain = vec![d.digest];
            if i == n - 1 {
                chain.insert(0, blob(0).digest);
            }
            cache.records.push(Record {
                digest: Digest::of_bytes(format!("record {i}").as_bytes()),
                inputs: Vec::new(),
                results: vec![LayerChain {
                    blobs: chain,
                    created_at: GoTime::from_unix(i as i64, 0),
                }],
            });
        }
        cache
    }

    #[test]
    fn keep_storage_drops_the_oldest_and_frees_only_unshared_blobs() {
        let policy = |bytes| PrunePolicy {
            keep_storage: Some(bytes),
            ..Default::default()
        };
        // 10 blobs of 1000 bytes; keep 3000. Dropping result 0 frees nothing (the newest result
        // uses blob 0 too), so 8 results go and results 8 and 9 stay over blobs 0, 8 and 9.
        let (out, sel) = select(&many(10), &policy(3000));
        assert_eq!((sel.results_dropped, sel.results_kept), (8, 2), "{sel:?}");
        assert_eq!(sel.layer_bytes_after, 3000, "blob 0 is shared with the newest result");
        assert!(out.records[0].results.is_empty() && !out.records[9].results.is_empty());
    }

    /// A complexity regression guard: 50,000 results fit in one pass (the quadratic selection
    /// this replaced needed minutes for 32,000).
    #[test]
    fn keep_storage_is_linear_in_the_results() {
        let n = 50_000;
        let (_, sel) = select(
            &many(n),
            &PrunePolicy {
                keep_storage: Some(100 * 1000),
                ..Default::default()
            },
        );
        assert_eq!(sel.results_kept, 99, "99 newest results, the newest over two blobs");
        assert_eq!(sel.results_dropped, n - 99);
    }

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
