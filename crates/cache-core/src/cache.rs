//! The abstract cache: BuildKit's cache-key graph plus one descriptor per layer blob,
//! independent of how any backend stores it.
//!
//! Every backend loads into an [`AbstractCache`] and commits from one. Results are kept as
//! explicit blob chains (bottom layer first) rather than indexes into a layer table; the table
//! is rebuilt on encode with BuildKit's chain-ID de-duplication and `sortConfig` ordering, so
//! decoding then encoding a config BuildKit wrote gives back the same bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::config::{CacheConfig, CacheInput, CacheLayer, CacheRecord, CacheResult};
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gojson::GoTime;

/// Bound on the layer references a config's results may expand to (each result is a full chain:
/// n results on one n-layer chain make n² references). Each reference is a shared digest (16
/// bytes), so the bound holds them to 128 MiB; a generated 250k-record cache needs about 2.3M.
pub const MAX_LAYER_REFERENCES: usize = 8_000_000;

/// What a cache export keeps (`mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Every record, but results only for the final layers (see [`AbstractCache::apply_mode`]).
    Min,
    /// Every record and every result.
    Max,
}

impl Mode {
    /// `min` or `max`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Min => "min",
            Mode::Max => "max",
        }
    }
}

/// A cache: records (cache keys linked by inputs, with results) and layer descriptors.
///
/// Invariant: every blob named by a result has an entry in [`AbstractCache::blobs`], and every
/// `link` is a valid record index (no loops).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AbstractCache {
    /// The records, in config order.
    pub records: Vec<Record>,
    /// Descriptor of every layer blob the results name, keyed by digest.
    pub blobs: BTreeMap<Digest, Descriptor>,
}

/// A cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The solver cache key.
    pub digest: Digest,
    /// Input slots; each slot lists alternative records.
    pub inputs: Vec<Vec<Input>>,
    /// Results, as explicit blob chains.
    pub results: Vec<LayerChain>,
}

/// One alternative in an input slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Input {
    /// Selector (empty = none).
    pub selector: String,
    /// Index into [`AbstractCache::records`].
    pub link: usize,
}

/// A result: the layer stack, bottom first, and when it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerChain {
    /// Blob digests, bottom layer first.
    pub blobs: Vec<Digest>,
    /// Creation time.
    pub created_at: GoTime,
}

/// Problems found while decoding that BuildKit treats as warnings (the result is skipped).
pub type Warnings = Vec<String>;

/// The config's records with their inputs checked (no empty slot, every link in range); results
/// are filled in by the caller.
fn records_of(config: &CacheConfig) -> Result<Vec<Record>> {
    let n = config.records.len();
    let mut records = Vec::with_capacity(n);
    for (r, rec) in config.records.iter().enumerate() {
        let mut inputs = Vec::with_capacity(rec.inputs.len());
        for (i, slot) in rec.inputs.iter().enumerate() {
            if slot.is_empty() {
                return Err(Error::config(format!(
                    "invalid empty input for record {r} ({}): input slot {i} lists no record",
                    rec.digest
                )));
            }
            let mut out = Vec::with_capacity(slot.len());
            for input in slot {
                if input.link < 0 || input.link as usize >= n {
                    return Err(Error::config(format!(
                        "invalid record ID: record {r} ({}) input {i} links to record {}, but the config has {n} records (0..{})",
                        rec.digest,
                        input.link,
                        n.saturating_sub(1)
                    )));
                }
                out.push(Input {
                    selector: input.selector.clone(),
                    link: input.link as usize,
                });
            }
            inputs.push(out);
        }
        records.push(Record {
            digest: rec.digest.clone(),
            inputs,
            results: Vec::new(),
        });
    }
    Ok(records)
}

/// BuildKit's `sortConfig` order of records: by digest, then inputs (slot sizes, selectors and
/// the digests they link to).
fn record_order(recs: &[Record]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..recs.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (&recs[a], &recs[b]);
        ra.digest
            .cmp(&rb.digest)
            .then(ra.inputs.len().cmp(&rb.inputs.len()))
            .then_with(|| {
                for (sa, sb) in ra.inputs.iter().zip(&rb.inputs) {
                    let o = sa.len().cmp(&sb.len()).then_with(|| {
                        for (ia, ib) in sa.iter().zip(sb) {
                            let o = ia
                                .selector
                                .cmp(&ib.selector)
                                .then_with(|| recs[ia.link].digest.cmp(&recs[ib.link].digest));
                            if o.is_ne() {
                                return o;
                            }
                        }
                        std::cmp::Ordering::Equal
                    });
                    if o.is_ne() {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            })
    });
    order
}

impl AbstractCache {
    /// Build from a cache config and a descriptor provider (the manifest's descriptors, or the
    /// config's own annotations). Enforces BuildKit's import rules: loops, out-of-range indexes
    /// and empty input slots are errors; a result naming a blob the provider does not know is
    /// dropped with a warning, as BuildKit's `getRemoteChain` does.
    pub fn from_config(
        config: &CacheConfig,
        describe: impl FnMut(&Digest) -> Option<Descriptor>,
    ) -> Result<(Self, Warnings)> {
        Self::build(config, BTreeMap::new(), describe)
    }

    /// [`AbstractCache::from_config`] with every descriptor given up front (a manifest's
    /// layers); those no result names are dropped.
    pub fn from_config_with_blobs(
        config: &CacheConfig,
        blobs: BTreeMap<Digest, Descriptor>,
    ) -> Result<(Self, Warnings)> {
        Self::build(config, blobs, |_| None)
    }

    fn build(
        config: &CacheConfig,
        mut blobs: BTreeMap<Digest, Descriptor>,
        mut describe: impl FnMut(&Digest) -> Option<Descriptor>,
    ) -> Result<(Self, Warnings)> {
        let mut warnings = Vec::new();
        let mut records = records_of(config)?;
        check_no_loops(&records)?;

        // Per layer-table index: described yet? (a deep stack is walked by every result above
        // it; the provider and the blob table are asked once per layer).
        let mut known: Vec<Option<bool>> = vec![None; config.layers.len()];
        let mut lookup = |d: &Digest, blobs: &mut BTreeMap<Digest, Descriptor>| -> bool {
            if blobs.contains_key(d) {
                return true;
            }
            match describe(d) {
                Some(desc) => {
                    blobs.insert(d.clone(), desc);
                    true
                }
                None => false,
            }
        };
        let mut expanded = 0usize;
        for (r, rec) in config.records.iter().enumerate() {
            for res in &rec.results {
                let chain = layer_chain(config, res.layer)?;
                expanded += chain.len();
                if expanded > MAX_LAYER_REFERENCES {
                    return Err(Error::config(format!(
                        "the results expand to more than {MAX_LAYER_REFERENCES} layer references (long chains shared by many records); refusing to load it"
                    )));
                }
                let missing = chain
                    .iter()
                    .find(|&&i| !*known[i].get_or_insert_with(|| lookup(&config.layers[i].blob, &mut blobs)));
                if let Some(&missing) = missing {
                    warnings.push(format!(
                        "record {} result skipped: its layer blob {} is not described by the cache",
                        rec.digest, config.layers[missing].blob
                    ));
                    continue;
                }
                records[r].results.push(LayerChain {
                    blobs: chain.iter().map(|&i| config.layers[i].blob.clone()).collect(),
                    created_at: res.created_at,
                });
            }
            for ch in &rec.chained_results {
                let mut chain = Vec::with_capacity(ch.layers.len());
                for &idx in &ch.layers {
                    let layer = usize::try_from(idx)
                        .ok()
                        .and_then(|i| config.layers.get(i))
                        .ok_or_else(|| {
                            Error::config(format!("invalid layer index {idx} in a chain of record {}", rec.digest))
                        })?;
                    chain.push(layer.blob.clone());
                }
                if let Some(missing) = chain.iter().find(|d| !lookup(d, &mut blobs)) {
                    warnings.push(format!(
                        "record {} chained result skipped: its layer blob {missing} is not described by the cache",
                        rec.digest
                    ));
                    continue;
                }
                if !chain.is_empty() {
                    records[r].results.push(LayerChain {
                        blobs: chain,
                        created_at: ch.created_at,
                    });
                }
            }
        }
        let mut cache = AbstractCache { records, blobs };
        cache.prune_blobs();
        Ok((cache, warnings))
    }

    /// Encode as BuildKit's exporter does: layer table with chain-ID de-duplication, then
    /// `sortConfig` (layers by blob digest, records by digest and inputs), links remapped and
    /// each input slot sorted by link.
    pub fn to_config(&self) -> CacheConfig {
        // Layer table, keyed by chain (chain ID = the blob list from the bottom).
        let mut layers: Vec<(Digest, i64)> = Vec::new();
        let mut by_chain: HashMap<&[Digest], usize> = HashMap::new();
        let mut results: Vec<Vec<(usize, GoTime)>> = vec![Vec::new(); self.records.len()];
        for (r, rec) in self.records.iter().enumerate() {
            for res in &rec.results {
                let mut parent: i64 = -1;
                for k in 1..=res.blobs.len() {
                    let prefix = &res.blobs[..k];
                    let idx = *by_chain.entry(prefix).or_insert_with(|| {
                        layers.push((prefix[k - 1].clone(), parent));
                        layers.len() - 1
                    });
                    parent = idx as i64;
                }
                if parent >= 0 {
                    results[r].push((parent as usize, res.created_at));
                }
            }
        }
        // sortConfig, layers: by (blob, pre-sort parent index).
        let mut order: Vec<usize> = (0..layers.len()).collect();
        order.sort_by(|&a, &b| layers[a].0.cmp(&layers[b].0).then(layers[a].1.cmp(&layers[b].1)));
        let mut new_layer = vec![0usize; layers.len()];
        for (new, &old) in order.iter().enumerate() {
            new_layer[old] = new;
        }
        let out_layers = order
            .iter()
            .map(|&old| {
                let (blob, parent) = &layers[old];
                CacheLayer {
                    blob: blob.clone(),
                    parent: if *parent < 0 {
                        -1
                    } else {
                        new_layer[*parent as usize] as i64
                    },
                    annotations: None,
                }
            })
            .collect();

        // sortConfig, records.
        let recs = &self.records;
        let rorder = record_order(recs);
        let mut new_rec = vec![0usize; recs.len()];
        for (new, &old) in rorder.iter().enumerate() {
            new_rec[old] = new;
        }
        let out_records = rorder
            .iter()
            .map(|&old| {
                let rec = &recs[old];
                CacheRecord {
                    results: results[old]
                        .iter()
                        .map(|&(layer, created_at)| CacheResult {
                            layer: new_layer[layer] as i64,
                            created_at,
                        })
                        .collect(),
                    chained_results: Vec::new(),
                    digest: rec.digest.clone(),
                    inputs: rec
                        .inputs
                        .iter()
                        .map(|slot| {
                            let mut s: Vec<CacheInput> = slot
                                .iter()
                                .map(|i| CacheInput {
                                    selector: i.selector.clone(),
                                    link: new_rec[i.link] as i64,
                                })
                                .collect();
                            s.sort_by_key(|i| i.link);
                            s
                        })
                        .collect(),
                }
            })
            .collect();
        CacheConfig {
            layers: out_layers,
            records: out_records,
        }
    }

    /// The layer blobs in the order of the encoded config's `layers` table (sorted by digest,
    /// de-duplicated): the order of the manifest's layer descriptors.
    pub fn layer_order(&self) -> Vec<Digest> {
        let used = self.used_blobs();
        // `blobs` is sorted by digest and holds every blob a result names (the invariant).
        self.blobs.keys().filter(|d| used.contains(d)).cloned().collect()
    }

    /// Every blob some result names.
    fn used_blobs(&self) -> HashSet<&Digest> {
        self.records
            .iter()
            .flat_map(|r| r.results.iter().flat_map(|c| &c.blobs))
            .collect()
    }

    /// Number of results over all records.
    pub fn result_count(&self) -> usize {
        self.records.iter().map(|r| r.results.len()).sum()
    }

    /// Whether the cache has no layers (BuildKit skips registry/local export then).
    pub fn has_no_layers(&self) -> bool {
        self.records.iter().all(|r| r.results.is_empty())
    }

    /// Total bytes of the layer blobs.
    pub fn layer_bytes(&self) -> u64 {
        self.blobs.values().map(|d| d.size).sum()
    }

    /// Apply `mode=` on export.
    ///
    /// * `max` keeps every record's results.
    /// * `min` keeps every record (the whole key graph) but a result only when every layer of
    ///   its chain belongs to the chain of one *final* result. A final record is one that no
    ///   other record links to (the build's outputs); final results are their results.
    ///   This reproduces what BuildKit's min export gives from a build: the final layer stack
    ///   (including base layers) plus the key graph.
    pub fn apply_mode(&self, mode: Mode) -> AbstractCache {
        match mode {
            Mode::Max => self.clone(),
            Mode::Min => {
                let linked: HashSet<usize> = self
                    .records
                    .iter()
                    .flat_map(|r| r.inputs.iter().flatten().map(|i| i.link))
                    .collect();
                let finals: Vec<HashSet<&Digest>> = self
                    .records
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !linked.contains(i))
                    .flat_map(|(_, r)| r.results.iter().map(|c| c.blobs.iter().collect()))
                    .collect();
                let mut out = self.clone();
                for rec in &mut out.records {
                    rec.results
                        .retain(|c| finals.iter().any(|f| c.blobs.iter().all(|b| f.contains(b))));
                }
                out.prune_blobs();
                out
            }
        }
    }

    /// Drop results whose chain names a blob for which `present` is false, and the descriptors
    /// no result names any more. Returns one warning per dropped result.
    pub fn drop_results_without(&mut self, mut present: impl FnMut(&Digest) -> bool) -> Warnings {
        let mut warnings = Vec::new();
        for rec in &mut self.records {
            rec.results.retain(|c| match c.blobs.iter().find(|b| !present(b)) {
                Some(missing) => {
                    warnings.push(format!(
                        "record {} result skipped: blob {missing} is missing",
                        rec.digest
                    ));
                    false
                }
                None => true,
            });
        }
        self.prune_blobs();
        warnings
    }

    /// Replace blobs (e.g. after recompression): every chain naming an old digest names the new
    /// descriptor's digest instead, and the descriptors are swapped.
    pub fn replace_blobs(&mut self, map: HashMap<Digest, Descriptor>) {
        for rec in &mut self.records {
            for res in &mut rec.results {
                for b in &mut res.blobs {
                    if let Some(new) = map.get(b) {
                        *b = new.digest.clone();
                    }
                }
            }
        }
        for (old, new) in map {
            self.blobs.remove(&old);
            self.blobs.insert(new.digest.clone(), new);
        }
    }

    /// Remove descriptors no result names.
    pub fn prune_blobs(&mut self) {
        let used = self.used_blobs();
        let unused: Vec<Digest> = self.blobs.keys().filter(|d| !used.contains(d)).cloned().collect();
        for d in unused {
            self.blobs.remove(&d);
        }
    }

    /// Merge several caches into one (many `--cache-from`). Records with the same digest and
    /// the same (recursively merged) inputs become one; results with the same blob chain become
    /// one, keeping the newest time; layer descriptors are united (first one wins).
    pub fn merge(caches: impl IntoIterator<Item = AbstractCache>) -> AbstractCache {
        type Key = (Digest, Vec<Vec<(String, usize)>>);
        let mut out = AbstractCache::default();
        let mut index: HashMap<Key, usize> = HashMap::new();
        for mut cache in caches {
            let mut map = vec![usize::MAX; cache.records.len()];
            for r in topo_order(&cache.records) {
                // Moved, not copied: each record is visited once.
                let results = std::mem::take(&mut cache.records[r].results);
                let rec = &cache.records[r];
                let inputs: Vec<Vec<(String, usize)>> = rec
                    .inputs
                    .iter()
                    .map(|slot| {
                        let s: BTreeSet<(String, usize)> =
                            slot.iter().map(|i| (i.selector.clone(), map[i.link])).collect();
                        s.into_iter().collect()
                    })
                    .collect();
                let key = (rec.digest.clone(), inputs);
                let idx = match index.get(&key) {
                    Some(&i) => i,
                    None => {
                        out.records.push(Record {
                            digest: rec.digest.clone(),
                            inputs: key
                                .1
                                .iter()
                                .map(|s| {
                                    s.iter()
                                        .map(|(selector, link)| Input {
                                            selector: selector.clone(),
                                            link: *link,
                                        })
                                        .collect()
                                })
                                .collect(),
                            results: Vec::new(),
                        });
                        index.insert(key, out.records.len() - 1);
                        out.records.len() - 1
                    }
                };
                map[r] = idx;
                let target = &mut out.records[idx].results;
                for res in results {
                    match target.iter_mut().find(|t| t.blobs == res.blobs) {
                        Some(t) if t.created_at < res.created_at => t.created_at = res.created_at,
                        Some(_) => {}
                        None => target.push(res),
                    }
                }
            }
            for (d, desc) in cache.blobs {
                out.blobs.entry(d).or_insert(desc);
            }
        }
        out
    }
}

/// Follow parent links from `top` to the bottom; returns the layer-table indices, bottom first.
fn layer_chain(config: &CacheConfig, top: i64) -> Result<Vec<usize>> {
    let mut chain = Vec::new();
    let mut idx = top;
    loop {
        let i = usize::try_from(idx)
            .ok()
            .filter(|&i| i < config.layers.len())
            .ok_or_else(|| {
                Error::config(format!(
                    "invalid layer index {idx}: the config has {} layers",
                    config.layers.len()
                ))
            })?;
        chain.push(i);
        if chain.len() > config.layers.len() {
            return Err(Error::config(format!(
                "invalid looping layer: layer {top} reaches itself through its parents"
            )));
        }
        let parent = config.layers[i].parent;
        if parent == -1 {
            break;
        }
        idx = parent;
    }
    chain.reverse();
    Ok(chain)
}

fn check_no_loops(records: &[Record]) -> Result<()> {
    // 0 = unvisited, 1 = on the stack, 2 = done. Iterative DFS so deep graphs cannot overflow.
    let links_of: Vec<Vec<usize>> = records
        .iter()
        .map(|r| r.inputs.iter().flatten().map(|i| i.link).collect())
        .collect();
    let mut state = vec![0u8; records.len()];
    for start in 0..records.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (r, ref mut next)) = stack.last_mut() {
            let links = &links_of[r];
            if *next < links.len() {
                let l = links[*next];
                *next += 1;
                match state[l] {
                    0 => {
                        state[l] = 1;
                        stack.push((l, 0));
                    }
                    1 => {
                        return Err(Error::config(format!(
                            "invalid looping record: record {l} ({}) depends on itself through its inputs",
                            records[l].digest
                        )))
                    }
                    _ => {}
                }
            } else {
                state[r] = 2;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// Records in an order where every record comes after the records it links to.
fn topo_order(records: &[Record]) -> Vec<usize> {
    let mut done = vec![false; records.len()];
    let mut order = Vec::with_capacity(records.len());
    for start in 0..records.len() {
        let mut stack = vec![(start, false)];
        while let Some((r, expanded)) = stack.pop() {
            if done[r] {
                continue;
            }
            if expanded {
                done[r] = true;
                order.push(r);
            } else {
                stack.push((r, true));
                for i in records[r].inputs.iter().flatten() {
                    if !done[i.link] {
                        stack.push((i.link, false));
                    }
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::MediaType;

    fn d(s: &str) -> Digest {
        Digest::of_bytes(s.as_bytes())
    }

    fn cfg(json: &str) -> CacheConfig {
        CacheConfig::from_slice(json.as_bytes(), "test").unwrap()
    }

    fn all(dg: &Digest) -> Option<Descriptor> {
        Some(Descriptor::new(MediaType::OciLayerGzip, dg.clone(), 1))
    }

    fn check_err(json: String, expected: &str) {
        let err = AbstractCache::from_config(&cfg(&json), all).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} should contain {expected}");
    }

    #[test]
    fn invalid_graphs_are_errors() {
        let (a, b) = (d("a"), d("b"));
        check_err(
            format!(
                r#"{{"records":[{{"digest":"{a}","inputs":[[{{"link":1}}]]}},{{"digest":"{b}","inputs":[[{{"link":0}}]]}}]}}"#
            ),
            "invalid looping record",
        );
        check_err(
            format!(r#"{{"records":[{{"digest":"{a}","inputs":[[{{"link":0}}]]}}]}}"#),
            "invalid looping record",
        );
        check_err(
            format!(r#"{{"records":[{{"digest":"{a}","inputs":[[{{"link":5}}]]}}]}}"#),
            "invalid record ID",
        );
        check_err(
            format!(r#"{{"records":[{{"digest":"{a}","inputs":[[{{"link":-1}}]]}}]}}"#),
            "invalid record ID",
        );
        check_err(
            format!(r#"{{"records":[{{"digest":"{a}","inputs":[[]]}}]}}"#),
            "invalid empty input",
        );
        check_err(
            format!(
                r#"{{"layers":[{{"blob":"{a}","parent":-1}}],"records":[{{"layers":[{{"layer":3,"createdAt":"2024-01-01T00:00:00Z"}}],"digest":"{a}"}}]}}"#
            ),
            "invalid layer index 3",
        );
        check_err(
            format!(
                r#"{{"layers":[{{"blob":"{a}","parent":1}},{{"blob":"{b}"}}],"records":[{{"layers":[{{"layer":0,"createdAt":"2024-01-01T00:00:00Z"}}],"digest":"{a}"}}]}}"#
            ),
            "invalid looping layer",
        );
    }

    #[test]
    fn missing_blob_drops_result_with_warning() {
        let (a, b, k) = (d("a"), d("b"), d("key"));
        let c = cfg(&format!(
            r#"{{"layers":[{{"blob":"{a}","parent":-1}},{{"blob":"{b}"}}],"records":[{{"layers":[{{"layer":1,"createdAt":"2024-01-01T00:00:00Z"}}],"digest":"{k}"}}]}}"#
        ));
        let (cache, warnings) = AbstractCache::from_config(&c, |x| if *x == b { None } else { all(x) }).unwrap();
        assert_eq!(cache.records.len(), 1, "record kept");
        assert_eq!(cache.result_count(), 0);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains(&b.to_string()));
        assert!(cache.blobs.is_empty());
    }

    #[test]
    fn merge_dedupes_records_and_results() {
        let (a, k1, k2) = (d("a"), d("k1"), d("k2"));
        let json = format!(
            r#"{{"layers":[{{"blob":"{a}","parent":-1}}],"records":[{{"digest":"{k1}"}},{{"layers":[{{"layer":0,"createdAt":"2024-01-01T00:00:00Z"}}],"digest":"{k2}","inputs":[[{{"link":0}}]]}}]}}"#
        );
        let (c1, _) = AbstractCache::from_config(&cfg(&json), all).unwrap();
        let newer = json.replace("2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z");
        let (c2, _) = AbstractCache::from_config(&cfg(&newer), all).unwrap();
        let m = AbstractCache::merge([c1.clone(), c2]);
        assert_eq!(m.records.len(), 2);
        assert_eq!(m.result_count(), 1);
        assert_eq!(
            m.records.iter().find(|r| r.digest == k2).unwrap().results[0]
                .created_at
                .to_string(),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(AbstractCache::merge([c1.clone()]).to_config(), c1.to_config());
    }
}
