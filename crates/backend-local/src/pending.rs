//! Blob writes in flight, and blobs written and verified but not yet durable.
//!
//! A blob streams into a scratch file in `ingest/` on a blocking thread (up to [`WRITERS`] at
//! once). When its stream ended verified, the file is *written*: visible to this store
//! ([`Finishing::written_path`]) but not yet in `blobs/sha256/`. [`Finishing::settle`] makes
//! every written blob durable in one pass (the fsyncs run together, so the file system commits
//! them in a few journal transactions instead of one per blob, as `cp -r && sync` does), then
//! renames each into place. `commit` settles before the index names a blob, so the crash-safety
//! rule holds: nothing is renamed into `blobs/` before its bytes are on disk.
//!
//! Before, each blob was fsynced by its writer as soon as it was written, while the next blobs
//! were being written: perf showed the writers spinning on the journal lock
//! (`rwsem_spin_on_owner`), and a 1 GiB, 600-blob local copy took 1.17-1.91 s (2.3 s of system
//! time in four of five runs); settled in one pass it takes 1.57-1.66 s (0.9 s of system time),
//! against 0.94-1.08 s for `cp -r && sync` in the same interleaved runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bkcache_core::{Digest, Error, Result};

use crate::layout::io_err;

/// Blob writers alive at once per store.
pub(crate) const WRITERS: usize = 16;
/// Threads that fsync written blobs at settle time: enough to keep the disk's queue full and
/// let the file system group the commits.
const SYNC_THREADS: usize = 8;
/// Written bytes (or blobs) after which a `put_blob` settles at once, so a long-lived store
/// (a `serve` endpoint whose client never commits) keeps bounded dirty data in `ingest/`.
const SETTLE_BYTES: u64 = 2 << 30;
const SETTLE_BLOBS: usize = 16_384;

/// A blob written to its scratch file and verified, waiting to be made durable.
#[derive(Debug)]
pub(crate) struct Written {
    scratch: TempGuard,
    final_path: PathBuf,
    size: u64,
}

impl Written {
    pub(crate) fn new(scratch: TempGuard, final_path: PathBuf, size: u64) -> Self {
        Written {
            scratch,
            final_path,
            size,
        }
    }
}

/// The writers of one store: those streaming, and what they wrote.
#[derive(Debug)]
pub(crate) struct Finishing {
    /// Writers alive at once (transferring or writing out); each holds at most
    /// `CHANNEL_DEPTH` chunks.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// An async lock, held while waiting: a second waiter returns only after the first's
    /// writers are done.
    tasks: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<Result<()>>>>,
    /// Written blobs by digest (a second write of one digest replaces the first, whose
    /// scratch file is removed).
    written: Mutex<WrittenSet>,
}

/// Written blobs by digest, and their bytes.
#[derive(Debug, Default)]
struct WrittenSet {
    blobs: HashMap<Digest, Written>,
    bytes: u64,
}

impl Default for Finishing {
    fn default() -> Self {
        Finishing {
            slots: Arc::new(tokio::sync::Semaphore::new(WRITERS)),
            tasks: tokio::sync::Mutex::new(Vec::new()),
            written: Mutex::new(WrittenSet::default()),
        }
    }
}

fn task_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::io("local store", "blob writer task", std::io::Error::other(e))
}

impl Finishing {
    fn written(&self) -> std::sync::MutexGuard<'_, WrittenSet> {
        // A writer that panicked while holding the lock left the map consistent (one insert).
        self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Record a written blob.
    pub(crate) fn add(&self, digest: Digest, blob: Written) {
        let mut written = self.written();
        written.bytes += blob.size;
        if let Some(old) = written.blobs.insert(digest, blob) {
            written.bytes -= old.size;
        }
    }

    /// So much is written that it should settle now.
    pub(crate) fn over_limit(&self) -> bool {
        let written = self.written();
        written.blobs.len() >= SETTLE_BLOBS || written.bytes >= SETTLE_BYTES
    }

    /// Hand over a writer that got its whole verified stream; a writer that already failed is
    /// reported now.
    pub(crate) async fn push(&self, writer: tokio::task::JoinHandle<Result<()>>) -> Result<()> {
        let done = {
            let mut tasks = self.tasks.lock().await;
            tasks.push(writer);
            tasks.iter().position(|t| t.is_finished()).map(|i| tasks.swap_remove(i))
        };
        match done {
            Some(t) => t.await.map_err(task_err)?,
            None => Ok(()),
        }
    }

    /// Wait for every writer to finish writing; the first failure is the answer.
    pub(crate) async fn wait(&self) -> Result<()> {
        let mut tasks = self.tasks.lock().await;
        let mut first = Ok(());
        for t in tasks.drain(..) {
            let r = t.await.map_err(task_err).and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// The size and scratch path of a written (not yet settled) blob.
    pub(crate) fn written_path(&self, digest: &Digest) -> Option<(u64, PathBuf)> {
        self.written()
            .blobs
            .get(digest)
            .and_then(|w| Some((w.size, w.scratch.path()?.to_owned())))
    }

    /// Wait for the writers, then make every written blob durable and rename it into place.
    pub(crate) async fn settle(&self) -> Result<()> {
        self.wait().await?;
        let written: Vec<Written> = {
            let mut set = self.written();
            set.bytes = 0;
            set.blobs.drain().map(|(_, w)| w).collect()
        };
        if written.is_empty() {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || make_durable(written))
            .await
            .map_err(task_err)?
    }
}

/// fsync every written blob (on [`SYNC_THREADS`] threads), then rename each into place. A
/// failure leaves the rest in `ingest/`, removed when their guards drop.
fn make_durable(written: Vec<Written>) -> Result<()> {
    let per_thread = written.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|s| {
        let syncs: Vec<_> = written
            .chunks(per_thread)
            .map(|chunk| {
                s.spawn(move || {
                    chunk.iter().try_for_each(|w| match w.scratch.path() {
                        Some(p) => std::fs::File::open(p)
                            .and_then(|f| f.sync_all())
                            .map_err(|e| io_err(p, "fsync", e)),
                        None => Ok(()),
                    })
                })
            })
            .collect();
        syncs.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|_| Err(task_err(std::io::Error::other("fsync thread panicked"))))
        })
    })?;
    for w in written {
        if let Some(p) = w.scratch.path() {
            std::fs::rename(p, &w.final_path).map_err(|e| io_err(&w.final_path, "rename into place", e))?;
        }
        w.scratch.disarm();
    }
    Ok(())
}

/// A scratch file removed when dropped, unless disarmed.
#[derive(Debug)]
pub(crate) struct TempGuard(Option<PathBuf>);

impl TempGuard {
    pub(crate) fn new(path: PathBuf) -> Self {
        TempGuard(Some(path))
    }

    fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }

    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}
