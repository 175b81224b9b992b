//! The manifest-family wrappers (local, registry): OCI image manifest (default), OCI index,
//! Docker manifest list; detection from bytes; encode/decode to and from [`AbstractCache`].

use std::collections::{BTreeMap, HashMap};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::cache::{AbstractCache, Warnings};
use crate::config::CacheConfig;
use crate::descriptor::{Descriptor, DescriptorView};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gojson::to_go_json;
use crate::media_type::MediaType;

/// BuildKit refuses to import a manifest or cache config larger than this (registry, local).
pub const BUILDKIT_MAX_BLOB: u64 = 1 << 20;

/// Which wrapper a manifest-family cache uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wrapper {
    /// OCI image manifest, config = the cache config (`image-manifest=true`, the default).
    ImageManifest,
    /// OCI index listing layers then the config (`image-manifest=false`).
    OciIndex,
    /// Docker manifest list listing layers then the config (`oci-mediatypes=false`).
    DockerManifestList,
}

impl Wrapper {
    /// The wrapper BuildKit writes for these options (the invalid combination is rejected
    /// earlier, by [`crate::spec::ExportOptions`]).
    pub fn for_options(oci_mediatypes: bool, image_manifest: bool) -> Wrapper {
        match (oci_mediatypes, image_manifest) {
            (_, true) => Wrapper::ImageManifest,
            (true, false) => Wrapper::OciIndex,
            (false, false) => Wrapper::DockerManifestList,
        }
    }

    /// The top-level media type.
    pub fn media_type(self) -> MediaType {
        match self {
            Wrapper::ImageManifest => MediaType::OciImageManifest,
            Wrapper::OciIndex => MediaType::OciImageIndex,
            Wrapper::DockerManifestList => MediaType::DockerManifestList,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Wrapper::ImageManifest => "image-manifest",
            Wrapper::OciIndex => "oci-index",
            Wrapper::DockerManifestList => "docker-manifest-list",
        }
    }
}

/// An OCI (or Docker schema 2) image manifest, in Go's key order. `D` is the descriptor type:
/// owned when read, a borrowed view when written (no copy of a large cache's descriptors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest<D = Descriptor> {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Media type (omitted when absent).
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// Artifact type.
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: D,
    /// The layers.
    #[serde(default = "Vec::new")]
    pub layers: Vec<D>,
    /// Subject.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub subject: Option<D>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI index or Docker manifest list, in Go's key order (`D` as in [`ImageManifest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index<D = Descriptor> {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Media type (omitted when absent; old `index.json` files have none).
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// Artifact type.
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Entries.
    #[serde(default = "Vec::new")]
    pub manifests: Vec<D>,
    /// Subject.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub subject: Option<D>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn none<D>() -> Option<D> {
    None
}

impl Index {
    /// An empty OCI index.
    pub fn new_oci() -> Self {
        Index {
            schema_version: 2,
            media_type: Some(MediaType::OciImageIndex),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Decode; `what` names the document in errors.
    pub fn from_slice(bytes: &[u8], what: &str) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|source| Error::Json {
            what: what.to_owned(),
            source,
        })
    }

    /// Encode as Go does.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        to_go_json(self)
    }
}

/// A top-level blob, detected from its bytes as BuildKit's `DetectManifestBlobMediaType` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopLevel {
    /// An image manifest.
    Manifest(Box<ImageManifest>),
    /// An index or manifest list.
    Index(Box<Index>),
}

/// Which keys the document has (values skipped, not built: a large cache's manifest is tens of
/// MB). A JSON `null` counts as absent, as Go's nil.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<IgnoredAny>,
    #[serde(default)]
    layers: Option<IgnoredAny>,
    #[serde(default)]
    manifests: Option<IgnoredAny>,
}

impl TopLevel {
    /// Detect and decode. `what` names the blob in errors.
    pub fn detect(bytes: &[u8], what: &str) -> Result<TopLevel> {
        let json_err = |source| Error::Json {
            what: what.to_owned(),
            source,
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(json_err)?;
        let bad = |reason: &str| Error::InvalidManifest {
            what: what.to_owned(),
            reason: reason.to_owned(),
        };
        let is_manifest = probe.config.is_some() || probe.layers.is_some();
        if is_manifest && probe.manifests.is_some() {
            return Err(bad(
                "invalid ambiguous manifest and manifest list: it has both `manifests` and `config`/`layers`",
            ));
        }
        if let Some(mt) = probe.media_type.as_deref().filter(|m| !m.is_empty()) {
            let mt = MediaType::parse(mt);
            let agrees = if is_manifest { mt.is_manifest() } else { mt.is_index() };
            if !agrees {
                return Err(bad(&format!(
                    "mediaType in manifest does not match manifest contents ({mt})"
                )));
            }
        }
        if is_manifest {
            Ok(TopLevel::Manifest(Box::new(
                serde_json::from_slice(bytes).map_err(json_err)?,
            )))
        } else {
            Ok(TopLevel::Index(Box::new(
                serde_json::from_slice(bytes).map_err(json_err)?,
            )))
        }
    }

    /// The cache config and layer descriptors, or `None` when this is a plain image (no
    /// cache config: the inline-cache path). Copies the descriptors; a loader that is done with
    /// the document uses [`TopLevel::into_cache_manifest`].
    pub fn cache_manifest(&self) -> Option<CacheManifest> {
        self.clone().into_cache_manifest().ok()
    }

    /// The cache config and layer descriptors, moved out of the document (no second copy of a
    /// large manifest's descriptors); a plain image comes back unchanged as the error.
    pub fn into_cache_manifest(self) -> std::result::Result<CacheManifest, TopLevel> {
        match self {
            TopLevel::Manifest(m) if m.config.media_type == MediaType::BuildkitCacheConfig => {
                let m = *m;
                Ok(CacheManifest {
                    config: m.config,
                    layers: m.layers,
                    wrapper: Wrapper::ImageManifest,
                })
            }
            TopLevel::Index(i)
                if i.manifests
                    .iter()
                    .any(|d| d.media_type == MediaType::BuildkitCacheConfig) =>
            {
                let i = *i;
                let wrapper = if i.media_type == Some(MediaType::DockerManifestList) {
                    Wrapper::DockerManifestList
                } else {
                    Wrapper::OciIndex
                };
                let (mut configs, layers): (Vec<Descriptor>, Vec<Descriptor>) = i
                    .manifests
                    .into_iter()
                    .partition(|d| d.media_type == MediaType::BuildkitCacheConfig);
                // `any` above: there is at least one; the first is the one BuildKit reads.
                let config = configs.swap_remove(0);
                Ok(CacheManifest {
                    config,
                    layers,
                    wrapper,
                })
            }
            other => Err(other),
        }
    }
}

/// The parts of a manifest-family cache: config descriptor and layer descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheManifest {
    /// The cache config descriptor.
    pub config: Descriptor,
    /// Layer descriptors.
    pub layers: Vec<Descriptor>,
    /// Which wrapper carried them.
    pub wrapper: Wrapper,
}

impl CacheManifest {
    /// Decode the cache with this manifest's descriptors as the descriptor provider.
    pub fn decode(&self, config_bytes: &[u8]) -> Result<(AbstractCache, Warnings)> {
        let config = CacheConfig::from_slice(config_bytes, &format!("cache config {}", self.config.digest))?;
        let by_digest: HashMap<&Digest, &Descriptor> = self.layers.iter().map(|d| (&d.digest, d)).collect();
        AbstractCache::from_config(&config, |d| by_digest.get(d).map(|x| (*x).clone()))
    }

    /// [`CacheManifest::decode`] for a loader that is done with the documents: the layer
    /// descriptors move into the cache (no second copy) and the config bytes are freed once
    /// parsed. Returns the config descriptor and wrapper too.
    pub fn into_decoded(self, config_bytes: Vec<u8>) -> Result<(AbstractCache, Warnings, Descriptor, Wrapper)> {
        let blobs: BTreeMap<Digest, Descriptor> = self.layers.into_iter().map(|d| (d.digest.clone(), d)).collect();
        let config = CacheConfig::from_slice(&config_bytes, &format!("cache config {}", self.config.digest))?;
        drop(config_bytes);
        let (cache, warnings) = AbstractCache::from_config_with_blobs(&config, blobs)?;
        Ok((cache, warnings, self.config, self.wrapper))
    }
}

/// An encoded manifest-family cache, ready to write: config first, manifest last.
#[derive(Debug, Clone)]
pub struct EncodedManifest {
    /// Cache config bytes.
    pub config_bytes: Vec<u8>,
    /// Its descriptor.
    pub config: Descriptor,
    /// Top-level manifest/index bytes.
    pub manifest_bytes: Vec<u8>,
    /// Its descriptor (what a tag or `index.json` entry points at).
    pub manifest: Descriptor,
    /// Compatibility warnings (e.g. BuildKit's 1 MiB import limit).
    pub warnings: Warnings,
}

/// Encode a cache in a manifest-family wrapper. Layer media types are normalised to OCI, then
/// converted to Docker types when `oci_mediatypes` is false, as BuildKit's `FinalizeCache` does.
pub fn encode_manifest(cache: &AbstractCache, wrapper: Wrapper, oci_mediatypes: bool) -> Result<EncodedManifest> {
    let config = cache.to_config();
    let config_bytes = config.to_bytes()?;
    let config_desc = Descriptor::of_bytes(MediaType::BuildkitCacheConfig, &config_bytes);
    let mut layers = Vec::with_capacity(config.layers.len());
    for l in &config.layers {
        let desc = cache
            .blobs
            .get(&l.blob)
            .ok_or_else(|| Error::config(format!("layer {} has no descriptor", l.blob)))?;
        layers.push(DescriptorView::new(
            desc,
            desc.media_type.to_oci().for_family(oci_mediatypes),
        ));
    }
    let manifest_bytes = match wrapper {
        Wrapper::ImageManifest => to_go_json(&ImageManifest {
            schema_version: 2,
            media_type: Some(MediaType::OciImageManifest),
            artifact_type: None,
            config: DescriptorView::new(&config_desc, config_desc.media_type.clone()),
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        })?,
        Wrapper::OciIndex | Wrapper::DockerManifestList => {
            layers.push(DescriptorView::new(&config_desc, config_desc.media_type.clone()));
            to_go_json(&Index {
                schema_version: 2,
                media_type: Some(wrapper.media_type()),
                artifact_type: None,
                manifests: layers,
                subject: None,
                annotations: BTreeMap::new(),
            })?
        }
    };
    let manifest = Descriptor::of_bytes(wrapper.media_type(), &manifest_bytes);
    let mut warnings = Vec::new();
    for (what, size) in [("cache config", config_desc.size), ("cache manifest", manifest.size)] {
        if size > BUILDKIT_MAX_BLOB {
            warnings.push(format!(
                "{what} is {size} bytes: BuildKit v0.32 refuses to import a {what} over {BUILDKIT_MAX_BLOB} bytes from registry/local caches (moby/buildkit#3719)"
            ));
        }
    }
    Ok(EncodedManifest {
        config_bytes,
        config: config_desc,
        manifest_bytes,
        manifest,
        warnings,
    })
}
