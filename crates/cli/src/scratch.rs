//! Scratch space for converted layers: anonymous temporary files (deleted when closed), read
//! back on a blocking thread through a small bounded channel.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use bkcache_core::compression::{Scratch, ScratchFile};
use bkcache_core::{BlobStream, Error, Result};
use bytes::{Bytes, BytesMut};
use futures::SinkExt;

const CHUNK: usize = 256 << 10;

/// Temporary files in a directory (the system's temp dir by default).
pub struct TempScratch {
    pub dir: PathBuf,
}

struct TempFile {
    file: std::fs::File,
    dir: PathBuf,
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Scratch for TempScratch {
    fn create(&self) -> Result<Box<dyn ScratchFile>> {
        let file = tempfile::tempfile_in(&self.dir)
            .map_err(|e| Error::io(self.dir.display().to_string(), "create scratch file", e))?;
        Ok(Box::new(TempFile {
            file,
            dir: self.dir.clone(),
        }))
    }
}

impl ScratchFile for TempFile {
    fn into_stream(self: Box<Self>) -> Result<BlobStream> {
        let TempFile { mut file, dir } = *self;
        let where_ = dir.display().to_string();
        file.flush()
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| Error::io(where_.clone(), "rewind scratch file", e))?;
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes>>(4);
        std::thread::spawn(move || loop {
            let mut buf = BytesMut::zeroed(CHUNK);
            let item = match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf.freeze())
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(Error::io(where_.clone(), "read scratch file", e)),
            };
            let stop = item.is_err();
            if futures::executor::block_on(tx.send(item)).is_err() || stop {
                return;
            }
        });
        Ok(Box::pin(rx))
    }
}
