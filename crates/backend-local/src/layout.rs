//! Synchronous OCI-layout file operations: atomic writes, the locked `index.json` update,
//! and the reachability walk behind `reset=true`. Called from `spawn_blocking`.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bkcache_core::descriptor::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use bkcache_core::manifest::{Index, TopLevel};
use bkcache_core::{Descriptor, Digest, Error, Result};

use crate::error::LocalError;

pub(crate) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const LOCK_WAIT: Duration = Duration::from_secs(10);

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique scratch path in `dir`.
pub(crate) fn temp_path(dir: &Path, stem: &str) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{stem}.{}.{n}.tmp", std::process::id()))
}

pub(crate) fn io_err(path: &Path, op: &str, e: io::Error) -> Error {
    Error::io(path.display().to_string(), op, e)
}

/// fsync a directory so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(dir, "fsync directory", e))
}

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_path(dir, path.file_name().and_then(|n| n.to_str()).unwrap_or("file"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path, "write", e));
    }
    sync_dir(dir)
}

/// Hold an exclusive flock on `index.json.lock` (BuildKit's lock) while `f` runs. The lock file
/// is left in place: removing it would let two writers lock different inodes.
pub(crate) fn with_index_lock<T>(root: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let path = root.join("index.json.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, "open lock file", e))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(TryLockError::WouldBlock) => {
                return Err(LocalError::LockBusy {
                    path,
                    waited_secs: LOCK_WAIT.as_secs(),
                }
                .into())
            }
            Err(TryLockError::Error(e)) => return Err(io_err(&path, "lock", e)),
        }
    }
    let out = f();
    let _ = file.unlock();
    out
}

/// Read `index.json`; `Ok(None)` when absent.
pub(crate) fn read_index(root: &Path) -> Result<Option<Index>> {
    let path = root.join("index.json");
    match fs::read(&path) {
        Ok(bytes) => Index::from_slice(&bytes, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path, "read", e)),
    }
}

/// BuildKit's `StoreIndex.Put(desc, Tag(tag))`: drop entries with this ref name (and no image
/// name), append the new one, write `oci-layout` and `index.json`. Call under the lock.
pub(crate) fn put_tag(root: &Path, manifest: &Descriptor, tag: &str) -> Result<()> {
    write_atomic(&root.join("oci-layout"), OCI_LAYOUT)?;
    let path = root.join("index.json");
    let mut index = match fs::read(&path) {
        Ok(bytes) => Index::from_slice(&bytes, "index.json").map_err(|e| LocalError::ExistingIndexInvalid {
            path: path.clone(),
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Index::new_oci(),
        Err(e) => return Err(io_err(&path, "read", e)),
    };
    index.schema_version = 2;
    if index.media_type.is_none() {
        index.media_type = Some(bkcache_core::MediaType::OciImageIndex);
    }
    index.manifests.retain(|d| {
        !(d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(tag)
            && d.annotations.get(ANNOTATION_IMAGE_NAME).is_none_or(|n| n.is_empty()))
    });
    let mut entry = manifest.clone();
    entry.annotations.insert(ANNOTATION_REF_NAME.into(), tag.into());
    index.manifests.push(entry);
    write_atomic(&path, &index.to_bytes()?)
}

/// Remove every `index.json` entry named `tag`. Call under the lock.
pub(crate) fn remove_tag(root: &Path, tag: &str) -> Result<bool> {
    let Some(mut index) = read_index(root)? else {
        return Ok(false);
    };
    let before = index.manifests.len();
    index
        .manifests
        .retain(|d| d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) != Some(tag));
    if index.manifests.len() == before {
        return Ok(false);
    }
    write_atomic(&root.join("index.json"), &index.to_bytes()?)?;
    Ok(true)
}

/// Every digest reachable from the index entries (manifests, indexes, configs, layers).
pub(crate) fn reachable(root: &Path, index: &Index) -> Result<HashSet<Digest>> {
    let mut seen = HashSet::new();
    let mut todo: Vec<Descriptor> = index.manifests.clone();
    while let Some(desc) = todo.pop() {
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        let is_doc = desc.media_type.is_manifest() || desc.media_type.is_index() || desc.media_type.as_str().is_empty();
        if !is_doc {
            continue;
        }
        let path = blob_path(root, &desc.digest);
        let Ok(bytes) = fs::read(&path) else { continue };
        match TopLevel::detect(&bytes, &path.display().to_string()) {
            Ok(TopLevel::Manifest(m)) => {
                todo.push(m.config.clone());
                todo.extend(m.layers.iter().cloned());
            }
            Ok(TopLevel::Index(i)) => todo.extend(i.manifests.iter().cloned()),
            Err(_) => {}
        }
    }
    Ok(seen)
}

/// Every `index.json` entry with the blobs it reaches and when it was last written: the
/// manifest blob's mtime (bkcache's commit touches it; BuildKit writes it when its bytes are
/// new) or, when the layout has one entry, `index.json`'s, which every export rewrites.
pub(crate) fn tag_entries(root: &Path) -> Result<Vec<bkcache_core::TagEntry>> {
    let Some(index) = read_index(root)? else {
        return Ok(Vec::new());
    };
    let index_written = if index.manifests.len() == 1 {
        modified(&root.join("index.json"))
    } else {
        None
    };
    let mut out = Vec::with_capacity(index.manifests.len());
    for entry in &index.manifests {
        let one = Index {
            manifests: vec![entry.clone()],
            ..index.clone()
        };
        let manifest_written = modified(&blob_path(root, &entry.digest));
        out.push(bkcache_core::TagEntry {
            tag: entry.annotations.get(ANNOTATION_REF_NAME).cloned(),
            blobs: reachable(root, &one)?,
            written: manifest_written.max(index_written),
            signed: false,
        });
    }
    Ok(out)
}

/// A file's mtime, `None` when it cannot be read.
pub(crate) fn modified(path: &Path) -> Option<bkcache_core::GoTime> {
    let d = fs::metadata(path)
        .ok()?
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(bkcache_core::GoTime::from_unix(d.as_secs() as i64, d.subsec_nanos()))
}

/// Set a blob's mtime to now: the tag that points at it was just written (prune's clock).
pub(crate) fn touch(path: &Path) -> Result<()> {
    let file = File::options()
        .append(true)
        .open(path)
        .map_err(|e| io_err(path, "open", e))?;
    file.set_modified(std::time::SystemTime::now())
        .map_err(|e| io_err(path, "set the mtime of", e))
}

/// `blobs/sha256/<hex>` (the digest type guarantees `hex` is 64 hex characters).
/// fsync `blobs/` and each `blobs/<algorithm>/` directory, so every blob renamed into place
/// so far survives a power loss (called at commit, before the index is written).
pub(crate) fn sync_blob_dirs(root: &Path) -> Result<()> {
    let blobs = root.join("blobs");
    let entries = match std::fs::read_dir(&blobs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&blobs, "list", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(&blobs, "list", e))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            sync_dir(&entry.path())?;
        }
    }
    sync_dir(&blobs)
}

pub(crate) fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs").join(digest.algorithm()).join(digest.hex())
}

/// `reset=true`: delete every blob no tag reaches, and scratch files left in `ingest/` by
/// killed runs. Returns warnings for what could not be deleted. Call under the lock.
pub(crate) fn reset(root: &Path) -> Result<(usize, Vec<String>)> {
    let Some(index) = read_index(root)? else {
        return Ok((0, Vec::new()));
    };
    let keep = reachable(root, &index)?;
    let mut deleted = 0;
    let mut warnings = Vec::new();
    let dir = root.join("blobs/sha256");
    for entry in fs::read_dir(&dir).map_err(|e| io_err(&dir, "list", e))? {
        let entry = entry.map_err(|e| io_err(&dir, "list", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(d) = Digest::parse(&format!("sha256:{name}")) else {
            continue;
        };
        if !keep.contains(&d) {
            match fs::remove_file(entry.path()) {
                Ok(()) => deleted += 1,
                Err(e) => warnings.push(format!("reset: could not delete {}: {e}", entry.path().display())),
            }
        }
    }
    if let Ok(entries) = fs::read_dir(root.join("ingest")) {
        for e in entries.flatten() {
            // Scratch files of runs still writing are young: keep anything touched this hour.
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if stale && e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok((deleted, warnings))
}
