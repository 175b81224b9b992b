//! The `type=local` factory and store.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bkcache_core::descriptor::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use bkcache_core::factory::{required_attr, Applies, AttributeDoc};
use bkcache_core::inline::load_image_caches;
use bkcache_core::manifest::{TopLevel, BUILDKIT_MAX_BLOB};
use bkcache_core::store::{read_small_blob, write_manifest_blobs, BlobEntry, Committed, ServerSide};
use bkcache_core::{
    AbstractCache, BackendFactory, BlobStream, CacheFormat, CacheSpec, CacheStore, Descriptor, Digest, Direction, Env,
    Error, ExportOptions, Family, GoTime, LoadedCache, MediaType, Result, VerifiedStream,
};
use bytes::Bytes;
use futures::StreamExt;
use std::io::Seek;

use crate::error::LocalError;
use crate::file_io;
use crate::layout::{self, blob_path, io_err};
use crate::writer::{self, Finishing, WriteMsg};

/// Largest manifest or config this store reads into memory (BuildKit stops at 1 MiB; real
/// `mode=max` configs exceed that, so we accept more and warn).
const MAX_DOCUMENT: u64 = 256 << 20;
/// Read and write chunk size.
const CHUNK: usize = 256 << 10;
/// Chunks buffered between a blocking file thread and the async side, per blob.
const CHANNEL_DEPTH: usize = 4;
/// [`ServerSide::service`] of every local store: two directories of one machine.
const LOCAL_SERVICE: &str = "local";

const ATTRIBUTES: &[AttributeDoc] = &[
    AttributeDoc {
        name: "src",
        applies: Applies::Import,
        default: "required",
        meaning: "cache directory to read (OCI layout)",
        secret: false,
    },
    AttributeDoc {
        name: "dest",
        applies: Applies::Export,
        default: "required",
        meaning: "cache directory to write (created if missing)",
        secret: false,
    },
    AttributeDoc {
        name: "tag",
        applies: Applies::Both,
        default: "latest",
        meaning: "org.opencontainers.image.ref.name of the index.json entry",
        secret: false,
    },
    AttributeDoc {
        name: "digest",
        applies: Applies::Import,
        default: "-",
        meaning: "import this manifest digest instead of looking up tag",
        secret: false,
    },
    AttributeDoc {
        name: "reset",
        applies: Applies::Export,
        default: "false",
        meaning: "after export, delete every blob that no tag in index.json reaches",
        secret: false,
    },
];

/// Factory for `type=local`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFactory;

impl BackendFactory for LocalFactory {
    fn type_name(&self) -> &'static str {
        "local"
    }

    fn summary(&self) -> &'static str {
        "OCI image layout directory (BuildKit's local cache exporter/importer)"
    }

    fn family(&self) -> Family {
        Family::Manifest
    }

    fn attributes(&self) -> &'static [AttributeDoc] {
        ATTRIBUTES
    }

    fn open(&self, spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Box<dyn CacheStore>> {
        let dir = match direction {
            Direction::Import => {
                required_attr(spec, "src", direction, "local cache importer requires src=<directory>")?
            }
            Direction::Export => required_attr(
                spec,
                "dest",
                direction,
                "local cache exporter requires dest=<directory>",
            )?,
        };
        let mut store = LocalStore::new(env.resolve(dir));
        if let Some(tag) = spec.get("tag") {
            if tag.is_empty() {
                return Err(Error::InvalidValue {
                    attribute: "tag".into(),
                    value: String::new(),
                    allowed: "local cache requires either an explicit digest, the \"latest\" tag or a custom tag"
                        .into(),
                });
            }
            store.tag = tag.to_owned();
        }
        if let Some(d) = spec.get("digest") {
            store.digest = Some(Digest::parse(d).map_err(|_| Error::InvalidValue {
                attribute: "digest".into(),
                value: d.chars().take(100).collect(),
                allowed: "expected sha256: followed by 64 lowercase hex characters".into(),
            })?);
        }
        if let Some(r) = spec.get("reset") {
            store.reset = bkcache_core::spec::parse_go_bool("reset", r)?;
        }
        Ok(Box::new(store))
    }
}

/// A BuildKit local cache directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    tag: String,
    digest: Option<Digest>,
    reset: bool,
    finishing: std::sync::Arc<Finishing>,
}

impl LocalStore {
    /// A store at `root`, tag `latest`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        LocalStore {
            finishing: std::sync::Arc::new(Finishing::new(&root)),
            root,
            tag: "latest".into(),
            digest: None,
            reset: false,
        }
    }

    /// Use another tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// Import this manifest digest (ignores the tag).
    pub fn with_digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }

    /// Delete unreachable blobs after each commit.
    pub fn with_reset(mut self, reset: bool) -> Self {
        self.reset = reset;
        self
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The scratch file and final path of a blob about to be written (directories created).
    async fn scratch_for(&self, desc: &Descriptor) -> Result<(PathBuf, PathBuf)> {
        let final_path = blob_path(&self.root, &desc.digest);
        let ingest = self.root.join("ingest");
        for dir in [final_path.parent().unwrap_or(&self.root), ingest.as_path()] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_err(dir, "create directory", e))?;
        }
        Ok((layout::temp_path(&ingest, desc.digest.hex()), final_path))
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(PathBuf) -> Result<T> + Send + 'static) -> Result<T> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(root))
            .await
            .map_err(|e| Error::io(self.location(), "background task", std::io::Error::other(e)))?
    }

    /// A plain image (or index of images): import its inline cache, as BuildKit's importer does.
    async fn load_inline(&self, top: TopLevel, mut entry: Descriptor) -> Result<Option<LoadedCache>> {
        let mut manifests = Vec::new();
        match top {
            TopLevel::Manifest(m) => manifests.push(*m),
            TopLevel::Index(index) => {
                for child in index.manifests.iter().filter(|d| d.media_type.is_manifest()) {
                    let what = format!("manifest {} in {}", child.digest, self.root.display());
                    let bytes = read_small_blob(self, child, MAX_DOCUMENT, &what).await?;
                    if let TopLevel::Manifest(m) = TopLevel::detect(&bytes, &what)? {
                        manifests.push(*m);
                    }
                }
            }
        }
        let Some((cache, warnings, config)) = load_image_caches(self, &manifests, MAX_DOCUMENT).await? else {
            return Err(LocalError::PlainImage {
                path: self.root.clone(),
                tag: self.tag.clone(),
            }
            .into());
        };
        if entry.media_type.as_str().is_empty() {
            entry.media_type = MediaType::OciImageManifest;
        }
        entry.annotations.clear();
        Ok(Some(LoadedCache {
            cache,
            format: CacheFormat::Inline,
            manifest: entry,
            config: Some(config),
            warnings,
            parts: Vec::new(),
        }))
    }

    /// The index entry to import.
    async fn select_entry(&self) -> Result<Option<Descriptor>> {
        let Some(index) = self.blocking(|root| layout::read_index(&root)).await? else {
            return Ok(None);
        };
        if let Some(d) = &self.digest {
            if let Some(e) = index.manifests.iter().find(|e| &e.digest == d) {
                return Ok(Some(e.clone()));
            }
            return match self.blob_size(d).await? {
                Some(size) => Ok(Some(Descriptor::new(MediaType::default(), d.clone(), size))),
                None => Err(Error::BlobNotFound {
                    digest: d.clone(),
                    location: self.location(),
                }),
            };
        }
        let by = |key: &str| {
            index
                .manifests
                .iter()
                .find(|e| e.annotations.get(key).map(String::as_str) == Some(self.tag.as_str()))
        };
        match by(ANNOTATION_IMAGE_NAME).or_else(|| by(ANNOTATION_REF_NAME)) {
            Some(e) => Ok(Some(e.clone())),
            None => {
                let tags: Vec<&str> = index
                    .manifests
                    .iter()
                    .filter_map(|e| e.annotations.get(ANNOTATION_REF_NAME).map(String::as_str))
                    .collect();
                Err(Error::CacheNotFound {
                    location: self.location(),
                    hint: format!(
                        "; index.json has no tag {:?} (tags present: {})",
                        self.tag,
                        if tags.is_empty() {
                            "none".into()
                        } else {
                            tags.join(", ")
                        }
                    ),
                })
            }
        }
    }
}

#[async_trait]
impl CacheStore for LocalStore {
    fn location(&self) -> String {
        match &self.digest {
            Some(d) => format!("local:{}@{d}", self.root.display()),
            None => format!("local:{}:{}", self.root.display(), self.tag),
        }
    }

    async fn load(&self) -> Result<Option<LoadedCache>> {
        let Some(mut entry) = self.select_entry().await? else {
            return Ok(None);
        };
        let what = format!("manifest {} in {}", entry.digest, self.root.display());
        let bytes = read_small_blob(self, &entry, MAX_DOCUMENT, &what).await?;
        let top = TopLevel::detect(&bytes, &what)?;
        drop(bytes);
        let image_media_type = match &top {
            TopLevel::Manifest(m) => Some(m.media_type.clone().unwrap_or(MediaType::OciImageManifest)),
            TopLevel::Index(_) => None,
        };
        let cm = match top.into_cache_manifest() {
            Ok(cm) => cm,
            Err(top) => return self.load_inline(top, entry).await,
        };
        entry.media_type = image_media_type.unwrap_or_else(|| cm.wrapper.media_type());
        let config_what = format!("cache config {} in {}", cm.config.digest, self.root.display());
        let config = read_small_blob(self, &cm.config, MAX_DOCUMENT, &config_what).await?;
        let sizes = [("cache manifest", entry.size), ("cache config", cm.config.size)];
        entry.annotations.clear();
        let mut loaded = LoadedCache::from_manifest(cm, entry, config)?;
        for (what, size) in sizes {
            if size > BUILDKIT_MAX_BLOB {
                loaded.warnings.push(format!(
                    "{what} is {size} bytes: BuildKit v0.32 refuses to import more than {BUILDKIT_MAX_BLOB} bytes"
                ));
            }
        }
        Ok(Some(loaded))
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        // A blob handed to a finishing writer is visible once that writer is done.
        self.finishing.wait().await?;
        let path = blob_path(&self.root, digest);
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, "stat", e)),
        }
    }

    async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
        // One blocking reader per open blob, feeding a small bounded channel: file I/O never
        // blocks the async workers, and at most CHANNEL_DEPTH chunks are buffered.
        let path = blob_path(&self.root, &desc.digest);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::BlobNotFound {
                    digest: desc.digest.clone(),
                    location: self.location(),
                })
            }
            Err(e) => return Err(io_err(&path, "open", e)),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(CHANNEL_DEPTH);
        tokio::task::spawn_blocking(move || {
            if offset > 0 {
                if let Err(e) = file.seek(SeekFrom::Start(offset)) {
                    let _ = tx.blocking_send(Err(io_err(&path, "seek", e)));
                    return;
                }
            }
            loop {
                match file_io::read_chunk(&file, CHUNK) {
                    Ok(buf) if buf.is_empty() => return,
                    Ok(buf) => {
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return; // the reader went away
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(io_err(&path, "read", e)));
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    async fn put_blob(&self, desc: &Descriptor, mut data: VerifiedStream) -> Result<()> {
        let (tmp, final_path) = self.scratch_for(desc).await?;
        let slot = self.finishing.slot().await?;
        // The blocking writer only settles the scratch file into place when told the stream
        // ended verified (`WriteMsg::Commit`); a closed channel without it means abort.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<WriteMsg>(CHANNEL_DEPTH);
        let writer = tokio::task::spawn_blocking(move || -> Result<()> {
            let _slot = slot;
            match writer::write_chunks(&mut rx, tmp)? {
                Some(scratch) => scratch.settle(&final_path),
                None => Ok(()), // aborted: the scratch file is gone
            }
        });
        let fed: Result<bool> = async {
            while let Some(chunk) = data.next().await {
                if tx.send(WriteMsg::Data(chunk?)).await.is_err() {
                    return Ok(false); // the writer failed; its error is reported below
                }
            }
            Ok(tx.send(WriteMsg::Commit).await.is_ok())
        }
        .await;
        drop(tx);
        if let Ok(true) = fed {
            // Verified and handed over: the writer settles (fsync, rename) in the background;
            // `commit` waits for it. Earlier writers that already failed are reported now.
            return self.finishing.hand_over(writer).await;
        }
        let written = writer.await.map_err(|e| self.finishing.task_failed(e))?;
        fed?;
        written
    }

    fn server_side(&self) -> Option<ServerSide> {
        // A path that is not UTF-8 has no faithful name here: such a store streams.
        Some(ServerSide {
            service: LOCAL_SERVICE.into(),
            namespace: self.root.to_str()?.to_owned(),
        })
    }

    async fn copy_from(&self, desc: &Descriptor, source: &ServerSide) -> Result<bool> {
        // Another local directory: the kernel copies (or reflinks) and we hash what it wrote.
        if source.service != LOCAL_SERVICE || Some(source.namespace.as_str()) == self.root.to_str() {
            return Ok(false);
        }
        let src = blob_path(Path::new(&source.namespace), &desc.digest);
        let (tmp, final_path) = self.scratch_for(desc).await?;
        let slot = self.finishing.slot().await?;
        let want = desc.clone();
        let copied = tokio::task::spawn_blocking(move || writer::copy_verified(&src, tmp, &want))
            .await
            .map_err(|e| self.finishing.task_failed(e))??;
        let Some(scratch) = copied else { return Ok(false) };
        let settling = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            scratch.settle(&final_path)
        });
        self.finishing.hand_over(settling).await?;
        Ok(true)
    }

    async fn commit(&self, cache: &AbstractCache, options: &ExportOptions) -> Result<Committed> {
        if cache.has_no_layers() {
            return Ok(Committed {
                manifest: None,
                skipped: true,
                warnings: vec!["skipping cache export for empty result (as BuildKit does)".into()],
            });
        }
        // Every layer blob written and durable before the config and manifest name them.
        self.finishing.wait().await?;
        let encoded = write_manifest_blobs(self, cache, options).await?;
        self.finishing.wait().await?;
        let manifest = encoded.manifest.clone();
        let tag = self.tag.clone();
        let reset = self.reset;
        let mut warnings = encoded.warnings;
        let (deleted, reset_warnings) = self
            .blocking(move |root| {
                // Every blob's rename durable before the index that names it.
                layout::sync_blob_dirs(&root)?;
                layout::with_index_lock(&root, || {
                    // An unchanged manifest keeps its old mtime: touch it, so prune's clock
                    // (the tag's last write) sees this export.
                    layout::touch(&blob_path(&root, &manifest.digest))?;
                    layout::put_tag(&root, &manifest, &tag)?;
                    if reset {
                        layout::reset(&root)
                    } else {
                        Ok((0, Vec::new()))
                    }
                })
            })
            .await?;
        warnings.extend(reset_warnings);
        if reset {
            tracing::info!(deleted, "reset=true removed unreachable blobs");
        }
        Ok(Committed {
            manifest: Some(encoded.manifest),
            skipped: false,
            warnings,
        })
    }

    fn tag(&self) -> Option<String> {
        self.digest.is_none().then(|| self.tag.clone())
    }

    fn tag_store(&self) -> Option<&dyn bkcache_core::TagStore> {
        Some(self)
    }

    fn blob_gc(&self) -> Option<&dyn bkcache_core::BlobGc> {
        Some(self)
    }
}

#[async_trait]
impl bkcache_core::TagStore for LocalStore {
    async fn tags(&self) -> Result<Vec<String>> {
        let index = self.blocking(|root| layout::read_index(&root)).await?;
        Ok(index
            .map(|i| {
                i.manifests
                    .iter()
                    .filter_map(|d| d.annotations.get(ANNOTATION_REF_NAME).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn remove_tag(&self, tag: &str) -> Result<()> {
        let tag = tag.to_owned();
        self.blocking(move |root| layout::with_index_lock(&root, || layout::remove_tag(&root, &tag).map(|_| ())))
            .await
    }
}

#[async_trait]
impl bkcache_core::BlobGc for LocalStore {
    async fn tag_entries(&self) -> Result<Vec<bkcache_core::TagEntry>> {
        self.blocking(|root| layout::tag_entries(&root)).await
    }

    async fn referenced_blobs(&self) -> Result<std::collections::HashSet<Digest>> {
        self.blocking(|root| match layout::read_index(&root)? {
            Some(index) => layout::reachable(&root, &index),
            None => Ok(Default::default()),
        })
        .await
    }

    async fn list_blobs(&self) -> Result<Vec<BlobEntry>> {
        // Blobs put by this store are visible once their background rename is done.
        self.finishing.wait().await?;
        let dir = self.root.join("blobs/sha256");
        self.blocking(move |_| {
            let mut out = Vec::new();
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(io_err(&dir, "list", e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(&dir, "list", e))?;
                let Ok(digest) = Digest::parse(&format!("sha256:{}", entry.file_name().to_string_lossy())) else {
                    continue;
                };
                let meta = entry.metadata().map_err(|e| io_err(&entry.path(), "stat", e))?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| GoTime::from_unix(d.as_secs() as i64, d.subsec_nanos()));
                out.push(BlobEntry {
                    digest,
                    size: meta.len(),
                    modified,
                });
            }
            out.sort_by(|a, b| a.digest.cmp(&b.digest));
            Ok(out)
        })
        .await
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        self.finishing.wait().await?;
        let path = blob_path(&self.root, digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, "delete", e)),
        }
    }
}
