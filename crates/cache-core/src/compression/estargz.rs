//! eStargz (seekable gzip): writer and TOC reader, per the stargz-snapshotter format.
//! (Being filled in: see the module's tests for the contract.)

use std::io::{Read, Write};

use crate::digest::Digest;
use crate::error::{Error, Result};

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

/// Convert an uncompressed tar into an estargz blob.
pub fn write_estargz(_tar: &mut dyn Read, _out: &mut dyn Write, _level: u32) -> Result<EstargzInfo> {
    Err(Error::NotImplemented {
        feature: "estargz output".into(),
    })
}
