//! The system calls the blob path tunes: reads into spare capacity (no chunk zeroed first),
//! early writeback of what a writer has written (the final fsync has little left), and the
//! in-kernel copy between two local directories.
//!
//! All go through `rustix` (already in the product's tree through `tempfile`), so no `unsafe`
//! here. Measured on a 1 GiB, 600-blob local copy (`ARCHITECTURE.md`, "Local copy"): the
//! memset of zeroed chunks was 4% of the samples, and starting writeback every
//! [`WRITEBACK_STEP`] took the copy from 1.03-1.07 s to 0.95-1.00 s next to `cp -r && sync`'s
//! 0.94-1.08 s.

use std::fs::File;
use std::io;

/// Bytes a writer writes between two writeback kicks (and an in-kernel copy copies per step).
pub(crate) const WRITEBACK_STEP: u64 = 4 << 20;

/// The buffer an in-kernel copy's bytes are read back into for hashing (one per copy,
/// reused: it stays in the CPU's cache).
pub(crate) const HASH_BUFFER: usize = 256 << 10;

/// Read up to `capacity` bytes from the file's position into a new buffer (empty: end of file).
pub(crate) fn read_chunk(file: &File, capacity: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(capacity);
    #[cfg(unix)]
    loop {
        match rustix::io::read(file, rustix::buffer::spare_capacity(&mut buf)) {
            Ok(_) => return Ok(buf),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    #[cfg(not(unix))]
    {
        use std::io::Read;
        buf.resize(capacity, 0);
        let mut reader: &File = file;
        let n = loop {
            match reader.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        buf.truncate(n);
        Ok(buf)
    }
}

/// Starts writeback of a file's bytes as they are written, one [`WRITEBACK_STEP`] at a time,
/// so the disk works while the copy goes on and the fsync at the end waits for little.
#[derive(Debug, Default)]
pub(crate) struct Writeback {
    written: u64,
    started: u64,
}

impl Writeback {
    /// Note `n` more bytes written to `file`; past a step, start their writeback.
    pub(crate) fn wrote(&mut self, file: &File, n: usize) {
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_STEP {
            start_writeback(file, self.started, self.written - self.started);
            self.started = self.written;
        }
    }
}

/// On Linux `POSIX_FADV_DONTNEED` starts asynchronous writeback of the range's dirty pages
/// (and drops only pages already clean), which is what `sync_file_range(SYNC_FILE_RANGE_WRITE)`
/// does; rustix offers the one without `unsafe`. A failure only loses the head start: the
/// fsync that follows is what makes the blob durable.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Copy up to one [`WRITEBACK_STEP`] from `source` to `dest`, both at `offset`, inside the
/// kernel (`copy_file_range`). Returns the bytes copied; 0 at the end of `source`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn copy_step(source: &File, dest: &File, offset: u64) -> io::Result<u64> {
    let (mut from, mut to) = (offset, offset);
    loop {
        match rustix::fs::copy_file_range(source, Some(&mut from), dest, Some(&mut to), WRITEBACK_STEP as usize) {
            Ok(n) => return Ok(n as u64),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Feed `len` bytes of `file` from `offset` to `hasher`, through `buf`; stops early at the
/// end of the file (the hasher's length then tells).
#[cfg(unix)]
pub(crate) fn hash_range(
    file: &File,
    offset: u64,
    len: u64,
    buf: &mut [u8],
    hasher: &mut bkcache_core::digest::Hasher,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let want = buf.len().min((end - at) as usize);
        let n = match file.read_at(&mut buf[..want], at) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn read_chunk_reads_a_file_in_chunks_to_its_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let file = File::open(&path).expect("open");
        let mut back = Vec::new();
        loop {
            let chunk = read_chunk(&file, 4096).expect("read");
            if chunk.is_empty() {
                break;
            }
            assert!(chunk.len() <= 4096);
            back.extend_from_slice(&chunk);
        }
        assert_eq!(back, data);
    }

    #[test]
    fn writeback_steps_keep_every_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut file = File::create(&path).expect("create");
        let mut wb = Writeback::default();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..9 {
            file.write_all(&chunk).expect("write");
            wb.wrote(&file, chunk.len());
        }
        assert_eq!(wb.started, 2 * WRITEBACK_STEP, "two steps started");
        file.sync_all().expect("fsync");
        assert_eq!(std::fs::read(&path).expect("read back").len(), 9 << 20);
    }
}
