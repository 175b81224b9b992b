//! The copy engine: import from N sources, merge, apply the mode, transfer only the missing
//! blobs with bounded parallelism (verifying every digest while streaming), commit last.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::cache::{AbstractCache, Mode};
use crate::compression::{convert_stream, Scratch, Target as ConvertTarget, DEFAULT_MAX_UNCOMPRESSED};
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::ExportOptions;
use crate::store::{ByteCounter, CacheStore, LoadedCache, VerifiedStream};

/// Something that happened during a copy, for progress display. Library users may ignore them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A warning (also collected in the report).
    Warning(String),
    /// A source was loaded.
    SourceLoaded {
        /// Source label.
        source: String,
        /// Records in it.
        records: usize,
        /// Layer blobs in it.
        layers: usize,
    },
    /// A target's plan is known.
    TargetPlanned {
        /// Target label.
        target: String,
        /// Blobs to transfer.
        blobs: usize,
        /// Bytes to transfer.
        bytes: u64,
        /// Blobs already present.
        present: usize,
    },
    /// Bytes went through.
    Bytes(u64),
    /// A blob finished.
    BlobDone {
        /// Target label.
        target: String,
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A blob transfer failed with a transient error and starts again from its first byte: the
    /// `bytes_sent` already counted by [`Event::Bytes`] will be counted again.
    BlobRestarted {
        /// Target label.
        target: String,
        /// The blob.
        digest: Digest,
        /// Bytes of the failed attempt.
        bytes_sent: u64,
        /// Why it failed (no secrets).
        reason: String,
        /// The attempt that starts now (2 or more, at most [`BLOB_ATTEMPTS`]).
        attempt: usize,
    },
    /// A target's manifest was committed.
    Committed {
        /// Target label.
        target: String,
        /// What was written.
        manifest: Option<Box<Descriptor>>,
    },
}

/// Receives [`Event`]s.
pub trait Progress: Send + Sync {
    /// Called for each event, from the copying task.
    fn event(&self, event: Event);
}

/// Ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: Event) {}
}

/// A cache to import.
#[derive(Debug)]
pub struct Source {
    /// Label for messages (the spec, secrets redacted).
    pub label: String,
    /// The store.
    pub store: Box<dyn CacheStore>,
}

/// A cache to export.
#[derive(Debug)]
pub struct Target {
    /// Label for messages.
    pub label: String,
    /// The store.
    pub store: Box<dyn CacheStore>,
    /// Export options.
    pub options: ExportOptions,
}

/// Engine settings.
#[derive(Clone)]
pub struct CopyOptions {
    /// Blobs transferred (and checked) at once, per target. Default 4, as BuildKit.
    pub parallelism: usize,
    /// Where converted layers are spooled (`force-compression`); without it, conversion is an
    /// error. The CLI gives temporary files.
    pub scratch: Option<Arc<dyn Scratch>>,
    /// Bound on a layer's uncompressed size while converting.
    pub max_uncompressed: u64,
    /// Check every blob at a target even when the target says it already holds this exact
    /// manifest ([`CacheStore::unchanged`]).
    pub recheck_target: bool,
}

impl std::fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOptions")
            .field("parallelism", &self.parallelism)
            .field("scratch", &self.scratch.is_some())
            .field("max_uncompressed", &self.max_uncompressed)
            .field("recheck_target", &self.recheck_target)
            .finish()
    }
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            parallelism: 4,
            scratch: None,
            max_uncompressed: DEFAULT_MAX_UNCOMPRESSED,
            recheck_target: false,
        }
    }
}

/// How one target ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "message", rename_all = "kebab-case")]
pub enum Outcome {
    /// Manifest written.
    Committed,
    /// Nothing written, on purpose (e.g. empty cache on a manifest-family backend).
    Skipped(String),
    /// Failed; nothing new is referenced at the target.
    Failed(String),
    /// Failed, but `ignore-error=true` made it a warning.
    IgnoredError(String),
}

/// The result for one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// Target label.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The manifest written.
    pub manifest: Option<Descriptor>,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Blobs that were already there.
    pub blobs_present: usize,
    /// Of the blobs copied, those the target copied server-side (e.g. a registry mount).
    pub blobs_server_side: usize,
    /// Layers recompressed (`force-compression`).
    pub blobs_converted: usize,
    /// Bytes transferred.
    pub bytes_copied: u64,
    /// Blob transfers started again after a transient failure (see [`BLOB_ATTEMPTS`]).
    pub blob_retries: usize,
    /// Records in the exported cache.
    pub records: usize,
    /// Layer blobs in the exported cache.
    pub layers: usize,
}

/// The result of a copy.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// Sources that loaded.
    pub sources_loaded: usize,
    /// Per-target results, in the order given.
    pub targets: Vec<TargetReport>,
    /// Every warning.
    pub warnings: Vec<String>,
}

impl CopyReport {
    /// Whether any target failed (not counting ignored errors).
    pub fn failed(&self) -> bool {
        self.targets.iter().any(|t| matches!(t.outcome, Outcome::Failed(_)))
    }
}

struct Warn<'a> {
    progress: &'a Arc<dyn Progress>,
    list: Vec<String>,
}

impl Warn<'_> {
    fn warn(&mut self, w: String) {
        self.progress.event(Event::Warning(w.clone()));
        self.list.push(w);
    }
}

struct Loaded {
    source: usize,
    cache: LoadedCache,
}

/// Load one source and drop results whose blobs are missing or have the wrong size.
async fn load_source(src: &Source, parallelism: usize, sink: &mut Warn<'_>) -> Result<Option<LoadedCache>> {
    let Some(mut loaded) = src.store.load().await? else {
        return Ok(None);
    };
    for w in loaded.warnings.drain(..) {
        sink.warn(format!("{}: {w}", src.label));
    }
    let store = &src.store;
    // One call for all (a listing where the store can), per blob when that fails, so each
    // blob that cannot be checked is named.
    let digests: Vec<Digest> = loaded.cache.blobs.values().map(|d| d.digest.clone()).collect();
    let wide = parallelism.max(1) * CHECKS_PER_TRANSFER;
    let checks: Vec<(Digest, u64, Result<Option<u64>>)> = match store.blob_sizes(&digests, wide).await {
        Ok(sizes) => loaded
            .cache
            .blobs
            .values()
            .zip(sizes)
            .map(|(d, size)| (d.digest.clone(), d.size, Ok(size)))
            .collect(),
        Err(_) => {
            futures::stream::iter(loaded.cache.blobs.values())
                .map(|d| async move { (d.digest.clone(), d.size, store.blob_size(&d.digest).await) })
                .buffer_unordered(wide)
                .collect()
                .await
        }
    };
    let mut bad: HashMap<Digest, String> = HashMap::new();
    for (digest, want, got) in checks {
        match got {
            Ok(Some(n)) if n == want => {}
            Ok(Some(n)) => {
                bad.insert(digest, format!("has {n} bytes, the cache says {want}"));
            }
            Ok(None) => {
                bad.insert(digest, "is missing".into());
            }
            Err(e) => {
                bad.insert(digest, format!("cannot be checked: {e}"));
            }
        }
    }
    for (d, why) in &bad {
        sink.warn(format!(
            "{}: blob {d} {why}; results that need it are skipped",
            src.label
        ));
    }
    if !bad.is_empty() {
        loaded.cache.drop_results_without(|d| !bad.contains_key(d));
    }
    Ok(Some(loaded))
}

/// Load every source (a failure is a warning); none loaded is an error: the first refused
/// credential, [`Error::NoSourceCache`] when every source is simply absent, else
/// [`Error::NothingToCopy`].
async fn load_sources(sources: &[Source], options: &CopyOptions, sink: &mut Warn<'_>) -> Result<Vec<Loaded>> {
    let mut loaded = Vec::new();
    let mut absent = 0;
    let mut denied: Option<Error> = None;
    for (i, src) in sources.iter().enumerate() {
        match load_source(src, options.parallelism, sink).await {
            Ok(Some(cache)) => {
                sink.progress.event(Event::SourceLoaded {
                    source: src.label.clone(),
                    records: cache.cache.records.len(),
                    layers: cache.cache.blobs.len(),
                });
                loaded.push(Loaded { source: i, cache });
            }
            Ok(None) => {
                absent += 1;
                sink.warn(format!("{}: no cache there; skipped", src.label));
            }
            Err(e) => {
                absent += usize::from(matches!(e, Error::CacheNotFound { .. }));
                sink.warn(format!("{}: import failed, skipped: {e}", src.label));
                if matches!(e, Error::Denied { .. }) && denied.is_none() {
                    denied = Some(e);
                }
            }
        }
    }
    if !loaded.is_empty() {
        return Ok(loaded);
    }
    // Nothing loaded and a credential was refused: that is the error to fix.
    if let Some(e) = denied {
        return Err(e);
    }
    if absent == sources.len() && absent > 0 {
        return Err(Error::NoSourceCache {
            reason: sink.list.join("; "),
        });
    }
    Err(Error::NothingToCopy {
        reason: if sink.list.is_empty() {
            "no --from was given".into()
        } else {
            sink.list.join("; ")
        },
    })
}

/// Copy the merged cache of `sources` to every target.
///
/// A source that fails to load is a warning and the copy goes on with the rest (as BuildKit's
/// build does); if none loads, the result is [`Error::NoSourceCache`] when every source simply has
/// no cache (a first run), the first [`Error::Denied`] when a credential was refused, else
/// [`Error::NothingToCopy`]. A target failure is
/// reported in its [`TargetReport`] (downgraded to a warning with `ignore-error=true`); the
/// target's manifest is only written after all its blobs are in place.
pub async fn copy(
    sources: &[Source],
    targets: &[Target],
    options: &CopyOptions,
    progress: Arc<dyn Progress>,
) -> Result<CopyReport> {
    let mut sink = Warn {
        progress: &progress,
        list: Vec::new(),
    };
    let loaded = load_sources(sources, options, &mut sink).await?;
    let sources_loaded = loaded.len();
    let mut owner: HashMap<Digest, usize> = HashMap::new();
    for l in &loaded {
        for d in l.cache.cache.blobs.keys() {
            owner.entry(d.clone()).or_insert(l.source);
        }
    }
    let mut merged = Some(AbstractCache::merge(loaded.into_iter().map(|l| l.cache.cache)));

    let mut reports = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        let mode = target.options.mode.unwrap_or(Mode::Max);
        // The last target takes the merged cache itself when it keeps all of it (no copy of a
        // large cache); the others get their own.
        let cache = match (&merged, i + 1 == targets.len() && mode == Mode::Max) {
            (_, true) => merged.take().unwrap_or_default(),
            (Some(m), false) => m.apply_mode(mode),
            (None, false) => AbstractCache::default(),
        };
        let mut report = TargetReport {
            target: target.label.clone(),
            outcome: Outcome::Committed,
            manifest: None,
            blobs_copied: 0,
            blobs_present: 0,
            blobs_server_side: 0,
            blobs_converted: 0,
            bytes_copied: 0,
            blob_retries: 0,
            records: 0,
            layers: 0,
        };
        let result = export_one(
            sources,
            &owner,
            cache,
            target,
            options,
            &progress,
            &mut report,
            &mut sink,
        )
        .await;
        match result {
            Ok(()) => {}
            Err(e) if target.options.ignore_error => {
                let msg = format!("{}: export failed (ignored, ignore-error=true): {e}", target.label);
                sink.warn(msg);
                report.outcome = Outcome::IgnoredError(e.to_string());
            }
            Err(e) => report.outcome = Outcome::Failed(e.to_string()),
        }
        reports.push(report);
    }
    Ok(CopyReport {
        sources_loaded,
        targets: reports,
        warnings: sink.list,
    })
}

/// Existence checks in flight per transfer slot (`CopyOptions::parallelism`).
const CHECKS_PER_TRANSFER: usize = 4;

pub use crate::store::BLOB_ATTEMPTS;

/// Move one blob with `send` (one attempt, counting its bytes with the counter it is given),
/// up to [`BLOB_ATTEMPTS`] times while its error is transient for the source or the target.
async fn with_attempts<T, F, Fut>(
    src: &Source,
    target: &Target,
    digest: &Digest,
    counter: &ByteCounter,
    progress: &Arc<dyn Progress>,
    retries: &std::sync::atomic::AtomicUsize,
    mut send: F,
) -> Result<T>
where
    F: FnMut(ByteCounter) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    use std::sync::atomic::{AtomicU64, Ordering};
    // The bytes of the attempt under way, to take back from the progress if it fails.
    let sent_bytes = Arc::new(AtomicU64::new(0));
    crate::store::retry_transient(
        |e| target.store.is_transient(e) || src.store.is_transient(e),
        |e, attempt| {
            retries.fetch_add(1, Ordering::Relaxed);
            progress.event(Event::BlobRestarted {
                target: target.label.clone(),
                digest: digest.clone(),
                bytes_sent: sent_bytes.load(Ordering::Relaxed),
                reason: e.to_string(),
                attempt,
            });
        },
        || {
            sent_bytes.store(0, Ordering::Relaxed);
            let (counter, sent_bytes) = (counter.clone(), sent_bytes.clone());
            send(Arc::new(move |n| {
                sent_bytes.fetch_add(n, Ordering::Relaxed);
                counter(n)
            }))
        },
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn export_one(
    sources: &[Source],
    owner: &HashMap<Digest, usize>,
    cache: AbstractCache,
    target: &Target,
    options: &CopyOptions,
    progress: &Arc<dyn Progress>,
    report: &mut TargetReport,
    sink: &mut Warn<'_>,
) -> Result<()> {
    let mut cache = target.store.select(cache).await?;
    report.records = cache.records.len();
    report.layers = cache.blobs.len();
    let retries = AtomicUsize::new(0);
    let export = Export {
        sources,
        owner,
        target,
        options,
        progress,
        retries: &retries,
    };
    let want = target.options.compression;
    let differs = |d: &&Descriptor| d.compression_name() != want.as_str();
    let differ = cache.blobs.values().filter(differs).count();
    if target.options.force_compression && differ > 0 {
        let differ: Vec<Descriptor> = cache.blobs.values().filter(differs).cloned().collect();
        let converted = export.convert(&differ).await?;
        report.blobs_converted = converted.len();
        cache.replace_blobs(converted.into_iter().collect());
    } else if !target.options.force_compression && target.options.compression_explicit && differ > 0 {
        sink.warn(format!(
            "{}: compression={} applies to new blobs only; {} copied layer(s) keep their compression (add force-compression=true to convert)",
            target.label,
            want.as_str(),
            differ
        ));
    }
    if !options.recheck_target && !cache.has_no_layers() {
        if let Some(manifest) = target.store.unchanged(&cache, &target.options).await? {
            tracing::info!(
                "{}: the manifest there ({}) is byte-identical to this cache's and the store keeps every blob it names: no blob checked, nothing written (--recheck-target checks them)",
                target.label,
                manifest.digest
            );
            report.blobs_present = cache.blobs.len();
            progress.event(Event::TargetPlanned {
                target: target.label.clone(),
                blobs: 0,
                bytes: 0,
                present: report.blobs_present,
            });
            report.manifest = Some(manifest.clone());
            progress.event(Event::Committed {
                target: target.label.clone(),
                manifest: Some(Box::new(manifest)),
            });
            return Ok(());
        }
    }
    let missing = export.missing(&cache).await?;
    report.blobs_present = cache.blobs.len() - missing.len();
    let bytes: u64 = missing.iter().map(|d| d.size).sum();
    progress.event(Event::TargetPlanned {
        target: target.label.clone(),
        blobs: missing.len(),
        bytes,
        present: report.blobs_present,
    });
    report.blobs_server_side = export.transfer(&missing).await?;
    report.blobs_copied = missing.len();
    report.blob_retries = retries.load(Ordering::Relaxed);
    report.bytes_copied = bytes;

    let committed = target.store.commit(&cache, &target.options).await?;
    for w in committed.warnings {
        sink.warn(format!("{}: {w}", target.label));
    }
    if committed.skipped {
        report.outcome = Outcome::Skipped("empty cache: nothing to export (BuildKit skips it too)".into());
    }
    report.manifest = committed.manifest.clone();
    progress.event(Event::Committed {
        target: target.label.clone(),
        manifest: committed.manifest.map(Box::new),
    });
    Ok(())
}

/// One target's export: where each blob comes from, and the shared retry count.
struct Export<'a> {
    sources: &'a [Source],
    owner: &'a HashMap<Digest, usize>,
    target: &'a Target,
    options: &'a CopyOptions,
    progress: &'a Arc<dyn Progress>,
    /// Blob transfers started again (conversions and copies).
    retries: &'a AtomicUsize,
}

impl Export<'_> {
    /// The source that holds a blob.
    fn source_of(&self, digest: &Digest) -> Result<&Source> {
        self.owner
            .get(digest)
            .and_then(|&i| self.sources.get(i))
            .ok_or_else(|| Error::BlobNotFound {
                digest: digest.clone(),
                location: "any --from".into(),
            })
    }

    fn counter(&self) -> ByteCounter {
        let p = self.progress.clone();
        Arc::new(move |n| p.event(Event::Bytes(n)))
    }

    fn done(&self, digest: &Digest, size: u64) {
        self.progress.event(Event::BlobDone {
            target: self.target.label.clone(),
            digest: digest.clone(),
            size,
        });
    }

    /// `force-compression`: convert every layer in `differ`, upload what the target lacks, and
    /// return (old digest, new descriptor) pairs.
    async fn convert(&self, differ: &[Descriptor]) -> Result<Vec<(Digest, Descriptor)>> {
        let scratch = self.options.scratch.clone().ok_or_else(|| Error::NotImplemented {
            feature: "force-compression without scratch space (CopyOptions::scratch)".into(),
        })?;
        let to = ConvertTarget {
            compression: self.target.options.compression,
            level: self.target.options.compression_level,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let counter = self.counter();
        let (target, max) = (self.target, self.options.max_uncompressed);
        futures::stream::iter(differ.iter())
            .map(|desc| {
                let (scratch, counter) = (scratch.clone(), counter.clone());
                async move {
                    let src = self.source_of(&desc.digest)?;
                    // A transient failure converts the layer again (the scratch file is
                    // read once).
                    let new = with_attempts(src, target, &desc.digest, &counter, self.progress, self.retries, |c| {
                        let scratch = scratch.clone();
                        async move {
                            let stream = src.store.open_blob(desc, 0).await?;
                            let (new, file) = convert_stream(desc, stream, to, scratch.as_ref(), max).await?;
                            if target.store.blob_size(&new.digest).await? != Some(new.size) {
                                let verified = VerifiedStream::new(&new, file.into_stream()?).with_counter(c);
                                target.store.put_blob(&new, verified).await?;
                            }
                            Ok(new)
                        }
                    })
                    .await?;
                    self.done(&new.digest, new.size);
                    Ok::<_, Error>((desc.digest.clone(), new))
                }
            })
            .buffer_unordered(self.options.parallelism.min(cores).max(1))
            .try_collect()
            .await
    }

    /// The plan: the blobs the target lacks. Existence checks are small requests (or one
    /// listing), so they run wider than the transfers.
    async fn missing<'c>(&self, cache: &'c AbstractCache) -> Result<Vec<&'c Descriptor>> {
        let digests: Vec<Digest> = cache.blobs.values().map(|d| d.digest.clone()).collect();
        let wide = self.options.parallelism.max(1) * CHECKS_PER_TRANSFER;
        let sizes = self.target.store.blob_sizes(&digests, wide).await?;
        Ok(cache
            .blobs
            .values()
            .zip(sizes)
            .filter(|(d, size)| *size != Some(d.size))
            .map(|(d, _)| d)
            .collect())
    }

    /// Stream each missing blob source -> verifying adapter -> target (or copy it server-side);
    /// stop at the first failure. Returns how many went server-side.
    async fn transfer(&self, missing: &[&Descriptor]) -> Result<usize> {
        let counter = self.counter();
        let server_side = AtomicUsize::new(0);
        let (server_side_ref, target) = (&server_side, self.target);
        futures::stream::iter(missing.iter().copied())
            .map(Ok::<_, Error>)
            .try_for_each_concurrent(self.options.parallelism.max(1), |desc| {
                let counter = counter.clone();
                async move {
                    let src = self.source_of(&desc.digest)?;
                    if let Some(origin) = src.store.server_side() {
                        if target.store.copy_from(desc, &origin).await? {
                            server_side_ref.fetch_add(1, Ordering::Relaxed);
                            counter(desc.size);
                            self.done(&desc.digest, desc.size);
                            return Ok(());
                        }
                    }
                    let attempt = |c: ByteCounter| async move {
                        let stream = src.store.open_blob(desc, 0).await?;
                        target
                            .store
                            .put_blob(desc, VerifiedStream::new(desc, stream).with_counter(c))
                            .await
                    };
                    with_attempts(
                        src,
                        target,
                        &desc.digest,
                        &counter,
                        self.progress,
                        self.retries,
                        attempt,
                    )
                    .await?;
                    self.done(&desc.digest, desc.size);
                    Ok(())
                }
            })
            .await?;
        Ok(server_side.load(Ordering::Relaxed))
    }
}
