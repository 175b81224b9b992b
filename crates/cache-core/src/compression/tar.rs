//! A small streaming tar reader with Go `archive/tar` semantics (as vendored by BuildKit through
//! `github.com/vbatts/tar-split`), plus the one header eStargz writes.
//!
//! Reading is lossless: every byte the reader consumes that is not an entry's data (padding,
//! PAX and GNU long-name records, headers, the end-of-archive blocks) is handed to a caller-given
//! sink, in stream order, exactly as tar-split's `RawAccounting` does. Entry data is read with
//! [`TarReader::read_data`]; whatever of it the caller leaves unread goes to the sink on the next
//! [`TarReader::next`]. Nothing is held in memory beyond one PAX or long-name record (bounded).
//!
//! Supported: v7, ustar (with prefix), star, GNU (long names `L`/`K`, atime/ctime), PAX
//! extended headers (`x`, and `g` returned as an entry like Go does), base-256 numbers. Unknown
//! type flags pass through as entries with their data. GNU sparse files are refused: Go would
//! expand them while reading, which cannot be done losslessly.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

/// Tar block size.
pub(crate) const BLOCK: usize = 512;

/// Largest PAX or GNU long-name record accepted (Go's own limit is 1 MiB).
const MAX_SPECIAL: u64 = 16 << 20;

/// Type flags.
pub(crate) const TYPE_REG: u8 = b'0';
pub(crate) const TYPE_REG_A: u8 = 0;
pub(crate) const TYPE_LINK: u8 = b'1';
pub(crate) const TYPE_SYMLINK: u8 = b'2';
pub(crate) const TYPE_CHAR: u8 = b'3';
pub(crate) const TYPE_BLOCK: u8 = b'4';
pub(crate) const TYPE_DIR: u8 = b'5';
pub(crate) const TYPE_FIFO: u8 = b'6';
const TYPE_PAX: u8 = b'x';
const TYPE_PAX_GLOBAL: u8 = b'g';
const TYPE_GNU_LONG_NAME: u8 = b'L';
const TYPE_GNU_LONG_LINK: u8 = b'K';
const TYPE_GNU_SPARSE: u8 = b'S';

/// One entry's header, after PAX records and GNU long names were applied (Go's `tar.Header`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Header {
    /// Type flag (`TYPE_REG_A` is already mapped to `TYPE_REG` or `TYPE_DIR`).
    pub typeflag: u8,
    /// Path, as bytes.
    pub name: Vec<u8>,
    /// Link target, as bytes.
    pub linkname: Vec<u8>,
    /// Logical data size.
    pub size: i64,
    /// Mode field, as stored.
    pub mode: i64,
    /// Owner.
    pub uid: i64,
    /// Group.
    pub gid: i64,
    /// Modification time: Unix seconds and nanoseconds (0..1e9).
    pub mtime: (i64, u32),
    /// Owner name.
    pub uname: Vec<u8>,
    /// Group name.
    pub gname: Vec<u8>,
    /// Device major number.
    pub devmajor: i64,
    /// Device minor number.
    pub devminor: i64,
    /// PAX records of the `x` (or `g`) header that applied to this entry.
    pub pax: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Go's `isHeaderOnlyType`: these entries never have a data section, whatever their size says.
fn header_only(typeflag: u8) -> bool {
    matches!(
        typeflag,
        TYPE_LINK | TYPE_SYMLINK | TYPE_CHAR | TYPE_BLOCK | TYPE_DIR | TYPE_FIFO
    )
}

fn padding(n: u64) -> u64 {
    (BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64
}

/// A streaming tar reader; see the module docs.
pub(crate) struct TarReader<R: Read> {
    r: R,
    /// Bytes consumed from `r` so far (for error messages).
    pos: u64,
    /// Unread data bytes of the current entry.
    remaining: u64,
    /// Padding after the current entry's data.
    pad: u64,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: Read> TarReader<R> {
    /// Read a tar stream from `r` (buffer it: reads are small).
    pub(crate) fn new(r: R) -> Self {
        TarReader {
            r,
            pos: 0,
            remaining: 0,
            pad: 0,
        }
    }

    /// The underlying reader, positioned after what was consumed.
    pub(crate) fn into_inner(self) -> R {
        self.r
    }

    /// Read as much as possible into `buf` (short only at end of input).
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.pos += n as u64;
        Ok(n)
    }

    /// Copy exactly `n` bytes to `raw`; end of input is an error.
    fn copy_raw(&mut self, mut n: u64, raw: &mut dyn Write, what: &str) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.fill(&mut buf[..want])?;
            raw.write_all(&buf[..got])?;
            if got < want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("tar stream ends inside {what} (at byte {})", self.pos),
                ));
            }
            n -= got as u64;
        }
        Ok(())
    }

    /// Read a special record (PAX, long name) of `n` bytes, copying it to `raw` too.
    fn special(&mut self, n: u64, raw: &mut dyn Write, what: &str) -> io::Result<Vec<u8>> {
        if n > MAX_SPECIAL {
            return Err(invalid(format!(
                "{what} of {n} bytes is larger than the {MAX_SPECIAL} byte limit (at byte {})",
                self.pos
            )));
        }
        let mut data = Vec::new();
        self.copy_raw(n, &mut data, what)?;
        raw.write_all(&data)?;
        self.remaining = 0;
        Ok(data)
    }

    /// Read the current entry's data; returns 0 once all of it was read.
    pub(crate) fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = self.remaining.min(buf.len() as u64) as usize;
        let got = loop {
            match self.r.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("tar stream ends inside a file's data (at byte {})", self.pos),
            ));
        }
        self.pos += got as u64;
        self.remaining -= got as u64;
        Ok(got)
    }

    /// The next header block, after the rest of the previous entry's data and its padding;
    /// `None` at the end of the archive: end of input (also inside the padding, as in Go) or
    /// two zero blocks.
    fn header_block(&mut self, raw: &mut dyn Write) -> io::Result<Option<[u8; BLOCK]>> {
        let left = std::mem::take(&mut self.remaining);
        self.copy_raw(left, raw, "an entry's data")?;
        let pad = std::mem::take(&mut self.pad) as usize;
        let mut padding = [0u8; BLOCK];
        let got = self.fill(&mut padding[..pad])?;
        raw.write_all(&padding[..got])?;
        if got < pad {
            return Ok(None);
        }
        let Some(block) = self.full_block(raw)? else {
            return Ok(None);
        };
        if block.iter().any(|b| *b != 0) {
            return Ok(Some(block));
        }
        match self.full_block(raw)? {
            None => Ok(None),
            Some(next) if next.iter().all(|b| *b == 0) => Ok(None),
            Some(_) => Err(invalid(format!(
                "invalid tar header: a zero block followed by a non-zero one (at byte {})",
                self.pos - BLOCK as u64
            ))),
        }
    }

    /// One whole block, copied to `raw`; `None` at the end of input, an error inside a block.
    fn full_block(&mut self, raw: &mut dyn Write) -> io::Result<Option<[u8; BLOCK]>> {
        let mut block = [0u8; BLOCK];
        let got = self.fill(&mut block)?;
        if got == 0 {
            return Ok(None);
        }
        if got < BLOCK {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("tar stream ends inside a header (at byte {})", self.pos),
            ));
        }
        raw.write_all(&block)?;
        Ok(Some(block))
    }

    /// Advance to the next entry, writing every non-data byte consumed to `raw` (including
    /// what is left of the previous entry's data). `None` at the end of the archive, after
    /// which `raw` has received the end-of-archive blocks; trailing bytes stay in the reader.
    pub(crate) fn next(&mut self, raw: &mut dyn Write) -> io::Result<Option<Header>> {
        let mut pax: Option<BTreeMap<Vec<u8>, Vec<u8>>> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let Some(block) = self.header_block(raw)? else {
                return Ok(None);
            };
            let at = self.pos - BLOCK as u64;
            let mut hdr = parse_header(&block).map_err(|e| invalid(format!("invalid tar header at byte {at}: {e}")))?;
            self.set_data(&hdr, at)?;
            match hdr.typeflag {
                TYPE_PAX | TYPE_PAX_GLOBAL => {
                    let data = self.special(self.remaining, raw, "a PAX header")?;
                    let records =
                        parse_pax(&data).map_err(|e| invalid(format!("invalid PAX header at byte {at}: {e}")))?;
                    if hdr.typeflag == TYPE_PAX_GLOBAL {
                        merge_pax(&mut hdr, &records)
                            .map_err(|e| invalid(format!("invalid PAX header at byte {at}: {e}")))?;
                        return Ok(Some(Header {
                            typeflag: hdr.typeflag,
                            name: hdr.name,
                            pax: records,
                            ..Header::default()
                        }));
                    }
                    pax = Some(records);
                }
                TYPE_GNU_LONG_NAME | TYPE_GNU_LONG_LINK => {
                    let data = self.special(self.remaining, raw, "a GNU long name")?;
                    let s = c_string(&data).to_vec();
                    if hdr.typeflag == TYPE_GNU_LONG_NAME {
                        long_name = Some(s);
                    } else {
                        long_link = Some(s);
                    }
                }
                _ => {
                    if let Some(p) = &pax {
                        merge_pax(&mut hdr, p).map_err(|e| invalid(format!("invalid PAX header at byte {at}: {e}")))?;
                        hdr.pax = p.clone();
                    }
                    if let Some(n) = long_name.filter(|n| !n.is_empty()) {
                        hdr.name = n;
                    }
                    if let Some(l) = long_link.filter(|l| !l.is_empty()) {
                        hdr.linkname = l;
                    }
                    if hdr.typeflag == TYPE_REG_A {
                        hdr.typeflag = if hdr.name.ends_with(b"/") { TYPE_DIR } else { TYPE_REG };
                    }
                    self.set_data(&hdr, at)?;
                    if hdr.typeflag == TYPE_GNU_SPARSE || is_pax_sparse(&hdr.pax) {
                        return Err(invalid(format!(
                            "GNU sparse file {:?} (at byte {at}) is not supported",
                            String::from_utf8_lossy(&hdr.name)
                        )));
                    }
                    return Ok(Some(hdr));
                }
            }
        }
    }

    /// Go's `handleRegularFile`: how much data follows this header.
    fn set_data(&mut self, hdr: &Header, at: u64) -> io::Result<()> {
        let n = if header_only(hdr.typeflag) { 0 } else { hdr.size };
        if n < 0 {
            return Err(invalid(format!("invalid tar header at byte {at}: negative size {n}")));
        }
        self.remaining = n as u64;
        self.pad = padding(n as u64);
        Ok(())
    }
}

/// Go's `readGNUSparsePAXHeaders` decision: whether PAX records describe a GNU sparse file.
fn is_pax_sparse(pax: &BTreeMap<Vec<u8>, Vec<u8>>) -> bool {
    let get = |k: &str| pax.get(k.as_bytes()).map(Vec::as_slice).unwrap_or_default();
    let (major, minor) = (get("GNU.sparse.major"), get("GNU.sparse.minor"));
    match (major, minor) {
        (b"0", b"0" | b"1") | (b"1", b"0") => true,
        _ if !major.is_empty() || !minor.is_empty() => false,
        _ => !get("GNU.sparse.map").is_empty(),
    }
}

/// Bytes up to the first NUL.
fn c_string(b: &[u8]) -> &[u8] {
    match b.iter().position(|c| *c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// Go's `parseNumeric`: base-256 when the high bit is set, else octal.
fn parse_numeric(b: &[u8]) -> Result<i64, String> {
    if let Some(first) = b.first().filter(|f| *f & 0x80 != 0) {
        let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return Err("base-256 number overflows".into());
            }
            x = (x << 8) | c as u64;
        }
        if x >> 63 > 0 {
            return Err("base-256 number overflows".into());
        }
        return Ok(if inv == 0xff { !(x as i64) } else { x as i64 });
    }
    parse_octal(b)
}

fn parse_octal(b: &[u8]) -> Result<i64, String> {
    let start = b.iter().position(|c| *c != b' ' && *c != 0).unwrap_or(b.len());
    let end = b.iter().rposition(|c| *c != b' ' && *c != 0).map_or(start, |i| i + 1);
    let s = c_string(&b[start..end.max(start)]);
    if s.is_empty() {
        return Ok(0);
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 8).ok())
        .map(|x| x as i64)
        .ok_or_else(|| format!("invalid octal number {:?}", String::from_utf8_lossy(s)))
}

/// Sum of the header bytes with the checksum field read as spaces: (unsigned, signed).
fn checksums(b: &[u8; BLOCK]) -> (i64, i64) {
    let (mut u, mut s) = (0i64, 0i64);
    for (i, c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { *c };
        u += c as i64;
        s += c as i8 as i64;
    }
    (u, s)
}

#[derive(PartialEq)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

/// Go's `readHeader` for one (non-zero) block.
fn parse_header(b: &[u8; BLOCK]) -> Result<Header, String> {
    let stored = parse_octal(&b[148..156]).map_err(|_| "bad checksum field".to_string())?;
    let (u, s) = checksums(b);
    if stored != u && stored != s {
        return Err(format!(
            "checksum {stored:o} does not match the header (expected {u:o})"
        ));
    }
    let format = match (&b[257..263], &b[263..265], &b[508..512]) {
        (b"ustar\0", _, b"tar\0") => Format::Star,
        (b"ustar\0", _, _) => Format::Ustar,
        (b"ustar ", b" \0", _) => Format::Gnu,
        _ => Format::V7,
    };
    let mut h = Header {
        typeflag: b[156],
        name: c_string(&b[0..100]).to_vec(),
        linkname: c_string(&b[157..257]).to_vec(),
        size: parse_numeric(&b[124..136])?,
        mode: parse_numeric(&b[100..108])?,
        uid: parse_numeric(&b[108..116])?,
        gid: parse_numeric(&b[116..124])?,
        mtime: (parse_numeric(&b[136..148])?, 0),
        ..Header::default()
    };
    if format != Format::V7 {
        h.uname = c_string(&b[265..297]).to_vec();
        h.gname = c_string(&b[297..329]).to_vec();
        h.devmajor = parse_numeric(&b[329..337])?;
        h.devminor = parse_numeric(&b[337..345])?;
        let prefix: &[u8] = match format {
            Format::Ustar => c_string(&b[345..500]),
            Format::Star => c_string(&b[345..476]),
            _ => {
                // GNU: atime/ctime live where ustar's prefix is. Go falls back to reading a
                // prefix when they do not parse (files from pre-1.8 Go writers).
                let times_ok = [&b[345..357], &b[357..369]]
                    .iter()
                    .all(|t| t[0] == 0 || parse_numeric(t).is_ok());
                let p = c_string(&b[345..500]);
                if !times_ok && p.is_ascii() {
                    p
                } else {
                    &[]
                }
            }
        };
        if !prefix.is_empty() {
            let mut name = prefix.to_vec();
            name.push(b'/');
            name.extend_from_slice(&h.name);
            h.name = name;
        }
    }
    Ok(h)
}

/// Go's `parsePAX`: `"%d %s=%s\n"` records; GNU sparse 0.0 offset/numbytes pairs become a map.
fn parse_pax(mut buf: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    let mut sparse: Vec<&[u8]> = Vec::new();
    while !buf.is_empty() {
        let sp = buf.iter().position(|c| *c == b' ').ok_or("record without a length")?;
        let n: usize = std::str::from_utf8(&buf[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("bad record length")?;
        if n < 5 || n > buf.len() || n <= sp + 1 {
            return Err("bad record length".into());
        }
        let (rec, rest) = buf.split_at(n);
        buf = rest;
        let rec = &rec[sp + 1..];
        let rec = rec.strip_suffix(b"\n").ok_or("record does not end in a newline")?;
        let eq = rec.iter().position(|c| *c == b'=').ok_or("record without '='")?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        let nul_ok = match k {
            b"path" | b"linkpath" | b"uname" | b"gname" => !v.contains(&0),
            _ => !k.contains(&0),
        };
        if k.is_empty() || !nul_ok {
            return Err("invalid record".into());
        }
        match k {
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                let want: &[u8] = if sparse.len().is_multiple_of(2) {
                    b"GNU.sparse.offset"
                } else {
                    b"GNU.sparse.numbytes"
                };
                if k != want || v.contains(&b',') {
                    return Err("bad GNU sparse map".into());
                }
                sparse.push(v);
            }
            _ => {
                out.insert(k.to_vec(), v.to_vec());
            }
        }
    }
    if !sparse.is_empty() {
        out.insert(b"GNU.sparse.map".to_vec(), sparse.join(&b","[..]));
    }
    Ok(out)
}

/// Go's `parsePAXTime`: `secs[.frac]`, normalised to (secs, 0..1e9 nanos).
fn parse_pax_time(v: &[u8]) -> Result<(i64, u32), String> {
    let bad = || format!("bad time {:?}", String::from_utf8_lossy(v));
    let s = std::str::from_utf8(v).map_err(|_| bad())?;
    let (ss, sn) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = ss.parse().map_err(|_| bad())?;
    if sn.is_empty() {
        return Ok((secs, 0));
    }
    if !sn.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let digits: String = sn.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: i64 = digits.parse().map_err(|_| bad())?;
    let nanos = if ss.starts_with('-') { -nanos } else { nanos };
    // time.Unix(secs, nanos) normalises the nanoseconds into [0, 1e9).
    let total = secs as i128 * 1_000_000_000 + nanos as i128;
    let s = total.div_euclid(1_000_000_000);
    let n = total.rem_euclid(1_000_000_000);
    Ok((i64::try_from(s).map_err(|_| bad())?, n as u32))
}

/// Go's `mergePAX`: records override header fields (empty values keep the header's).
fn merge_pax(h: &mut Header, pax: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), String> {
    let int = |v: &[u8]| -> Result<i64, String> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad number {:?}", String::from_utf8_lossy(v)))
    };
    for (k, v) in pax {
        if v.is_empty() {
            continue;
        }
        match k.as_slice() {
            b"path" => h.name = v.clone(),
            b"linkpath" => h.linkname = v.clone(),
            b"uname" => h.uname = v.clone(),
            b"gname" => h.gname = v.clone(),
            b"uid" => h.uid = int(v)?,
            b"gid" => h.gid = int(v)?,
            b"size" => h.size = int(v)?,
            b"mtime" => h.mtime = parse_pax_time(v)?,
            b"atime" | b"ctime" => {
                parse_pax_time(v)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The header Go's `archive/tar` writes for `Header{Typeflag: '0', Name: name, Size: size}`
/// (ustar, everything else zero), as eStargz does for its TOC entry.
pub(crate) fn go_reg_header(name: &str, size: u64) -> io::Result<[u8; BLOCK]> {
    if name.len() > 100 || size >= 1 << 33 {
        return Err(invalid(format!(
            "cannot write a plain ustar header for {name:?} of {size} bytes"
        )));
    }
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..108].copy_from_slice(b"0000000\0"); // mode
    b[108..116].copy_from_slice(b"0000000\0"); // uid
    b[116..124].copy_from_slice(b"0000000\0"); // gid
    b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    b[136..148].copy_from_slice(b"00000000000\0"); // mtime
    b[156] = TYPE_REG;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[329..337].copy_from_slice(b"0000000\0"); // devmajor
    b[337..345].copy_from_slice(b"0000000\0"); // devminor
    b[148..156].copy_from_slice(b"        ");
    let (sum, _) = checksums(&b);
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_go() {
        assert_eq!(parse_numeric(b"0000644\0").unwrap(), 0o644);
        assert_eq!(parse_numeric(b"  17 \0").unwrap(), 0o17);
        assert_eq!(parse_numeric(b"\0\0\0\0").unwrap(), 0);
        assert!(parse_numeric(b"0009\0").is_err());
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap(), 256);
        assert_eq!(parse_numeric(&[0xff; 8]).unwrap(), -1);
        assert_eq!(parse_pax_time(b"1.5").unwrap(), (1, 500_000_000));
        assert_eq!(parse_pax_time(b"-1.5").unwrap(), (-2, 500_000_000));
        assert_eq!(parse_pax_time(b"7.1234567891").unwrap(), (7, 123_456_789));
        assert!(parse_pax_time(b"1.x").is_err());
    }

    #[test]
    fn pax_records() {
        let p = parse_pax(b"30 mtime=1700000000.123456789\n20 path=a/b/c/d/e/f\n").unwrap();
        assert_eq!(p[&b"path"[..]], b"a/b/c/d/e/f");
        assert!(parse_pax(b"3 a=\n").is_err());
        assert!(parse_pax(b"10 path=ab").is_err());
    }

    #[test]
    fn go_header_round_trips() {
        let h = go_reg_header("stargz.index.json", 349).unwrap();
        let p = parse_header(&h).unwrap();
        assert_eq!(
            (p.name.as_slice(), p.size, p.typeflag),
            (&b"stargz.index.json"[..], 349, TYPE_REG)
        );
        assert_eq!(&h[148..156], b"012505\0 ");
    }
}
