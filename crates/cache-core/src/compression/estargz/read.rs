//! Reading an eStargz blob's table of contents back: the footer (both forms), the TOC member.

use super::*;

pub(super) fn blob_error(operation: &str, reason: String) -> Error {
    Error::io(
        "estargz blob",
        operation,
        io::Error::new(io::ErrorKind::InvalidData, reason),
    )
}

/// The Extra field of a gzip header at the start of `p`.
pub(super) fn gzip_extra(p: &[u8]) -> std::result::Result<&[u8], String> {
    if p.len() < 12 || p[0] != 0x1f || p[1] != 0x8b || p[2] != 8 {
        return Err("not a gzip header".into());
    }
    if p[3] & 0xe0 != 0 || p[3] & 4 == 0 {
        return Err(format!("gzip flags {:#04x} have no Extra field", p[3]));
    }
    let xlen = u16::from_le_bytes([p[10], p[11]]) as usize;
    p.get(12..12 + xlen)
        .ok_or_else(|| "gzip Extra field overruns the footer".into())
}

pub(super) fn parse_offset(hex: &[u8]) -> std::result::Result<u64, String> {
    std::str::from_utf8(hex)
        .ok()
        .and_then(|s| i64::from_str_radix(s, 16).ok())
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("bad TOC offset {:?}", String::from_utf8_lossy(hex)))
}

/// Parse the footer (eStargz, else legacy stargz): the TOC member's offset and the footer size.
pub(super) fn footer_toc_offset(blob: &[u8]) -> Result<(u64, usize)> {
    let estargz = || -> std::result::Result<u64, String> {
        let p = blob
            .len()
            .checked_sub(FOOTER_SIZE)
            .map(|s| &blob[s..])
            .ok_or("blob is shorter than a footer")?;
        let extra = gzip_extra(p)?;
        if extra.len() != 26 || &extra[..2] != b"SG" || extra[2..4] != 22u16.to_le_bytes() || &extra[20..] != b"STARGZ"
        {
            return Err("its gzip Extra field is not SG/22/%016xSTARGZ".into());
        }
        parse_offset(&extra[4..20])
    };
    let legacy = || -> std::result::Result<u64, String> {
        let p = blob
            .len()
            .checked_sub(LEGACY_FOOTER_SIZE)
            .map(|s| &blob[s..])
            .ok_or("blob is shorter than a legacy footer")?;
        let extra = gzip_extra(p)?;
        if extra.len() != 22 || &extra[16..] != b"STARGZ" {
            return Err("its gzip Extra field is not %016xSTARGZ".into());
        }
        parse_offset(&extra[..16])
    };
    let (found, size) = match estargz() {
        Ok(off) => (Ok(off), FOOTER_SIZE),
        Err(e) => match legacy() {
            Ok(off) => (Ok(off), LEGACY_FOOTER_SIZE),
            Err(le) => (
                Err(format!("no eStargz footer ({e}); no legacy stargz footer ({le})")),
                0,
            ),
        },
    };
    let off = found.map_err(|r| blob_error("read the footer", r))?;
    let end = (blob.len() - size) as u64;
    if off > end {
        return Err(blob_error(
            "read the footer",
            format!("the footer puts the TOC at {off}, past the end of the payload ({end})"),
        ));
    }
    Ok((off, size))
}

/// The raw TOC JSON of an estargz blob held in memory (footer -> TOC gzip member -> the
/// `stargz.index.json` tar entry). Its sha256 is the layer's TOC digest.
pub fn read_toc_json(blob: &[u8]) -> Result<Vec<u8>> {
    let (off, footer_size) = footer_toc_offset(blob)?;
    let member = &blob[off as usize..blob.len() - footer_size];
    let op = "read the TOC";
    let io_err = |e: io::Error| Error::io("estargz blob", op, e);
    let mut tr = TarReader::new(flate2::read::GzDecoder::new(member));
    let h = tr
        .next(&mut io::sink())
        .map_err(io_err)?
        .ok_or_else(|| blob_error(op, format!("the TOC member at offset {off} holds no tar entry")))?;
    if h.name != TOC_TAR_NAME.as_bytes() {
        return Err(blob_error(
            op,
            format!(
                "the TOC member's tar entry is {:?}, expected {TOC_TAR_NAME:?}",
                String::from_utf8_lossy(&h.name)
            ),
        ));
    }
    let size = h.size as u64;
    if size > MAX_TOC_SIZE {
        return Err(Error::TooLarge {
            what: "estargz TOC".into(),
            size,
            limit: MAX_TOC_SIZE,
        });
    }
    let mut json = vec![0u8; size as usize];
    let mut got = 0;
    while got < json.len() {
        got += tr.read_data(&mut json[got..]).map_err(io_err)?;
    }
    Ok(json)
}

/// The TOC (`stargz.index.json`) of an estargz blob held in memory (footer -> TOC gzip member
/// -> JSON).
pub fn read_toc(blob: &[u8]) -> Result<Toc> {
    Toc::from_json(&read_toc_json(blob)?)
}
