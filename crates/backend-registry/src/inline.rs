//! Inline cache over registry images: import (BuildKit's registry import of a plain image) and
//! the `type=inline` store, which embeds a cache into an existing image (beyond BuildKit, which
//! can only do it during a build).

use std::collections::HashMap;

use async_trait::async_trait;
use bkcache_core::factory::{Applies, AttributeDoc};
use bkcache_core::gojson::to_go_json;
use bkcache_core::inline::encode_inline;
use bkcache_core::manifest::{ImageManifest, TopLevel};
use bkcache_core::store::Committed;
use bkcache_core::{
    AbstractCache, BackendFactory, BlobStream, CacheSpec, CacheStore, Descriptor, Digest, Direction, Env, Error,
    ExportOptions, Family, LoadedCache, MediaType, Result, VerifiedStream,
};
use tokio::sync::OnceCell;

use crate::error::RegistryError;
use crate::store::{open_client, RegistryStore};

const ATTRIBUTES: &[AttributeDoc] = &[
    AttributeDoc {
        name: "ref",
        applies: Applies::Both,
        default: "required",
        meaning: "the existing image whose config receives the cache (pushed back under the same tag)",
        secret: false,
    },
    AttributeDoc {
        name: "registry.insecure",
        applies: Applies::Both,
        default: "false",
        meaning: "use plain HTTP and skip TLS verification for this registry",
        secret: false,
    },
];

/// Factory for `type=inline`: export only (`--to type=inline,ref=IMAGE`). To read an image's
/// inline cache, use `type=registry,ref=IMAGE`, as with BuildKit.
#[derive(Debug, Clone, Copy, Default)]
pub struct InlineFactory;

impl BackendFactory for InlineFactory {
    fn type_name(&self) -> &'static str {
        "inline"
    }

    fn summary(&self) -> &'static str {
        "cache records embedded in an existing image's config (mode=min, the image's layers only)"
    }

    fn family(&self) -> Family {
        Family::Inline
    }

    fn attributes(&self) -> &'static [AttributeDoc] {
        ATTRIBUTES
    }

    fn open(&self, spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Box<dyn CacheStore>> {
        if direction == Direction::Import {
            return Err(Error::InvalidValue {
                attribute: "type".into(),
                value: "inline".into(),
                allowed: "type=inline is export only; read an image's inline cache with type=registry,ref=IMAGE".into(),
            });
        }
        let client = open_client(
            spec,
            direction,
            env,
            "inline cache export requires ref=<existing image>",
        )?;
        Ok(Box::new(InlineStore {
            registry: RegistryStore::new(client),
            image: OnceCell::new(),
        }))
    }
}

struct Image {
    manifest_desc: Descriptor,
    manifest: ImageManifest,
    config: Vec<u8>,
    diff_ids: Vec<Digest>,
}

/// Writes a cache into an existing image's config.
pub struct InlineStore {
    registry: RegistryStore,
    image: OnceCell<Image>,
}

impl std::fmt::Debug for InlineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineStore")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl InlineStore {
    fn inline_error(&self, reason: &str) -> Error {
        RegistryError::Inline {
            reference: self.registry.client.reference().to_string(),
            reason: reason.into(),
        }
        .into()
    }

    async fn image(&self) -> Result<&Image> {
        self.image
            .get_or_try_init(|| async {
                let reference = self.registry.client.reference().manifest_reference();
                let (desc, bytes) = self
                    .registry
                    .get_manifest(&reference)
                    .await?
                    .ok_or_else(|| self.inline_error("no image there: push the image first"))?;
                let manifest = match TopLevel::detect(&bytes, &self.registry.location())? {
                    TopLevel::Manifest(m) => *m,
                    TopLevel::Index(_) => {
                        return Err(self.inline_error(
                            "is a multi-platform index; inline export needs a single-platform image manifest (name one by digest)",
                        ))
                    }
                };
                if manifest.config.media_type == MediaType::BuildkitCacheConfig {
                    return Err(self.inline_error("is a cache manifest, not an image"));
                }
                let config = self.registry.read_config(&manifest.config).await?;
                let v: serde_json::Value = serde_json::from_slice(&config).map_err(|source| Error::Json {
                    what: format!("image config {}", manifest.config.digest),
                    source,
                })?;
                let diff_ids = v["rootfs"]["diff_ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|d| d.as_str().and_then(|s| Digest::parse(s).ok())).collect())
                    .unwrap_or_default();
                Ok(Image {
                    manifest_desc: desc,
                    manifest,
                    config,
                    diff_ids,
                })
            })
            .await
    }
}

#[async_trait]
impl CacheStore for InlineStore {
    fn location(&self) -> String {
        format!("inline:{}", self.registry.client.reference())
    }

    fn is_transient(&self, error: &Error) -> bool {
        error.is_transient_by(crate::error::RegistryError::is_transient)
    }

    async fn load(&self) -> Result<Option<LoadedCache>> {
        self.registry.load().await
    }

    /// Keep only results whose every blob is one of the image's layers (by digest, or by diffID,
    /// in which case the image's layer takes its place), so no blob needs to move.
    async fn select(&self, cache: AbstractCache) -> Result<AbstractCache> {
        let image = self.image().await?;
        let by_digest: HashMap<&Digest, &Descriptor> = image.manifest.layers.iter().map(|d| (&d.digest, d)).collect();
        let by_diff: HashMap<&Digest, &Descriptor> = image.diff_ids.iter().zip(&image.manifest.layers).collect();
        let mut out = AbstractCache {
            records: cache.records.clone(),
            blobs: Default::default(),
        };
        for rec in &mut out.records {
            rec.results.retain_mut(|chain| {
                let mapped: Option<Vec<Digest>> = chain
                    .blobs
                    .iter()
                    .map(|b| {
                        by_digest.get(b).map(|d| d.digest.clone()).or_else(|| {
                            cache
                                .blobs
                                .get(b)
                                .and_then(|d| d.diff_id())
                                .and_then(|diff| by_diff.get(&diff).map(|d| d.digest.clone()))
                        })
                    })
                    .collect();
                match mapped {
                    Some(m) => {
                        chain.blobs = m;
                        true
                    }
                    None => false,
                }
            });
            for chain in &rec.results {
                for b in &chain.blobs {
                    if let Some(d) = by_digest.get(b) {
                        out.blobs.insert(b.clone(), (*d).clone());
                    }
                }
            }
        }
        Ok(out)
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.registry.blob_size(digest).await
    }

    async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
        self.registry.open_blob(desc, offset).await
    }

    async fn put_blob(&self, desc: &Descriptor, data: VerifiedStream) -> Result<()> {
        self.registry.put_blob(desc, data).await
    }

    async fn commit(&self, cache: &AbstractCache, _options: &ExportOptions) -> Result<Committed> {
        let image = self.image().await?;
        let Some(config) = encode_inline(cache, &image.manifest, &image.config)? else {
            return Ok(Committed {
                manifest: None,
                skipped: true,
                warnings: vec![
                    "failed to match any cache with layers: no result of the cache uses this image's layers".into(),
                ],
            });
        };
        let config_desc = Descriptor {
            digest: Digest::of_bytes(&config),
            size: config.len() as u64,
            ..image.manifest.config.clone()
        };
        if self.registry.blob_size(&config_desc.digest).await? != Some(config_desc.size) {
            bkcache_core::store::put_small_blob(&self.registry, &config_desc, &config).await?;
        }
        let mut manifest = image.manifest.clone();
        manifest.config = config_desc;
        let bytes = to_go_json(&manifest)?;
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or(image.manifest_desc.media_type.clone());
        let desc = Descriptor::of_bytes(media_type, &bytes);
        let reference = self.registry.client.reference().manifest_reference();
        self.registry.put_manifest(&reference, &desc, bytes).await?;
        Ok(Committed {
            manifest: Some(desc),
            skipped: false,
            warnings: Vec::new(),
        })
    }
}
