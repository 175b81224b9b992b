//! The inline cache: `moby.buildkit.cache.v0`, a cache embedded in an image config.
//!
//! BuildKit's `--export-cache type=inline` stores the cache's **records only** (no `layers`
//! table) under the top-level image-config key [`INLINE_CACHE_KEY`], as a JSON string holding
//! the standard base64 (with padding) of the compact JSON array of records. Layer indexes in
//! those records refer to the image's own layers, where image layer `i` has parent `i - 1`:
//! a result over the image's first `n` layers is `{"layer": n-1, …}`; a result over other image
//! layers is a chained result, `"chains":[{"layers":[i0,i1,…],…}]`. The layer descriptors come
//! from the image manifest, annotated from the config's `rootfs.diff_ids` and `history`.
//!
//! [`decode_inline`] is BuildKit's `importInlineCache` for one image manifest;
//! [`encode_inline`] is `ExportForLayers` plus `patchImageConfig`, so re-encoding a config
//! BuildKit wrote gives back its bytes (and its digest).
//!
//! ```
//! use bkcache_core::inline::{decode_inline, encode_inline, INLINE_CACHE_KEY};
//! use bkcache_core::manifest::ImageManifest;
//!
//! let (layer, diff_id, key) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
//! let manifest: ImageManifest = serde_json::from_str(&format!(
//!     r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":1}},
//!        "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{layer}","size":9}}]}}"#,
//!     "d".repeat(64)
//! ))
//! .unwrap();
//! // One record whose result is the image's first layer, as BuildKit writes it.
//! let records = format!(r#"[{{"layers":[{{"layer":0,"createdAt":"2024-01-02T03:04:05Z"}}],"digest":"sha256:{key}"}}]"#);
//! let config = format!(
//!     r#"{{"architecture":"amd64","{INLINE_CACHE_KEY}":"{}","rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#,
//!     base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &records)
//! );
//!
//! let (cache, warnings) = decode_inline(&manifest, config.as_bytes()).unwrap().expect("an inline cache");
//! assert!(warnings.is_empty());
//! assert_eq!(cache.result_count(), 1);
//! assert_eq!(cache.blobs.values().next().unwrap().diff_id().unwrap().hex(), diff_id);
//! assert_eq!(encode_inline(&cache, &manifest, config.as_bytes()).unwrap().unwrap(), config.as_bytes());
//! ```

use std::collections::{BTreeMap, HashMap};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::cache::{AbstractCache, Mode, Warnings};
use crate::config::{records_from_slice, CacheConfig, CacheLayer, CacheResult, ChainedResult};
use crate::descriptor::{Descriptor, ANNOTATION_CREATED_AT, ANNOTATION_UNCOMPRESSED};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gojson::{to_go_json, GoTime};
use crate::manifest::ImageManifest;

/// The top-level image-config key that holds the inline cache.
pub const INLINE_CACHE_KEY: &str = "moby.buildkit.cache.v0";

/// Annotation BuildKit's inline import puts on each layer: the `created_by` of its history entry.
pub const ANNOTATION_DESCRIPTION: &str = "buildkit/description";

/// Go's `base64.StdEncoding` as `encoding/json` decodes a `[]byte`: padding required, non-zero
/// trailing bits tolerated.
const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// The parts of an image config that inline cache reads (BuildKit's `image` struct in
/// `cache/remotecache/import.go`). Unknown keys are ignored, `null` reads as absent.
#[derive(Debug, Default, Deserialize)]
struct ImageConfigView {
    #[serde(default)]
    rootfs: Option<RootFs>,
    #[serde(default)]
    history: Option<Vec<History>>,
    #[serde(rename = "moby.buildkit.cache.v0", default)]
    cache: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Option<Vec<Digest>>,
}

#[derive(Debug, Deserialize)]
struct History {
    #[serde(default)]
    created: Option<GoTime>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    empty_layer: Option<bool>,
}

impl ImageConfigView {
    fn parse(config_bytes: &[u8], what: &str) -> Result<Self> {
        serde_json::from_slice(config_bytes).map_err(|source| Error::Json {
            what: what.to_owned(),
            source,
        })
    }

    fn diff_ids(&self) -> &[Digest] {
        self.rootfs
            .as_ref()
            .and_then(|r| r.diff_ids.as_deref())
            .unwrap_or_default()
    }
}

fn config_name(manifest: &ImageManifest) -> String {
    format!("image config {}", manifest.config.digest)
}

/// The inline caches of plain images (an image, or the images of an index), read from `store`
/// and merged, as BuildKit's importer does when a ref holds no cache manifest: each image's
/// config is read (verified, at most `limit` bytes) and decoded; images without layers are
/// skipped. `None` when no image carries a cache. Returns the cache, its warnings and the first
/// config that held records.
pub async fn load_image_caches(
    store: &dyn crate::CacheStore,
    manifests: &[ImageManifest],
    limit: u64,
) -> Result<Option<(AbstractCache, Warnings, crate::Descriptor)>> {
    let (mut caches, mut warnings, mut config) = (Vec::new(), Vec::new(), None);
    for m in manifests.iter().filter(|m| !m.layers.is_empty()) {
        let what = format!("image config {} in {}", m.config.digest, store.location());
        let bytes = crate::store::read_small_blob(store, &m.config, limit, &what).await?;
        if let Some((cache, w)) = decode_inline(m, &bytes)? {
            caches.push(cache);
            warnings.extend(w);
            config.get_or_insert_with(|| m.config.clone());
        }
    }
    Ok(config.map(|c| (AbstractCache::merge(caches), warnings, c)))
}

/// BuildKit's `importInlineCache` for one image manifest and its config.
///
/// Returns `Ok(None)` when the manifest has no layers, when `rootfs.diff_ids` does not have
/// one entry per manifest layer (BuildKit warns "invalid image with mismatching manifest and
/// config" and skips the image; so do we, with a `tracing` warning), or when the config has no
/// [`INLINE_CACHE_KEY`]. Otherwise the cache: the records decoded from the key, over a layer
/// table made of the image's layers (layer `i` has parent `i - 1`). Each layer descriptor is
/// `manifest.layers[i]` with `containerd.io/uncompressed` = `diff_ids[i]`, and
/// `buildkit/createdat` = `history[k].created`, `buildkit/description` = `history[k].created_by`
/// when set, where `k` counts only history entries whose `empty_layer` is not true.
///
/// Errors: a config or records array that is not JSON of the expected shape, a key value that
/// is not standard base64, and the graph errors of [`AbstractCache::from_config`] (a result
/// index past the image's layers, loops, empty input slots).
pub fn decode_inline(manifest: &ImageManifest, config_bytes: &[u8]) -> Result<Option<(AbstractCache, Warnings)>> {
    if manifest.layers.is_empty() {
        return Ok(None);
    }
    let what = config_name(manifest);
    let view = ImageConfigView::parse(config_bytes, &what)?;
    let diff_ids = view.diff_ids();
    if diff_ids.len() != manifest.layers.len() {
        tracing::warn!(
            "inline cache of {what} skipped: invalid image with mismatching manifest and config ({} layers, {} rootfs.diff_ids)",
            manifest.layers.len(),
            diff_ids.len()
        );
        return Ok(None);
    }
    let Some(encoded) = view.cache.as_deref() else {
        return Ok(None);
    };
    let records_json = decode_base64(encoded, &what)?;
    let records = records_from_slice(&records_json, &format!("{INLINE_CACHE_KEY} records in {what}"))?;

    // History entries that made a layer, in order (BuildKit's parseCreatedLayerInfo).
    let layer_history: Vec<&History> = view
        .history
        .iter()
        .flatten()
        .filter(|h| h.empty_layer != Some(true))
        .collect();

    let mut layers = Vec::with_capacity(manifest.layers.len());
    let mut descriptors: HashMap<Digest, Descriptor> = HashMap::with_capacity(manifest.layers.len());
    for (i, (layer, diff_id)) in manifest.layers.iter().zip(diff_ids).enumerate() {
        let mut desc = layer.clone();
        if let Some(h) = layer_history.get(i) {
            if let Some(created) = h.created {
                desc.annotations
                    .insert(ANNOTATION_CREATED_AT.to_owned(), created.to_string());
            }
            if let Some(by) = h.created_by.as_deref().filter(|s| !s.is_empty()) {
                desc.annotations
                    .insert(ANNOTATION_DESCRIPTION.to_owned(), by.to_owned());
            }
        }
        desc.annotations
            .insert(ANNOTATION_UNCOMPRESSED.to_owned(), diff_id.to_string());
        layers.push(CacheLayer {
            blob: layer.digest.clone(),
            parent: i as i64 - 1,
            annotations: None,
        });
        // A digest listed twice: the later descriptor wins, as in BuildKit's provider map.
        descriptors.insert(layer.digest.clone(), desc);
    }
    let config = CacheConfig { layers, records };
    AbstractCache::from_config(&config, |d| descriptors.get(d).cloned()).map(Some)
}

/// Embed `cache` as an inline cache in the image config `config_bytes` of the image `manifest`
/// (BuildKit's `ExportForLayers` then `patchImageConfig`).
///
/// `mode=min` is applied first (inline export is always min). A result is kept only when every
/// blob of its chain is one of the image's layers: the same compressed digest, or a descriptor
/// whose `containerd.io/uncompressed` equals the image layer's `rootfs.diff_ids` entry. A kept
/// result whose chain is the image's layer prefix of length `n` is written `{"layer": n-1, …}`;
/// any other is written as a chained result with image layer indexes and, as BuildKit writes
/// them, the zero `createdAt`. Records keep [`AbstractCache::to_config`]'s order (BuildKit's
/// `sortConfig`), also those left without results.
///
/// Returns the new config: the old one re-marshalled as Go marshals a
/// `map[string]json.RawMessage` (top-level keys sorted, each value compacted and HTML-escaped,
/// no trailing newline) with [`INLINE_CACHE_KEY`] set. `Ok(None)` when no result is left
/// (BuildKit: "failed to match any cache with layers", and no inline cache is written).
///
/// Unlike BuildKit, a chain matched by diffID may use the prefix form (BuildKit compares
/// compressed digests there and fails with "failed to find blob").
pub fn encode_inline(cache: &AbstractCache, manifest: &ImageManifest, config_bytes: &[u8]) -> Result<Option<Vec<u8>>> {
    let what = config_name(manifest);
    let json_err = |source| Error::Json {
        what: what.clone(),
        source,
    };
    let mut doc: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(config_bytes).map_err(json_err)?;
    let view = ImageConfigView::parse(config_bytes, &what)?;
    let image = ImageLayers::new(manifest, view.diff_ids());

    let mut selected = cache.apply_mode(Mode::Min);
    let index_of: HashMap<Digest, usize> = selected
        .blobs
        .iter()
        .filter_map(|(d, desc)| image.index_of(d, desc).map(|i| (d.clone(), i)))
        .collect();
    let dropped = selected.drop_results_without(|d| index_of.contains_key(d));
    if !dropped.is_empty() {
        tracing::debug!(
            "inline cache for {what}: {} results dropped (not over the image's layers)",
            dropped.len()
        );
    }
    if selected.has_no_layers() {
        tracing::warn!("failed to match any cache with layers: no inline cache for {what}");
        return Ok(None);
    }

    let CacheConfig { layers, mut records } = selected.to_config();
    for rec in &mut records {
        for res in std::mem::take(&mut rec.results) {
            let chain = layer_chain(&layers, res.layer)?;
            let is_prefix = chain.len() <= image.len()
                && chain
                    .iter()
                    .enumerate()
                    .all(|(k, d)| image.matches(k, d, selected.blobs.get(d)));
            if is_prefix {
                rec.results.push(CacheResult {
                    layer: chain.len() as i64 - 1,
                    created_at: res.created_at,
                });
            } else {
                let layers = chain
                    .iter()
                    .map(|d| {
                        index_of
                            .get(d)
                            .map(|&i| i as i64)
                            .ok_or_else(|| Error::config(format!("failed to find blob {d} in the image's layers")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                rec.chained_results.push(ChainedResult {
                    layers,
                    created_at: GoTime::ZERO,
                });
            }
        }
    }

    let records_json = to_go_json(&records)?;
    let value = format!("\"{}\"", STANDARD.encode(records_json));
    doc.insert(
        INLINE_CACHE_KEY.to_owned(),
        RawValue::from_string(value).map_err(json_err)?,
    );
    let doc = doc
        .into_iter()
        .map(|(k, v)| Ok((k, RawValue::from_string(go_compact(v.get())).map_err(json_err)?)))
        .collect::<Result<BTreeMap<String, Box<RawValue>>>>()?;
    to_go_json(&doc).map(Some)
}

/// The image's layers as the encoder matches cache blobs against them.
struct ImageLayers<'a> {
    digests: Vec<&'a Digest>,
    /// `rootfs.diff_ids`, only when it has one entry per layer (otherwise no diffID matching).
    diff_ids: &'a [Digest],
}

impl<'a> ImageLayers<'a> {
    fn new(manifest: &'a ImageManifest, diff_ids: &'a [Digest]) -> Self {
        let digests: Vec<&Digest> = manifest.layers.iter().map(|l| &l.digest).collect();
        let diff_ids = if diff_ids.len() == digests.len() { diff_ids } else { &[] };
        ImageLayers { digests, diff_ids }
    }

    fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether blob `d` (described by `desc`) is image layer `k`.
    fn matches(&self, k: usize, d: &Digest, desc: Option<&Descriptor>) -> bool {
        self.digests.get(k).is_some_and(|l| *l == d)
            || self
                .diff_ids
                .get(k)
                .is_some_and(|id| desc.and_then(Descriptor::diff_id).as_ref() == Some(id))
    }

    /// The image layer index of blob `d`: by compressed digest first, then by diffID; the last
    /// one when the image lists it twice (BuildKit's `blobIndexes` map).
    fn index_of(&self, d: &Digest, desc: &Descriptor) -> Option<usize> {
        self.digests.iter().rposition(|l| *l == d).or_else(|| {
            let diff_id = desc.diff_id()?;
            self.diff_ids.iter().rposition(|id| *id == diff_id)
        })
    }
}

/// The blobs of layer `top` and its parents, bottom first (BuildKit's `layerToBlobs`).
fn layer_chain(layers: &[CacheLayer], top: i64) -> Result<Vec<Digest>> {
    let mut chain = Vec::new();
    let mut idx = top;
    while idx != -1 {
        let layer = usize::try_from(idx)
            .ok()
            .and_then(|i| layers.get(i))
            .filter(|_| chain.len() < layers.len())
            .ok_or_else(|| Error::config(format!("invalid layer index {idx} while encoding the inline cache")))?;
        chain.push(layer.blob.clone());
        idx = layer.parent;
    }
    chain.reverse();
    Ok(chain)
}

/// Decode the key's value as Go decodes a `[]byte` from a JSON string.
fn decode_base64(encoded: &str, what: &str) -> Result<Vec<u8>> {
    // Go's decoder skips line breaks.
    let cleaned: String = encoded.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    GO_STD_BASE64.decode(cleaned.as_bytes()).map_err(|e| {
        Error::config(format!(
            "{INLINE_CACHE_KEY} in {what} is not standard base64 with padding: {e}"
        ))
    })
}

/// What Go's `json.Marshal` does to a `json.RawMessage` value: drop insignificant whitespace
/// and escape `<`, `>`, `&`, U+2028 and U+2029 inside strings. `raw` must be valid JSON.
fn go_compact(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    out.push(c);
                }
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                _ => out.push(c),
            }
        } else {
            match c {
                ' ' | '\t' | '\n' | '\r' => {}
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_like_go() {
        assert_eq!(
            go_compact("{ \"a b\" : [1, 2,\n\t3],\r\n \"s\": \"x <y> & \\\" \\\\\u{2028}\u{2029} \" }"),
            r#"{"a b":[1,2,3],"s":"x \u003cy\u003e \u0026 \" \\\u2028\u2029 "}"#
        );
        assert_eq!(go_compact("\"\\\\\" "), "\"\\\\\"");
        assert_eq!(go_compact(" null "), "null");
    }

    #[test]
    fn base64_like_go() {
        assert_eq!(decode_base64("e30=", "x").unwrap(), b"{}");
        assert_eq!(decode_base64("e3\r\n0=", "x").unwrap(), b"{}");
        // Go's StdEncoding requires padding.
        let err = decode_base64("e30", "image config x").unwrap_err().to_string();
        assert!(
            err.contains(INLINE_CACHE_KEY) && err.contains("image config x"),
            "{err}"
        );
        assert!(decode_base64("e30*", "x").is_err());
    }

    #[test]
    fn layer_chain_rejects_bad_tables() {
        let d = Digest::of_bytes(b"a");
        let looping = [CacheLayer {
            blob: d.clone(),
            parent: 0,
            annotations: None,
        }];
        assert!(layer_chain(&looping, 0).is_err());
        assert!(layer_chain(&looping, 3).is_err());
        let ok = [CacheLayer {
            blob: d.clone(),
            parent: -1,
            annotations: None,
        }];
        assert_eq!(layer_chain(&ok, 0).unwrap(), vec![d]);
    }
}
