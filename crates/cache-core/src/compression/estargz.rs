//! eStargz (seekable gzip): writer and TOC reader, per stargz-snapshotter's `estargz` package.
//!
//! What BuildKit's `compression=estargz` produces (`util/compression/estargz.go`) is not
//! `estargz.Build` (no sorting, no landmark files) but `NewWriterLevel(level)` +
//! `AppendTarLossLess` + `Close`, which this module reproduces:
//!
//! * The input tar passes through **byte for byte** (headers, padding, end-of-archive blocks and
//!   anything after them), so the decompressed blob is the original tar followed by a second tar
//!   holding only `stargz.index.json` (ustar header as Go's `archive/tar` writes it, the TOC
//!   JSON, padding, two zero blocks).
//! * Gzip members: a new member starts at the first data byte of every regular file (and every
//!   4 MiB chunk of it); headers, padding and non-file entries go into whatever member is open.
//!   The TOC tar is its own member, followed by the 51-byte footer: an empty gzip member whose
//!   Extra field is `SG`, 22, `%016x` (the TOC member's offset) and `STARGZ`.
//! * The TOC is `json.MarshalIndent(toc, "", "\t")`: `{"version": 1, "entries": [...]}` with
//!   one entry per tar entry (and one `chunk` entry per further chunk), fields in Go's order with
//!   `omitempty`, Go's HTML-safe string escapes, `xattrs` values base64.
//!
//! The compressed bytes come from zlib-rs, not Go's `compress/flate`, so member sizes, hence the
//! `offset` values, hence the TOC digest and the diffID differ from BuildKit's for the same tar;
//! everything else (the TOC with BuildKit's offsets, the member boundaries, the decompressed
//! bytes around the TOC) is the same.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::tar::{self, Header, TarReader};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::gojson::{GoFormatter, GoTime};

mod read;

pub use read::{read_toc, read_toc_json};

/// Name of the TOC's tar entry.
pub const TOC_TAR_NAME: &str = "stargz.index.json";

/// Size of the eStargz footer.
pub const FOOTER_SIZE: usize = 51;

/// Size of the legacy stargz footer (read, never written).
pub const LEGACY_FOOTER_SIZE: usize = 47;

/// Regular files are split into gzip members of at most this many data bytes (4 MiB).
pub const CHUNK_SIZE: u64 = 4 << 20;

/// Largest TOC JSON [`read_toc`] accepts (64 MiB).
pub const MAX_TOC_SIZE: u64 = 64 << 20;

/// What writing an estargz layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstargzInfo {
    /// Digest of the TOC JSON (`containerd.io/snapshot/stargz/toc.digest`).
    pub toc_digest: Digest,
    /// Uncompressed size of the estargz blob (`io.containers.estargz.uncompressed-size`).
    pub uncompressed_size: u64,
    /// The new diffID: sha256 of the decompressed estargz blob.
    pub diff_id: Digest,
}

/// The table of contents (`stargz.index.json`), Go's `estargz.JTOC`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toc {
    /// Format version (1).
    pub version: u32,
    /// The entries, in blob order (`null` in the JSON when there are none, as Go writes it).
    #[serde(serialize_with = "entries_or_null", deserialize_with = "null_as_empty", default)]
    pub entries: Vec<TocEntry>,
}

/// One TOC entry, Go's `estargz.TOCEntry` (JSON names and order as its tags; zero values are
/// omitted; unknown fields are ignored when reading).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TocEntry {
    /// The tar entry's name, as stored (for `chunk` entries: the file's name).
    pub name: String,
    /// `dir`, `reg`, `symlink`, `hardlink`, `char`, `block`, `fifo` or `chunk`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Regular files: the file size.
    #[serde(skip_serializing_if = "is_zero")]
    pub size: i64,
    /// Modification time, UTC RFC 3339 rounded to the second; empty for zero or the epoch.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub modtime: String,
    /// Symlinks and hardlinks: the target.
    #[serde(rename = "linkName", skip_serializing_if = "String::is_empty")]
    pub link_name: String,
    /// The tar mode field.
    #[serde(skip_serializing_if = "is_zero")]
    pub mode: i64,
    /// Owner.
    #[serde(skip_serializing_if = "is_zero")]
    pub uid: i64,
    /// Group.
    #[serde(skip_serializing_if = "is_zero")]
    pub gid: i64,
    /// Owner name; only on the first entry of each uid that has one.
    #[serde(rename = "userName", skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    /// Group name; only on the first entry of each gid that has one.
    #[serde(rename = "groupName", skip_serializing_if = "String::is_empty")]
    pub group_name: String,
    /// Regular files and chunks with data: offset in the blob of the gzip member holding it.
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: i64,
    /// Uncompressed offset of the data inside that member (0 for BuildKit's layers).
    #[serde(rename = "innerOffset", skip_serializing_if = "is_zero")]
    pub inner_offset: i64,
    /// Character and block devices: major number.
    #[serde(rename = "devMajor", skip_serializing_if = "is_zero")]
    pub dev_major: i64,
    /// Character and block devices: minor number.
    #[serde(rename = "devMinor", skip_serializing_if = "is_zero")]
    pub dev_minor: i64,
    /// Extended attributes (`SCHILY.xattr.*` PAX records); base64 values in the JSON.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", with = "base64_map")]
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Regular files: `sha256:` digest of the whole content.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Chunks: offset of this chunk in the file.
    #[serde(rename = "chunkOffset", skip_serializing_if = "is_zero")]
    pub chunk_offset: i64,
    /// Chunk size when the chunk is a full one; 0 means "to the end of the file".
    #[serde(rename = "chunkSize", skip_serializing_if = "is_zero")]
    pub chunk_size: i64,
    /// `sha256:` digest of this chunk's bytes.
    #[serde(rename = "chunkDigest", skip_serializing_if = "String::is_empty")]
    pub chunk_digest: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn entries_or_null<S: Serializer>(v: &[TocEntry], s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        v.serialize(s)
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<TocEntry>, D::Error> {
    Ok(Option::<Vec<TocEntry>>::deserialize(d)?.unwrap_or_default())
}

mod base64_map {
    use std::collections::BTreeMap;

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            map.serialize_entry(k, &STANDARD.encode(v))?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let raw = Option::<BTreeMap<String, Option<String>>>::deserialize(d)?.unwrap_or_default();
        raw.into_iter()
            .map(|(k, v)| {
                let bytes = match v {
                    Some(s) => STANDARD.decode(s.as_bytes()).map_err(serde::de::Error::custom)?,
                    None => Vec::new(),
                };
                Ok((k, bytes))
            })
            .collect()
    }
}

/// `serde_json`'s pretty printer with a tab indent and Go's string escapes: together, Go's
/// `json.MarshalIndent(v, "", "\t")`.
struct GoIndentFormatter(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for GoIndentFormatter {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        GoFormatter.write_string_fragment(w, fragment)
    }
}

impl Toc {
    /// The TOC JSON exactly as stargz-snapshotter writes it (`json.MarshalIndent` with a tab).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(256 + 300 * self.entries.len());
        let fmt = GoIndentFormatter(serde_json::ser::PrettyFormatter::with_indent(b"\t"));
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.serialize(&mut ser).map_err(|source| Error::Json {
            what: "estargz TOC being written".into(),
            source,
        })?;
        Ok(out)
    }

    /// Parse TOC JSON (unknown fields are ignored).
    pub fn from_json(bytes: &[u8]) -> Result<Toc> {
        serde_json::from_slice(bytes).map_err(|source| Error::Json {
            what: "estargz TOC".into(),
            source,
        })
    }
}

/// Bytes as Go's `encoding/json` sees a string: each byte of invalid UTF-8 becomes U+FFFD.
fn go_string(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    let mut rest = b;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (ok, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(ok).unwrap_or_default());
                out.push('\u{fffd}');
                rest = &bad[1..];
            }
        }
    }
}

/// stargz-snapshotter's `formatModtime`: empty for the zero time or a Unix second of 0, else
/// UTC rounded (half up) to the second.
fn format_modtime((secs, nanos): (i64, u32)) -> String {
    if secs == 0 || GoTime::from_unix(secs, nanos).is_zero() {
        return String::new();
    }
    let secs = if nanos >= 500_000_000 {
        secs.saturating_add(1)
    } else {
        secs
    };
    GoTime::from_unix(secs, 0).to_string()
}

/// stargz-snapshotter's `cleanEntryName`: `path.Clean("/" + name)` without the leading slash.
fn clean_entry_name(name: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for p in name.split(|c| *c == b'/') {
        match p {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            _ => parts.push(p),
        }
    }
    parts.join(&b'/')
}

/// The writer's `nameIfChanged`: a user/group name is recorded only when it differs from the
/// last one recorded for that id.
fn name_if_changed(last: &mut BTreeMap<i64, Vec<u8>>, id: i64, name: &[u8]) -> String {
    if name.is_empty() || last.get(&id).map(Vec::as_slice) == Some(name) {
        return String::new();
    }
    last.insert(id, name.to_vec());
    go_string(name)
}

/// Successive gzip members written to `out`, counting compressed bytes (for offsets) and
/// hashing the uncompressed ones (for the diffID). Headers are Go's `compress/gzip` ones.
struct Members<'a> {
    out: &'a mut dyn Write,
    written: u64,
    level: u32,
    comp: Compress,
    crc: Crc,
    open: bool,
    buf: Vec<u8>,
    diff: Hasher,
}

impl<'a> Members<'a> {
    fn new(out: &'a mut dyn Write, level: u32) -> Self {
        Members {
            out,
            written: 0,
            level,
            comp: Compress::new(Compression::new(level), false),
            crc: Crc::new(),
            open: false,
            buf: Vec::with_capacity(64 << 10),
            diff: Hasher::new(),
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn emit_buf(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        Ok(())
    }

    /// Start a member unless one is open.
    fn open(&mut self) -> io::Result<()> {
        if self.open {
            return Ok(());
        }
        // Go: XFL 2 for BestCompression, 4 for BestSpeed; OS 255 (unknown); MTIME 0.
        let xfl = match self.level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        self.emit(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff])?;
        self.comp.reset();
        self.crc.reset();
        self.open = true;
        Ok(())
    }

    /// Compress `data` into the open member (opening one if needed).
    fn write_data(&mut self, mut data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.open()?;
        self.crc.update(data);
        self.diff.update(data);
        while !data.is_empty() {
            let before = self.comp.total_in();
            self.buf.clear();
            self.comp
                .compress_vec(data, &mut self.buf, FlushCompress::None)
                .map_err(io::Error::other)?;
            let used = (self.comp.total_in() - before) as usize;
            data = &data[used.min(data.len())..];
            if used == 0 && self.buf.is_empty() {
                return Err(io::Error::other("deflate made no progress"));
            }
            self.emit_buf()?;
        }
        Ok(())
    }

    /// End the open member, if any (final block, CRC-32, size).
    fn close(&mut self) -> io::Result<()> {
        if !self.open {
            return Ok(());
        }
        loop {
            self.buf.clear();
            let status = self
                .comp
                .compress_vec(&[], &mut self.buf, FlushCompress::Finish)
                .map_err(io::Error::other)?;
            if status != Status::StreamEnd && self.buf.is_empty() {
                return Err(io::Error::other("deflate could not finish the stream"));
            }
            self.emit_buf()?;
            if status == Status::StreamEnd {
                break;
            }
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.emit(&trailer)?;
        self.open = false;
        Ok(())
    }
}

/// Raw tar bytes go into the open member (opening one only when there is something to write),
/// as the Go writer's `currentCompressionWriter` does.
impl Write for Members<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_data(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The 51-byte footer: an empty gzip member whose Extra field carries the TOC offset.
fn footer(toc_offset: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(FOOTER_SIZE);
    b.extend_from_slice(&[0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff]);
    b.extend_from_slice(&26u16.to_le_bytes());
    b.extend_from_slice(b"SG");
    b.extend_from_slice(&22u16.to_le_bytes());
    b.extend_from_slice(format!("{toc_offset:016x}STARGZ").as_bytes());
    b.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    b.extend_from_slice(&[0; 8]);
    b
}

/// Map an I/O error, keeping the conversion's size limit as [`Error::TooLarge`].
fn io_error(operation: &str, e: io::Error) -> Error {
    if let Some(l) = e.get_ref().and_then(|i| i.downcast_ref::<super::LimitExceeded>()) {
        return Error::TooLarge {
            what: "uncompressed layer".into(),
            size: l.0 + 1,
            limit: l.0,
        };
    }
    Error::io("estargz", operation, e)
}

fn format_error(operation: &str, reason: String) -> Error {
    Error::io("estargz", operation, io::Error::new(io::ErrorKind::InvalidData, reason))
}

/// The TOC entry for a tar header (the writer's `appendTar`, before data).
fn toc_entry(h: &Header, users: &mut BTreeMap<i64, Vec<u8>>, groups: &mut BTreeMap<i64, Vec<u8>>) -> Result<TocEntry> {
    let xattrs = h
        .pax
        .iter()
        .filter_map(|(k, v)| Some((go_string(k.strip_prefix(b"SCHILY.xattr.")?), v.clone())))
        .collect();
    let mut ent = TocEntry {
        name: go_string(&h.name),
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        user_name: name_if_changed(users, h.uid, &h.uname),
        group_name: name_if_changed(groups, h.gid, &h.gname),
        modtime: format_modtime(h.mtime),
        xattrs,
        ..TocEntry::default()
    };
    let kind = match h.typeflag {
        tar::TYPE_LINK => {
            ent.link_name = go_string(&h.linkname);
            "hardlink"
        }
        tar::TYPE_SYMLINK => {
            ent.link_name = go_string(&h.linkname);
            "symlink"
        }
        tar::TYPE_DIR => "dir",
        tar::TYPE_REG => {
            ent.size = h.size;
            "reg"
        }
        tar::TYPE_CHAR | tar::TYPE_BLOCK => {
            ent.dev_major = h.devmajor;
            ent.dev_minor = h.devminor;
            if h.typeflag == tar::TYPE_CHAR {
                "char"
            } else {
                "block"
            }
        }
        tar::TYPE_FIFO => "fifo",
        other => {
            return Err(format_error(
                "convert the layer tar",
                format!(
                    "unsupported tar entry type {:?} for {:?} (BuildKit's estargz writer refuses it too)",
                    other as char, ent.name
                ),
            ))
        }
    };
    ent.kind = kind.into();
    Ok(ent)
}

/// Convert an uncompressed tar (read from `tar`) into an estargz blob written to `out`, gzip
/// level `level` (0-9), as BuildKit's estargz compressor does (see the module docs).
///
/// Streams: memory holds the TOC and small buffers, never a file or the layer. A tar that
/// already holds `stargz.index.json`, or entries BuildKit's writer refuses (global PAX headers,
/// GNU sparse files, other unknown types), is an error.
pub fn write_estargz(tar: &mut dyn Read, out: &mut dyn Write, level: u32) -> Result<EstargzInfo> {
    if level > 9 {
        return Err(Error::InvalidValue {
            attribute: "compression-level".into(),
            value: level.to_string(),
            allowed: "estargz takes gzip levels 0..9".into(),
        });
    }
    let read_op = "read the layer tar";
    let write_op = "write the estargz blob";
    let mut gz = Members::new(out, level);
    let mut tr = TarReader::new(BufReader::with_capacity(128 << 10, tar));
    let mut entries: Vec<TocEntry> = Vec::new();
    let (mut users, mut groups) = (BTreeMap::new(), BTreeMap::new());
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // Everything up to and including the next header goes into the open member.
        let Some(h) = tr.next(&mut gz).map_err(|e| io_error(read_op, e))? else {
            break;
        };
        if clean_entry_name(&h.name) == TOC_TAR_NAME.as_bytes() {
            return Err(format_error(
                read_op,
                "the layer already holds stargz.index.json: decompress it and drop the TOC first".into(),
            ));
        }
        let mut ent = toc_entry(&h, &mut users, &mut groups)?;
        if h.typeflag != tar::TYPE_REG {
            entries.push(ent);
            continue;
        }
        let reg_index = entries.len();
        let mut file_digest = Hasher::new();
        let total = h.size as u64;
        let mut done = 0u64;
        while done < total {
            let remain = total - done;
            let chunk = if remain < CHUNK_SIZE {
                remain
            } else {
                ent.chunk_size = CHUNK_SIZE as i64;
                CHUNK_SIZE
            };
            // Every chunk starts a new gzip member; its offset is where that member starts.
            gz.close().map_err(|e| io_error(write_op, e))?;
            ent.offset = gz.written as i64;
            ent.chunk_offset = done as i64;
            gz.open().map_err(|e| io_error(write_op, e))?;
            let mut chunk_digest = Hasher::new();
            let mut left = chunk;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = tr.read_data(&mut buf[..want]).map_err(|e| io_error(read_op, e))?;
                chunk_digest.update(&buf[..n]);
                file_digest.update(&buf[..n]);
                gz.write_data(&buf[..n]).map_err(|e| io_error(write_op, e))?;
                left -= n as u64;
            }
            ent.chunk_digest = chunk_digest.finish().0.to_string();
            entries.push(ent);
            done += chunk;
            ent = TocEntry {
                name: go_string(&h.name),
                kind: "chunk".into(),
                ..TocEntry::default()
            };
        }
        if total == 0 {
            entries.push(ent);
        }
        if let Some(reg) = entries.get_mut(reg_index) {
            reg.digest = file_digest.finish().0.to_string();
        }
    }
    // Whatever follows the end-of-archive blocks is kept too.
    let mut rest = tr.into_inner();
    io::copy(&mut rest, &mut gz).map_err(|e| io_error(read_op, e))?;
    gz.close().map_err(|e| io_error(write_op, e))?;

    let toc_offset = gz.written;
    let json = Toc { version: 1, entries }.to_json()?;
    let header = tar::go_reg_header(TOC_TAR_NAME, json.len() as u64).map_err(|e| io_error(write_op, e))?;
    let pad = (tar::BLOCK - json.len() % tar::BLOCK) % tar::BLOCK;
    let toc_tar = [&header[..], &json, &[0u8; tar::BLOCK][..pad], &[0u8; 2 * tar::BLOCK]];
    for part in toc_tar {
        gz.write_data(part).map_err(|e| io_error(write_op, e))?;
    }
    gz.close().map_err(|e| io_error(write_op, e))?;
    gz.emit(&footer(toc_offset)).map_err(|e| io_error(write_op, e))?;
    gz.out.flush().map_err(|e| io_error(write_op, e))?;
    let (diff_id, uncompressed_size) = gz.diff.finish();
    Ok(EstargzInfo {
        toc_digest: Digest::of_bytes(&json),
        uncompressed_size,
        diff_id,
    })
}

#[cfg(test)]
mod tests {
    use super::read::footer_toc_offset;
    use super::*;

    #[test]
    fn names_and_times_follow_go() {
        assert_eq!(clean_entry_name(b"./a//b/../c/"), b"a/c");
        assert_eq!(clean_entry_name(b"/stargz.index.json"), TOC_TAR_NAME.as_bytes());
        assert_eq!(clean_entry_name(b"../x"), b"x");
        assert_eq!(go_string(b"a\xffb\xf0\x9f\x98"), "a\u{fffd}b\u{fffd}\u{fffd}\u{fffd}");
        assert_eq!(format_modtime((0, 900_000_000)), "");
        assert_eq!(format_modtime((-62_135_596_800, 0)), "");
        assert_eq!(format_modtime((1_704_067_199, 500_000_000)), "2024-01-01T00:00:00Z");
        assert_eq!(format_modtime((1_704_067_200, 499_999_999)), "2024-01-01T00:00:00Z");
        assert_eq!(format_modtime((-1, 0)), "1969-12-31T23:59:59Z");
        let mut last = BTreeMap::new();
        assert_eq!(name_if_changed(&mut last, 0, b"root"), "root");
        assert_eq!(name_if_changed(&mut last, 0, b"root"), "");
        assert_eq!(name_if_changed(&mut last, 0, b""), "");
        assert_eq!(name_if_changed(&mut last, 0, b"admin"), "admin");
    }

    #[test]
    fn footer_is_51_bytes_and_parses() {
        let f = footer(0xa82);
        assert_eq!(f.len(), FOOTER_SIZE);
        assert_eq!(&f[16..32], b"0000000000000a82");
        assert!(footer_toc_offset(&f).is_err(), "offset past the payload");
        assert_eq!(footer_toc_offset(&footer(0)).unwrap(), (0, FOOTER_SIZE));
        let mut blob = vec![0u8; 0xa82];
        blob.extend_from_slice(&f);
        assert_eq!(footer_toc_offset(&blob).unwrap(), (0xa82, FOOTER_SIZE));
    }

    #[test]
    fn empty_toc_is_null_like_go() {
        let toc = Toc {
            version: 1,
            entries: vec![],
        };
        assert_eq!(toc.to_json().unwrap(), b"{\n\t\"version\": 1,\n\t\"entries\": null\n}");
        assert_eq!(Toc::from_json(&toc.to_json().unwrap()).unwrap(), toc);
    }
}
