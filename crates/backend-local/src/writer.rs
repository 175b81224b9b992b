//! Writing blobs into `blobs/sha256/`: a scratch file in `ingest/`, every byte verified, then
//! fsync, read-only and a rename into place. The settling step runs in the background while
//! the next blobs stream (up to [`WRITERS`] at once); `commit`, `blob_size` and the listing
//! wait for it.
//!
//! Two ways in: [`write_chunks`] takes the verified chunks of any source, and
//! [`copy_verified`] copies a blob of another local directory inside the kernel (a reflink
//! where the file system has them, else `copy_file_range`) and hashes what was written.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bkcache_core::{Descriptor, Error, Result};
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::file_io;
use crate::layout::io_err;

/// Blob writers alive at once per store (streaming or settling).
pub(crate) const WRITERS: usize = 16;

/// What a writer thread receives: a verified chunk, or word that the stream ended verified.
pub(crate) enum WriteMsg {
    Data(Bytes),
    Commit,
}

/// Blob writers that have their whole verified blob and are settling (fsync, rename into
/// place) while the next transfers run: fsyncs overlap instead of holding a transfer slot each.
#[derive(Debug)]
pub(crate) struct Finishing {
    /// Writers alive at once; each holds at most a channel's depth of chunks.
    slots: Arc<Semaphore>,
    /// An async lock, held while waiting: a second waiter returns only after the first's
    /// writers are done.
    tasks: tokio::sync::Mutex<Vec<JoinHandle<Result<()>>>>,
    /// The store's directory, for errors.
    location: String,
}

fn task_error(location: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::io(location, "blob writer task", std::io::Error::other(e))
}

impl Finishing {
    /// The writers of the store at `root`.
    pub(crate) fn new(root: &Path) -> Self {
        Finishing {
            slots: Arc::new(Semaphore::new(WRITERS)),
            tasks: tokio::sync::Mutex::new(Vec::new()),
            location: format!("local:{}", root.display()),
        }
    }

    /// The error of a writer task that panicked or was cancelled.
    pub(crate) fn task_failed(&self, e: tokio::task::JoinError) -> Error {
        task_error(&self.location, e)
    }

    /// A writer slot (waits while [`WRITERS`] are alive).
    pub(crate) async fn slot(&self) -> Result<OwnedSemaphorePermit> {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| task_error(&self.location, e))
    }

    /// Hand over a writer that is settling; reports the outcome of one that already finished
    /// (so a failure shows at the next blob, not only at commit).
    pub(crate) async fn hand_over(&self, writer: JoinHandle<Result<()>>) -> Result<()> {
        let done = {
            let mut tasks = self.tasks.lock().await;
            tasks.push(writer);
            tasks.iter().position(|t| t.is_finished()).map(|i| tasks.swap_remove(i))
        };
        match done {
            Some(t) => t.await.map_err(|e| task_error(&self.location, e))?,
            None => Ok(()),
        }
    }

    /// Wait for every settling writer; the first failure is the answer.
    pub(crate) async fn wait(&self) -> Result<()> {
        let mut tasks = self.tasks.lock().await;
        let mut first = Ok(());
        for t in tasks.drain(..) {
            let r = t.await.map_err(|e| task_error(&self.location, e)).and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// Removes a scratch file unless disarmed.
pub(crate) struct TempGuard(Option<PathBuf>);

impl TempGuard {
    pub(crate) fn new(path: PathBuf) -> Self {
        TempGuard(Some(path))
    }

    fn disarm(mut self) {
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

/// A verified scratch file, ready to settle.
pub(crate) struct Scratch {
    file: File,
    path: PathBuf,
    guard: TempGuard,
}

impl Scratch {
    /// Make the blob durable, read-only, and put it in place. The directory entry is made
    /// durable once, at commit, before the index names it (one directory fsync per export).
    pub(crate) fn settle(self, final_path: &Path) -> Result<()> {
        let Scratch { file, path, guard } = self;
        file.sync_all().map_err(|e| io_err(&path, "fsync", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o444))
                .map_err(|e| io_err(&path, "chmod", e))?;
        }
        drop(file);
        std::fs::rename(&path, final_path).map_err(|e| io_err(final_path, "rename into place", e))?;
        guard.disarm();
        Ok(())
    }
}

/// Write the chunks a channel brings into the scratch file `tmp` (a blocking thread). Returns
/// `None` when the channel closed without [`WriteMsg::Commit`] (an aborted stream: the
/// scratch file is removed).
pub(crate) fn write_chunks(rx: &mut tokio::sync::mpsc::Receiver<WriteMsg>, tmp: PathBuf) -> Result<Option<Scratch>> {
    use std::io::Write;
    let guard = TempGuard::new(tmp.clone());
    let mut file = File::create(&tmp).map_err(|e| io_err(&tmp, "create", e))?;
    let mut writeback = file_io::Writeback::default();
    loop {
        match rx.blocking_recv() {
            Some(WriteMsg::Data(chunk)) => {
                file.write_all(&chunk).map_err(|e| io_err(&tmp, "write", e))?;
                writeback.wrote(&file, chunk.len());
            }
            Some(WriteMsg::Commit) => break,
            None => return Ok(None),
        }
    }
    Ok(Some(Scratch { file, path: tmp, guard }))
}

/// Copy the blob at `src` (another local cache directory) into the scratch file `tmp`
/// without the bytes passing through user space, then hash what was written (from the page
/// cache, one step at a time, while its writeback starts). `Ok(None)`: the kernel cannot copy
/// between these files (or the source is not there as the descriptor says); the caller
/// streams instead. A copy whose bytes do not match the descriptor is
/// [`Error::DigestMismatch`], as a streamed one is.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn copy_verified(src: &Path, tmp: PathBuf, desc: &Descriptor) -> Result<Option<Scratch>> {
    let Ok(source) = File::open(src) else { return Ok(None) };
    match source.metadata() {
        Ok(m) if m.is_file() && m.len() == desc.size => {}
        _ => return Ok(None),
    }
    let guard = TempGuard::new(tmp.clone());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, "create", e))?;
    let mut hasher = bkcache_core::digest::Hasher::new();
    // Small blobs get a small buffer (a 250k-blob cache is mostly 1 KiB blobs).
    let mut buf = vec![0u8; (desc.size as usize).clamp(4096, file_io::HASH_BUFFER)];
    let read_back = |e| io_err(&tmp, "read back", e);
    if rustix::fs::ioctl_ficlone(&file, &source).is_ok() {
        // A reflink shares the source's extents: nothing was written, hash it all.
        file_io::hash_range(&file, 0, desc.size, &mut buf, &mut hasher).map_err(read_back)?;
    } else {
        let mut done = 0u64;
        loop {
            let step = match file_io::copy_step(&source, &file, done) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(path = %src.display(), error = %e, "kernel copy refused; streaming instead");
                    return Ok(None);
                }
            };
            file_io::hash_range(&file, done, step, &mut buf, &mut hasher).map_err(read_back)?;
            file_io::start_writeback(&file, done, step);
            done += step;
        }
    }
    let (digest, len) = hasher.finish();
    if digest != desc.digest || len != desc.size {
        return Err(Error::DigestMismatch {
            digest: desc.digest.clone(),
            expected_size: desc.size,
            actual: digest.to_string(),
            actual_size: len,
        });
    }
    Ok(Some(Scratch { file, path: tmp, guard }))
}

/// No in-kernel copy here: the caller streams.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn copy_verified(_src: &Path, _tmp: PathBuf, _desc: &Descriptor) -> Result<Option<Scratch>> {
    Ok(None)
}
