//! A streaming tar reader (ustar, GNU long names, PAX path records): just what scanning layers
//! needs. Entries are visited in order; content is read through a bounded reader and the rest
//! skipped, so nothing is unpacked to disk or held whole in memory.

use std::io::{self, Read};

/// One tar entry's header facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the layer (PAX `path` / GNU long name when present).
    pub path: String,
    /// Entry type byte (`b'0'` regular, `b'5'` directory, `b'2'` symlink, …).
    pub kind: u8,
    /// Content size.
    pub size: u64,
}

impl Entry {
    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        matches!(self.kind, b'0' | 0 | b'7')
    }
}

fn octal(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256 for large values.
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = v.checked_mul(256).ok_or_else(|| bad("size field overflows"))? + *b as u64;
        }
        return Ok(v);
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect::<String>()
        .trim()
        .to_owned();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(&text, 8).map_err(|_| bad("size field is not octal"))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("invalid tar: {msg}"))
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn skip(r: &mut dyn Read, mut n: u64) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    while n > 0 {
        let want = n.min(buf.len() as u64) as usize;
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "tar entry truncated"));
        }
        n -= got as u64;
    }
    Ok(())
}

fn read_small(r: &mut dyn Read, size: u64, limit: u64) -> io::Result<Vec<u8>> {
    if size > limit {
        return Err(bad("metadata record too large"));
    }
    let mut v = vec![0u8; size as usize];
    r.read_exact(&mut v)?;
    skip(r, (512 - size % 512) % 512)?;
    Ok(v)
}

/// Visit every entry of the tar read from `r`. `visit` gets the entry and a reader limited to
/// its content; whatever it does not read is skipped.
pub fn for_each_entry(
    r: &mut dyn Read,
    mut visit: impl FnMut(&Entry, &mut dyn Read) -> io::Result<()>,
) -> io::Result<()> {
    let mut long_name: Option<String> = None;
    let mut pax_path: Option<String> = None;
    let mut header = [0u8; 512];
    loop {
        match r.read_exact(&mut header) {
            Ok(()) => {}
            // Some writers omit the two zero blocks.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        if header.iter().all(|b| *b == 0) {
            return Ok(());
        }
        let size = octal(&header[124..136])?;
        let kind = header[156];
        match kind {
            b'L' => {
                long_name = Some(cstr(&read_small(r, size, 1 << 20)?));
                continue;
            }
            b'x' => {
                let data = read_small(r, size, 1 << 20)?;
                pax_path = pax_record(&data, "path");
                continue;
            }
            b'g' | b'K' => {
                read_small(r, size, 1 << 20)?;
                continue;
            }
            _ => {}
        }
        let mut path = cstr(&header[0..100]);
        if &header[257..262] == b"ustar" {
            let prefix = cstr(&header[345..500]);
            if !prefix.is_empty() {
                path = format!("{prefix}/{path}");
            }
        }
        let path = pax_path.take().or(long_name.take()).unwrap_or(path);
        let entry = Entry { path, kind, size };
        let content = if entry.is_file() { size } else { 0 };
        let mut limited = (&mut *r).take(content);
        visit(&entry, &mut limited)?;
        let rest = limited.limit();
        skip(r, rest)?;
        skip(r, (512 - content % 512) % 512)?;
        if !entry.is_file() && size > 0 && kind != b'5' {
            // Unknown entry types with content (e.g. sparse data): skip it too.
            let padded = size
                .div_ceil(512)
                .checked_mul(512)
                .ok_or_else(|| bad("entry size overflows"))?;
            skip(r, padded)?;
        }
    }
}

fn pax_record(data: &[u8], key: &str) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let (len, _) = rest.split_once(' ')?;
        let n: usize = len.parse().ok()?;
        let record = rest.get(..n)?;
        rest = &rest[n..];
        let kv = record.split_once(' ')?.1.trim_end_matches('\n');
        if let Some((k, v)) = kv.split_once('=') {
            if k == key {
                return Some(v.to_owned());
            }
        }
    }
    None
}
