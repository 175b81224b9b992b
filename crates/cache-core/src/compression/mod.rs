//! Layer compression: codecs, BuildKit's level mapping, bounded decompression, and streaming
//! conversion of one layer to another compression (used by `force-compression=true`).
//!
//! Conversion runs the codecs on a dedicated OS thread per layer (no async runtime needed):
//! source chunks come in through a bounded channel, the uncompressed tar is hashed (the diffID
//! is preserved and checked) and bounded, and the new blob is written to a [`ScratchFile`] the
//! caller provides, then uploaded with its now-known digest. Nothing is ever held whole in
//! memory.

pub mod estargz;
mod tar;

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};

use crate::descriptor::{Descriptor, ANNOTATION_STARGZ_TOC, ANNOTATION_UNCOMPRESSED};
use crate::digest::Hasher;
use crate::error::{Error, Result};
use crate::media_type::{Compression, MediaType};
use crate::spec::LayerCompression;
use crate::store::{BlobStream, VerifiedStream};

/// Default bound on a layer's uncompressed size during conversion (64 GiB).
pub const DEFAULT_MAX_UNCOMPRESSED: u64 = 64 << 30;

/// Annotation: estargz's uncompressed size.
pub const ANNOTATION_ESTARGZ_UNCOMPRESSED_SIZE: &str = "io.containers.estargz.uncompressed-size";

const CHUNK: usize = 256 << 10;

/// Where converted blobs are spooled before upload (their digest is only known at the end).
/// The CLI provides temporary files; core itself does no file I/O.
pub trait Scratch: Send + Sync {
    /// A new, empty scratch file.
    fn create(&self) -> Result<Box<dyn ScratchFile>>;
}

/// A scratch file: written once, then read back as a stream.
pub trait ScratchFile: Write + Send {
    /// Read back everything written, from the start.
    fn into_stream(self: Box<Self>) -> Result<BlobStream>;
}

/// What to convert to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The compression.
    pub compression: LayerCompression,
    /// `compression-level`, as given (mapped by [`gzip_level`] / [`zstd_level`]).
    pub level: Option<i32>,
}

/// BuildKit's gzip levels: -2..9 (Go `compress/gzip`); unset or -1 is Go's default (6).
/// Go's -2 (Huffman only) has no flate2 equivalent and is treated as level 1.
pub fn gzip_level(level: Option<i32>) -> Result<u32> {
    match level {
        None | Some(-1) => Ok(6),
        Some(-2) => Ok(1),
        Some(l @ 0..=9) => Ok(l as u32),
        Some(l) => Err(Error::InvalidValue {
            attribute: "compression-level".into(),
            value: l.to_string(),
            allowed: "gzip and estargz take -2..9".into(),
        }),
    }
}

/// BuildKit's zstd levels: 0..22, mapped as `zstd.EncoderLevelFromZstd` does to four speeds,
/// here the libzstd levels those speeds correspond to: <3 → 1 (fastest), 3..5 → 3 (default),
/// 6..9 → 7 (better), ≥10 → 11 (best). Unset is 3.
pub fn zstd_level(level: Option<i32>) -> Result<i32> {
    match level {
        None => Ok(3),
        Some(l @ 0..=2) => Ok(if l < 3 { 1 } else { 3 }),
        Some(3..=5) => Ok(3),
        Some(6..=9) => Ok(7),
        Some(10..=22) => Ok(11),
        Some(l) => Err(Error::InvalidValue {
            attribute: "compression-level".into(),
            value: l.to_string(),
            allowed: "zstd takes 0..22".into(),
        }),
    }
}

/// Wrap `input` so reading it yields the uncompressed tar.
pub fn decompressor<'a>(
    compression: Compression,
    input: Box<dyn Read + Send + 'a>,
) -> Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        Compression::Uncompressed => input,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(input).map_err(|e| Error::io("zstd", "start decoder", e))?)
        }
    })
}

/// The layer media type (OCI; the encoder maps to Docker types when asked) for a compression.
pub fn media_type_for(c: LayerCompression) -> MediaType {
    match c {
        LayerCompression::Uncompressed => MediaType::OciLayer,
        LayerCompression::Gzip | LayerCompression::Estargz => MediaType::OciLayerGzip,
        LayerCompression::Zstd => MediaType::OciLayerZstd,
    }
}

/// A writer that hashes and counts what passes to the inner writer.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what it yields.
struct HashingReader<R: Read> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that refuses to yield more than `limit` bytes (a decompression bomb ends in an
/// error that [`limit_error`] turns into [`Error::TooLarge`]).
pub(crate) struct BoundedReader<R: Read> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> BoundedReader<R> {
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        Self { inner, read: 0, limit }
    }
}

impl<R: Read> Read for BoundedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(LimitExceeded(self.limit)));
        }
        Ok(n)
    }
}

/// The error for an I/O error of a bounded read: [`Error::TooLarge`] when the bound was hit.
pub(crate) fn limit_error(what: &str, op: &str, e: io::Error) -> Error {
    if let Some(l) = e.get_ref().and_then(|i| i.downcast_ref::<LimitExceeded>()) {
        return Error::TooLarge {
            what: format!("uncompressed {what}"),
            size: l.0 + 1,
            limit: l.0,
        };
    }
    Error::io(what, op, e)
}

#[derive(Debug)]
struct LimitExceeded(u64);

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uncompressed layer is larger than the {} byte limit", self.0)
    }
}

impl std::error::Error for LimitExceeded {}

/// Convert one layer synchronously: decompress `input` (compressed as `src` says), check its
/// diffID, recompress to `target` into `out`. Returns the new descriptor.
pub fn convert_sync(
    src: &Descriptor,
    input: Box<dyn Read + Send + '_>,
    target: Target,
    out: &mut dyn Write,
    max_uncompressed: u64,
) -> Result<Descriptor> {
    let from = src
        .media_type
        .layer_compression()
        .ok_or_else(|| Error::InvalidManifest {
            what: format!("layer {}", src.digest),
            reason: format!(
                "media type {:?} is not a known layer type: cannot convert it",
                src.media_type.as_str()
            ),
        })?;
    let what = format!("layer {}", src.digest);
    let io_err = |op: &str, e: io::Error| -> Error { limit_error(&what, op, e) };
    let mut tar = HashingReader {
        inner: BoundedReader::new(decompressor(from, input)?, max_uncompressed),
        hasher: Hasher::new(),
    };
    let mut sink = HashingWriter {
        inner: out,
        hasher: Hasher::new(),
    };
    let mut annotations = src.annotations.clone();
    annotations.remove(ANNOTATION_STARGZ_TOC);
    annotations.remove(ANNOTATION_ESTARGZ_UNCOMPRESSED_SIZE);
    let new_diff = match target.compression {
        LayerCompression::Uncompressed => {
            io::copy(&mut tar, &mut sink).map_err(|e| io_err("decompress", e))?;
            None
        }
        LayerCompression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(&mut sink, flate2::Compression::new(gzip_level(target.level)?));
            io::copy(&mut tar, &mut enc).map_err(|e| io_err("recompress", e))?;
            enc.finish().map_err(|e| io_err("finish gzip", e))?;
            None
        }
        LayerCompression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(&mut sink, zstd_level(target.level)?)
                .map_err(|e| io_err("start zstd", e))?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            if threads > 1 {
                // Multithreaded zstd: worth it for large layers, harmless for small ones.
                let _ = enc.multithread(threads);
            }
            io::copy(&mut tar, &mut enc).map_err(|e| io_err("recompress", e))?;
            enc.finish().map_err(|e| io_err("finish zstd", e))?;
            None
        }
        LayerCompression::Estargz => {
            let level = gzip_level(target.level)?;
            let info = estargz::write_estargz(&mut tar, &mut sink, level)?;
            annotations.insert(ANNOTATION_STARGZ_TOC.into(), info.toc_digest.to_string());
            annotations.insert(
                ANNOTATION_ESTARGZ_UNCOMPRESSED_SIZE.into(),
                info.uncompressed_size.to_string(),
            );
            Some(info.diff_id)
        }
    };
    // Drain anything the encoder did not read (e.g. tar padding past the end-of-archive).
    io::copy(&mut tar, &mut io::sink()).map_err(|e| io_err("decompress", e))?;
    let (diff, _) = tar.hasher.finish();
    if let Some(want) = src.diff_id() {
        if want != diff {
            return Err(Error::InvalidManifest {
                what,
                reason: format!("uncompressed content has diffID {diff}, the descriptor says {want}"),
            });
        }
    }
    sink.flush().map_err(|e| io_err("flush", e))?;
    let (digest, size) = sink.hasher.finish();
    annotations.insert(ANNOTATION_UNCOMPRESSED.into(), new_diff.unwrap_or(diff).to_string());
    let mut desc = Descriptor::new(media_type_for(target.compression), digest, size);
    desc.annotations = annotations;
    Ok(desc)
}

/// A blocking `Read` over chunks sent from the async side.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes>>,
    buf: Bytes,
    failed: Arc<Mutex<Option<Error>>>,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match futures::executor::block_on(self.rx.next()) {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => {
                    let msg = e.to_string();
                    if let Ok(mut f) = self.failed.lock() {
                        *f = Some(e);
                    }
                    return Err(io::Error::other(msg));
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// Run `work` on its own OS thread with a blocking reader over `stream` (verified against
/// `src`): the bridge every codec pass (conversion, scanning) uses. A stream error (e.g. a
/// digest mismatch) wins over the error it caused in `work`.
pub async fn with_reader<T: Send + 'static>(
    src: &Descriptor,
    stream: BlobStream,
    work: impl FnOnce(Box<dyn Read + Send>) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (mut tx, rx) = mpsc::channel::<Result<Bytes>>(4);
    let failed = Arc::new(Mutex::new(None));
    let reader = ChannelReader {
        rx,
        buf: Bytes::new(),
        failed: failed.clone(),
    };
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("layer-{}", src.digest.short()))
        .spawn(move || {
            let _ = done_tx.send(work(Box::new(reader)));
        })
        .map_err(|e| Error::io("layer", "start thread", e))?;
    let feed = async {
        let mut verified = VerifiedStream::new(src, stream);
        while let Some(chunk) = verified.next().await {
            let is_err = chunk.is_err();
            if tx.send(chunk).await.is_err() || is_err {
                break;
            }
        }
        tx.close_channel();
    };
    let (_, done) = futures::join!(feed, done_rx);
    let result = done.map_err(|_| Error::io("layer", "thread", io::Error::other("layer thread ended")))?;
    match result {
        Ok(ok) => Ok(ok),
        Err(e) => Err(failed.lock().ok().and_then(|mut f| f.take()).unwrap_or(e)),
    }
}

/// Convert a layer read from `stream` (verified against `src`) to `target`, spooling the new
/// blob to scratch. Returns its descriptor and the scratch file to upload from.
pub async fn convert_stream(
    src: &Descriptor,
    stream: BlobStream,
    target: Target,
    scratch: &dyn Scratch,
    max_uncompressed: u64,
) -> Result<(Descriptor, Box<dyn ScratchFile>)> {
    let mut file = scratch.create()?;
    let src_owned = src.clone();
    with_reader(src, stream, move |reader| {
        let desc = convert_sync(&src_owned, reader, target, &mut file, max_uncompressed)?;
        Ok((desc, file))
    })
    .await
}

/// Read in chunks of this size when the caller wants a default.
pub const fn chunk_size() -> usize {
    CHUNK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        // A minimal ustar archive, enough for codec round trips.
        let mut out = Vec::new();
        for (name, data) in files {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..107].copy_from_slice(b"0000644");
            h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
            h[136..147].copy_from_slice(b"00000000000");
            h[156] = b'0';
            h[257..262].copy_from_slice(b"ustar");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|b| *b as u32).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn layer(tar: &[u8], c: LayerCompression) -> (Descriptor, Vec<u8>) {
        let mut out = Vec::new();
        let src = {
            let mut d = Descriptor::of_bytes(MediaType::OciLayer, tar);
            d.annotations
                .insert(ANNOTATION_UNCOMPRESSED.into(), d.digest.to_string());
            d
        };
        let desc = convert_sync(
            &src,
            Box::new(tar),
            Target {
                compression: c,
                level: None,
            },
            &mut out,
            1 << 30,
        )
        .unwrap();
        (desc, out)
    }

    #[test]
    fn gzip_zstd_round_trips_keep_the_diff_id() {
        let tar = tar_of(&[("a.txt", b"hello\n"), ("b.bin", &[7u8; 100_000])]);
        let diff = Digest::of_bytes(&tar);
        let (gz, gz_bytes) = layer(&tar, LayerCompression::Gzip);
        assert_eq!(gz.media_type, MediaType::OciLayerGzip);
        assert_eq!(gz.diff_id(), Some(diff.clone()));
        assert_eq!(gz.digest, Digest::of_bytes(&gz_bytes));
        assert_eq!(Compression::from_magic(&gz_bytes), Some(Compression::Gzip));
        // gzip -> zstd -> uncompressed: every step keeps the diffID.
        let mut zst = Vec::new();
        let zd = convert_sync(
            &gz,
            Box::new(&gz_bytes[..]),
            Target {
                compression: LayerCompression::Zstd,
                level: Some(19),
            },
            &mut zst,
            1 << 30,
        )
        .unwrap();
        assert_eq!(
            (zd.media_type.clone(), zd.diff_id()),
            (MediaType::OciLayerZstd, Some(diff.clone()))
        );
        assert_eq!(Compression::from_magic(&zst), Some(Compression::Zstd));
        let mut raw = Vec::new();
        let rd = convert_sync(
            &zd,
            Box::new(&zst[..]),
            Target {
                compression: LayerCompression::Uncompressed,
                level: None,
            },
            &mut raw,
            1 << 30,
        )
        .unwrap();
        assert_eq!(raw, tar);
        assert_eq!(rd.digest, diff);
    }

    #[test]
    fn wrong_diff_id_and_bombs_are_rejected() {
        let tar = tar_of(&[("z", &[0u8; 1 << 20])]);
        let (mut gz, gz_bytes) = layer(&tar, LayerCompression::Gzip);
        let mut out = Vec::new();
        let e = convert_sync(
            &gz,
            Box::new(&gz_bytes[..]),
            Target {
                compression: LayerCompression::Zstd,
                level: None,
            },
            &mut out,
            64 << 10,
        )
        .unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        gz.annotations
            .insert(ANNOTATION_UNCOMPRESSED.into(), Digest::of_bytes(b"other").to_string());
        let e = convert_sync(
            &gz,
            Box::new(&gz_bytes[..]),
            Target {
                compression: LayerCompression::Zstd,
                level: None,
            },
            &mut Vec::new(),
            1 << 30,
        )
        .unwrap_err();
        assert!(e.to_string().contains("diffID"), "{e}");
    }

    #[test]
    fn levels_follow_buildkit() {
        assert_eq!(gzip_level(None).unwrap(), 6);
        assert_eq!(gzip_level(Some(9)).unwrap(), 9);
        assert!(gzip_level(Some(10)).is_err());
        assert_eq!(
            [0, 2, 3, 5, 6, 9, 10, 22].map(|l| zstd_level(Some(l)).unwrap()),
            [1, 1, 3, 3, 7, 7, 11, 11]
        );
        assert!(zstd_level(Some(23)).is_err());
    }
}
