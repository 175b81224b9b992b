//! eStargz against real BuildKit v0.32.2 output: `local-estargz` holds the layers BuildKit's
//! estargz compressor made from the same build whose plain tars are in `local-uncompressed`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use bkcache_core::compression::estargz::{
    read_toc, read_toc_json, write_estargz, EstargzInfo, Toc, TocEntry, CHUNK_SIZE, FOOTER_SIZE, TOC_TAR_NAME,
};
use bkcache_core::compression::{convert_sync, Target, ANNOTATION_ESTARGZ_UNCOMPRESSED_SIZE};
use bkcache_core::descriptor::{ANNOTATION_STARGZ_TOC, ANNOTATION_UNCOMPRESSED};
use bkcache_core::manifest::{Index, TopLevel};
use bkcache_core::spec::LayerCompression;
use bkcache_core::{Descriptor, Digest, Error, MediaType};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/buildkit-v0.32.2")
}

fn blob(case: &str, d: &Digest) -> Vec<u8> {
    std::fs::read(fixtures().join(case).join("cache/blobs/sha256").join(d.hex())).unwrap()
}

/// The layer descriptors of a local fixture, in manifest order.
fn layers(case: &str) -> Vec<Descriptor> {
    let index = Index::from_slice(
        &std::fs::read(fixtures().join(case).join("cache/index.json")).unwrap(),
        case,
    )
    .unwrap();
    let manifest = blob(case, &index.manifests[0].digest);
    TopLevel::detect(&manifest, case)
        .unwrap()
        .cache_manifest()
        .unwrap()
        .layers
}

/// One BuildKit estargz layer and the plain tar it was made from.
struct Pair {
    desc: Descriptor,
    esgz: Vec<u8>,
    tar: Vec<u8>,
}

/// The two caches come from the same build: their cache configs list the layers in the same
/// order (checked below through the content: each estargz decompresses to its tar + the TOC).
fn pairs() -> Vec<Pair> {
    let esgz = layers("local-estargz");
    let plain = layers("local-uncompressed");
    assert_eq!(esgz.len(), 3);
    assert_eq!(plain.len(), 3);
    esgz.into_iter()
        .zip(plain)
        .map(|(e, p)| {
            assert_eq!(p.media_type, MediaType::OciLayer);
            Pair {
                esgz: blob("local-estargz", &e.digest),
                tar: blob("local-uncompressed", &p.digest),
                desc: e,
            }
        })
        .collect()
}

fn gunzip_all(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b).read_to_end(&mut out).unwrap();
    out
}

/// The gzip members of a blob: (compressed offset, decompressed bytes).
fn members(b: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        let offset = b.len() - rest.len();
        let mut dec = flate2::bufread::GzDecoder::new(rest);
        let mut data = Vec::new();
        dec.read_to_end(&mut data).unwrap();
        rest = dec.into_inner();
        out.push((offset, data));
    }
    out
}

/// The TOC tar that follows the layer's own tar in the decompressed stream: (header, JSON).
fn toc_tar(rest: &[u8]) -> ([u8; 512], Vec<u8>) {
    let header: [u8; 512] = rest[..512].try_into().unwrap();
    assert_eq!(
        &header[..TOC_TAR_NAME.len() + 1],
        format!("{TOC_TAR_NAME}\0").as_bytes()
    );
    let size = usize::from_str_radix(std::str::from_utf8(&header[124..135]).unwrap(), 8).unwrap();
    let json = rest[512..512 + size].to_vec();
    let padded = 512 + size.div_ceil(512) * 512;
    assert_eq!(
        rest.len(),
        padded + 1024,
        "TOC tar: header, JSON, padding, end-of-archive"
    );
    assert!(rest[512 + size..].iter().all(|b| *b == 0));
    (header, json)
}

/// Every entry with data points at a gzip member that starts with that chunk's bytes.
fn check_chunks(blob: &[u8], toc: &Toc, files: &BTreeMap<String, Vec<u8>>) {
    let starts: BTreeMap<usize, Vec<u8>> = members(blob).into_iter().collect();
    let mut checked = 0;
    for (i, e) in toc.entries.iter().enumerate() {
        if !((e.kind == "reg" && e.size > 0) || e.kind == "chunk") {
            assert_eq!(e.offset, 0, "{e:?}");
            continue;
        }
        let member = starts
            .get(&(e.offset as usize))
            .unwrap_or_else(|| panic!("no member at {}", e.offset));
        assert_eq!(e.inner_offset, 0);
        let file_size = toc.entries[..=i].iter().rev().find(|r| r.kind == "reg").unwrap().size;
        let len = if e.chunk_size > 0 {
            e.chunk_size
        } else {
            file_size - e.chunk_offset
        } as usize;
        assert_eq!(
            Digest::of_bytes(&member[..len]).to_string(),
            e.chunk_digest,
            "{}",
            e.name
        );
        if let Some(content) = files.get(&e.name) {
            let at = e.chunk_offset as usize;
            assert_eq!(&member[..len], &content[at..at + len], "{}", e.name);
        }
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn buildkit_layers_read_back() {
    for p in pairs() {
        let a = &p.desc.annotations;
        let json = read_toc_json(&p.esgz).unwrap();
        assert_eq!(Digest::of_bytes(&json).as_str(), a[ANNOTATION_STARGZ_TOC]);
        let toc = read_toc(&p.esgz).unwrap();
        assert_eq!(toc.version, 1);
        // Our Go-compatible JSON writer gives back BuildKit's exact TOC bytes.
        assert_eq!(
            String::from_utf8(toc.to_json().unwrap()).unwrap(),
            String::from_utf8(json.clone()).unwrap()
        );
        let all = gunzip_all(&p.esgz);
        assert_eq!(Digest::of_bytes(&all).as_str(), a[ANNOTATION_UNCOMPRESSED]);
        assert_eq!(all.len().to_string(), a[ANNOTATION_ESTARGZ_UNCOMPRESSED_SIZE]);
        // Lossless: the original tar, then the TOC tar.
        assert_eq!(&all[..p.tar.len()], &p.tar[..]);
        assert_eq!(toc_tar(&all[p.tar.len()..]).1, json);
        // The footer points at the TOC member, the last one before the footer.
        let ms = members(&p.esgz);
        let (toc_at, _) = ms[ms.len() - 2];
        assert_eq!(
            &p.esgz[p.esgz.len() - FOOTER_SIZE + 16..][..16],
            format!("{toc_at:016x}").as_bytes()
        );
        assert!(ms.last().unwrap().1.is_empty());
        check_chunks(&p.esgz, &toc, &BTreeMap::new());
    }
}

fn without_offsets(toc: &Toc) -> Vec<TocEntry> {
    toc.entries
        .iter()
        .map(|e| TocEntry {
            offset: 0,
            inner_offset: 0,
            ..e.clone()
        })
        .collect()
}

fn write(tar: &[u8], level: u32) -> (Vec<u8>, EstargzInfo) {
    let mut out = Vec::new();
    let info = write_estargz(&mut &tar[..], &mut out, level).unwrap();
    (out, info)
}

/// Checks every blob we write must pass, whatever the input.
fn check_consistent(tar: &[u8], out: &[u8], info: &EstargzInfo) -> (Toc, Vec<u8>) {
    let json = read_toc_json(out).unwrap();
    let toc = read_toc(out).unwrap();
    assert_eq!(Digest::of_bytes(&json), info.toc_digest);
    assert_eq!(toc.to_json().unwrap(), json, "TOC JSON round-trips byte for byte");
    assert_eq!(Toc::from_json(&json).unwrap(), toc);
    let all = gunzip_all(out);
    assert_eq!(all.len() as u64, info.uncompressed_size);
    assert_eq!(Digest::of_bytes(&all), info.diff_id);
    assert_eq!(&all[..tar.len()], tar, "the input tar passes through byte for byte");
    assert_eq!(toc_tar(&all[tar.len()..]).1, json);
    // Footer: 51 bytes, empty member, offset of the TOC member.
    let ms = members(out);
    let (toc_at, ref toc_member) = ms[ms.len() - 2];
    assert_eq!(toc_tar(toc_member).1, json, "the TOC tar is a member of its own");
    let footer = &out[out.len() - FOOTER_SIZE..];
    assert_eq!(&footer[..4], &[0x1f, 0x8b, 8, 4]);
    assert_eq!(&footer[16..38], format!("{toc_at:016x}STARGZ").as_bytes());
    (toc, all)
}

#[test]
fn writer_matches_buildkit() {
    for p in pairs() {
        let bk_toc = read_toc(&p.esgz).unwrap();
        let bk_json = read_toc_json(&p.esgz).unwrap();
        // BuildKit's level: gzip.DefaultCompression (6) unless compression-level is given.
        let (out, info) = write(&p.tar, 6);
        let (toc, all) = check_consistent(&p.tar, &out, &info);

        // Same entries; only the compressed offsets differ (zlib-rs is not Go's flate).
        assert_eq!(without_offsets(&toc), without_offsets(&bk_toc));
        // With BuildKit's offsets, our TOC is BuildKit's TOC, byte for byte, digest included.
        let mut with_bk_offsets = toc.clone();
        for (ours, theirs) in with_bk_offsets.entries.iter_mut().zip(&bk_toc.entries) {
            ours.offset = theirs.offset;
        }
        let json = with_bk_offsets.to_json().unwrap();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            String::from_utf8(bk_json.clone()).unwrap()
        );
        assert_eq!(
            Digest::of_bytes(&json).as_str(),
            p.desc.annotations[ANNOTATION_STARGZ_TOC]
        );

        // Decompressed: the same tar bytes, then a TOC tar whose header differs at most in the
        // size field and checksum (when the offsets have as many digits, not even there).
        let bk_all = gunzip_all(&p.esgz);
        assert_eq!(&all[..p.tar.len()], &bk_all[..p.tar.len()]);
        let (our_header, our_json) = toc_tar(&all[p.tar.len()..]);
        let (bk_header, _) = toc_tar(&bk_all[p.tar.len()..]);
        let masked = |h: &[u8; 512]| {
            let mut h = *h;
            h[124..136].fill(0);
            h[148..156].fill(0);
            h
        };
        assert_eq!(masked(&our_header), masked(&bk_header));
        if our_json.len() == bk_json.len() {
            assert_eq!(our_header, bk_header);
            assert_eq!(
                info.uncompressed_size.to_string(),
                p.desc.annotations[ANNOTATION_ESTARGZ_UNCOMPRESSED_SIZE]
            );
        }
        // The diffID covers the TOC, so it is BuildKit's exactly when the offsets are.
        let offsets = |t: &Toc| t.entries.iter().map(|e| e.offset).collect::<Vec<_>>();
        assert_eq!(
            info.diff_id.as_str() == p.desc.annotations[ANNOTATION_UNCOMPRESSED],
            offsets(&toc) == offsets(&bk_toc)
        );

        // The gzip member boundaries fall at the same places in the uncompressed stream.
        let ours: Vec<Vec<u8>> = members(&out).into_iter().map(|m| m.1).collect();
        let theirs: Vec<Vec<u8>> = members(&p.esgz).into_iter().map(|m| m.1).collect();
        assert_eq!(ours.len(), theirs.len());
        let n = ours.len();
        assert_eq!(
            ours[..n - 2],
            theirs[..n - 2],
            "every member but the TOC's holds the same bytes"
        );
        assert_eq!((ours[n - 1].len(), theirs[n - 1].len()), (0, 0), "footer");
        check_chunks(&out, &toc, &BTreeMap::new());
    }
}

// ---- a small tar builder for synthetic layers ----

#[derive(Clone)]
struct H<'a> {
    name: &'a [u8],
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    link: &'a [u8],
    uname: &'a [u8],
    gname: &'a [u8],
    dev: (u32, u32),
}

impl Default for H<'_> {
    fn default() -> Self {
        H {
            name: b"",
            kind: b'0',
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_704_067_200,
            link: b"",
            uname: b"",
            gname: b"",
            dev: (0, 0),
        }
    }
}

#[derive(Default)]
struct TarBuilder(Vec<u8>);

impl TarBuilder {
    fn header(&mut self, h: &H, size: u64) {
        let mut b = [0u8; 512];
        b[..h.name.len()].copy_from_slice(h.name);
        let oct = |b: &mut [u8], v: u64| {
            let w = b.len() - 1;
            b[..w].copy_from_slice(format!("{v:0w$o}").as_bytes());
        };
        oct(&mut b[100..108], h.mode as u64);
        oct(&mut b[108..116], h.uid as u64);
        oct(&mut b[116..124], h.gid as u64);
        oct(&mut b[124..136], size);
        oct(&mut b[136..148], h.mtime);
        b[156] = h.kind;
        b[157..157 + h.link.len()].copy_from_slice(h.link);
        b[257..265].copy_from_slice(b"ustar\x0000");
        b[265..265 + h.uname.len()].copy_from_slice(h.uname);
        b[297..297 + h.gname.len()].copy_from_slice(h.gname);
        oct(&mut b[329..337], h.dev.0 as u64);
        oct(&mut b[337..345], h.dev.1 as u64);
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|c| *c as u32).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        self.0.extend_from_slice(&b);
    }

    fn data(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
    }

    fn entry(&mut self, h: H, data: &[u8]) -> &mut Self {
        self.header(&h, data.len() as u64);
        self.data(data);
        self
    }

    fn pax(&mut self, kind: u8, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = k.len() + v.len() + 3;
            let mut n = body + 1;
            while format!("{n}").len() + body != n {
                n += 1;
            }
            data.extend_from_slice(format!("{n} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let h = H {
            name: b"PaxHeaders/x",
            kind,
            ..H::default()
        };
        self.entry(h, &data.clone())
    }

    fn gnu_long(&mut self, kind: u8, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        let h = H {
            name: b"././@LongLink",
            kind,
            ..H::default()
        };
        self.entry(h, &data)
    }

    fn finish(&mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0; 1024]);
        std::mem::take(&mut self.0)
    }
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half noise, half text: compressible but not trivially.
            if i % 2 == 0 {
                x as u8
            } else {
                b'a' + (x % 7) as u8
            }
        })
        .collect()
}

/// A layer with every entry kind, PAX and GNU extensions; `chunky` makes the two big files
/// span 3 chunks and exactly 1 chunk (else they are small).
fn synthetic(chunky: bool) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let (big, exact) = if chunky {
        (
            noise(2 * CHUNK_SIZE as usize + 123_457, 7),
            noise(CHUNK_SIZE as usize, 9),
        )
    } else {
        (noise(70_000, 7), noise(1000, 9))
    };
    let long_pax = format!("deep/{}/file.txt", "p".repeat(150));
    let long_gnu = format!("gnu/{}/file.txt", "g".repeat(120));
    let mut files = BTreeMap::new();
    files.insert("root/big.bin".to_string(), big.clone());
    files.insert("root/exact.bin".to_string(), exact.clone());
    files.insert(long_pax.clone(), b"pax named\n".to_vec());
    files.insert(long_gnu.clone(), b"gnu named\n".to_vec());
    files.insert("./dot/a.txt".to_string(), b"dot slash\n".to_vec());
    let mut t = TarBuilder::default();
    t.entry(
        H {
            name: b"root/",
            kind: b'5',
            mode: 0o755,
            uid: 1000,
            gid: 1000,
            uname: b"user",
            gname: b"group",
            ..H::default()
        },
        b"",
    )
    .entry(
        H {
            name: b"root/big.bin",
            uid: 1000,
            gid: 1000,
            uname: b"user",
            gname: b"group",
            ..H::default()
        },
        &big,
    )
    .entry(
        H {
            name: b"root/exact.bin",
            uid: 1000,
            gid: 2000,
            uname: b"other",
            gname: b"group2",
            ..H::default()
        },
        &exact,
    )
    .entry(
        H {
            name: b"root/empty",
            mtime: 0,
            ..H::default()
        },
        b"",
    )
    .pax(
        b'x',
        &[
            ("path", long_pax.as_bytes()),
            ("mtime", b"1704067199.75"),
            ("SCHILY.xattr.user.foo", b"bar"),
            ("SCHILY.xattr.security.capability", &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0]),
            ("SCHILY.xattr.user.empty", b""),
        ],
    )
    .entry(
        H {
            name: b"deep/truncated",
            ..H::default()
        },
        b"pax named\n",
    )
    .gnu_long(b'L', long_gnu.as_bytes())
    .entry(
        H {
            name: b"gnu/truncated",
            ..H::default()
        },
        b"gnu named\n",
    )
    .gnu_long(b'K', format!("target/{}", "k".repeat(120)).as_bytes())
    .entry(
        H {
            name: b"root/longlink",
            kind: b'2',
            mode: 0o777,
            ..H::default()
        },
        b"",
    )
    .entry(
        H {
            name: b"root/hard",
            kind: b'1',
            link: b"root/big.bin",
            ..H::default()
        },
        b"",
    )
    .entry(
        H {
            name: b"dev/null",
            kind: b'3',
            mode: 0o666,
            dev: (1, 3),
            ..H::default()
        },
        b"",
    )
    .entry(
        H {
            name: b"run/fifo",
            kind: b'6',
            ..H::default()
        },
        b"",
    )
    .entry(
        H {
            name: b"./dot/a.txt",
            kind: 0, // old-style regular file
            ..H::default()
        },
        b"dot slash\n",
    )
    .entry(
        H {
            name: b"<&>",
            ..H::default()
        },
        b"",
    );
    let mut tar = t.finish();
    tar.extend_from_slice(&[0; 2048]); // trailing zeros after the end-of-archive are kept too
    (tar, files)
}

#[test]
fn writer_round_trips_a_synthetic_layer() {
    let (tar, files) = synthetic(true);
    let (out, info) = write(&tar, 1);
    let (toc, _) = check_consistent(&tar, &out, &info);
    check_chunks(&out, &toc, &files);
    let summary: Vec<(&str, &str)> = toc.entries.iter().map(|e| (e.name.as_str(), e.kind.as_str())).collect();
    let long_pax = format!("deep/{}/file.txt", "p".repeat(150));
    let long_gnu = format!("gnu/{}/file.txt", "g".repeat(120));
    assert_eq!(
        summary,
        [
            ("root/", "dir"),
            ("root/big.bin", "reg"),
            ("root/big.bin", "chunk"),
            ("root/big.bin", "chunk"),
            ("root/exact.bin", "reg"),
            ("root/empty", "reg"),
            (long_pax.as_str(), "reg"),
            (long_gnu.as_str(), "reg"),
            ("root/longlink", "symlink"),
            ("root/hard", "hardlink"),
            ("dev/null", "char"),
            ("run/fifo", "fifo"),
            ("./dot/a.txt", "reg"),
            ("<&>", "reg"),
        ]
    );
    let e = &toc.entries;
    let big = &files["root/big.bin"];
    // Chunks: full ones carry chunkSize, the last one runs to the end of the file.
    assert_eq!(
        (e[1].size, e[1].chunk_offset, e[1].chunk_size),
        (big.len() as i64, 0, CHUNK_SIZE as i64)
    );
    assert_eq!(
        (e[2].chunk_offset, e[2].chunk_size),
        (CHUNK_SIZE as i64, CHUNK_SIZE as i64)
    );
    assert_eq!((e[3].chunk_offset, e[3].chunk_size), (2 * CHUNK_SIZE as i64, 0));
    assert_eq!(e[1].digest, Digest::of_bytes(big).to_string());
    assert!(e[2].digest.is_empty() && e[2].modtime.is_empty() && e[2].mode == 0);
    assert!(e[1].offset < e[2].offset && e[2].offset < e[3].offset);
    // A file of exactly one chunk: chunkSize set, one entry.
    assert_eq!((e[4].chunk_size, e[4].uid, e[4].gid), (CHUNK_SIZE as i64, 1000, 2000));
    // User and group names: only where they change for an id.
    assert_eq!((e[0].user_name.as_str(), e[0].group_name.as_str()), ("user", "group"));
    assert_eq!((e[1].user_name.as_str(), e[1].group_name.as_str()), ("", ""));
    assert_eq!((e[4].user_name.as_str(), e[4].group_name.as_str()), ("other", "group2"));
    // Empty file: digest of nothing, no offset, no chunk digest; mtime 0 is omitted.
    assert_eq!(e[5].digest, Digest::of_bytes(b"").to_string());
    assert_eq!(
        (e[5].offset, e[5].chunk_digest.as_str(), e[5].modtime.as_str()),
        (0, "", "")
    );
    // PAX: path, mtime rounded half up, xattrs (empty values kept).
    assert_eq!(e[6].modtime, "2024-01-01T00:00:00Z");
    let xattrs: Vec<(&str, &[u8])> = e[6].xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    assert_eq!(
        xattrs,
        [
            ("security.capability", &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0][..]),
            ("user.empty", b""),
            ("user.foo", b"bar"),
        ]
    );
    assert_eq!(e[8].link_name, format!("target/{}", "k".repeat(120)));
    assert_eq!(e[9].link_name, "root/big.bin");
    assert_eq!((e[10].dev_major, e[10].dev_minor, e[10].mode), (1, 3, 0o666));
    assert_eq!(e[11].mode, 0o644);
    assert_eq!(e[1].modtime, "2024-01-01T00:00:00Z");
    // Go's JSON: tab indent, HTML-safe escapes, base64 xattrs.
    let json = String::from_utf8(read_toc_json(&out).unwrap()).unwrap();
    assert!(
        json.starts_with("{\n\t\"version\": 1,\n\t\"entries\": [\n\t\t{\n\t\t\t\"name\": \"root/\",\n"),
        "{json}"
    );
    assert!(json.contains("\"name\": \"\\u003c\\u0026\\u003e\""), "{json}");
    assert!(json.contains("\t\t\t\"xattrs\": {\n\t\t\t\t\"security.capability\": \"AQAAAgAgAAAAAA==\",\n\t\t\t\t\"user.empty\": \"\",\n\t\t\t\t\"user.foo\": \"YmFy\"\n\t\t\t},\n"), "{json}");
    assert!(!json.ends_with('\n'));
}

#[test]
fn levels_only_change_the_compressed_bytes() {
    let (tar, files) = synthetic(false);
    let mut tocs = Vec::new();
    for (level, xfl) in [(0, 0), (1, 4), (6, 0), (9, 2)] {
        let (out, info) = write(&tar, level);
        let (toc, _) = check_consistent(&tar, &out, &info);
        check_chunks(&out, &toc, &files);
        assert_eq!(out[8], xfl, "gzip XFL as Go writes it for level {level}");
        if level == 0 {
            assert!(out.len() > tar.len(), "stored");
        }
        tocs.push(without_offsets(&toc));
    }
    assert!(tocs.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn empty_input_gives_an_empty_toc() {
    for tar in [Vec::new(), vec![0u8; 1024]] {
        let (out, info) = write(&tar, 6);
        let (toc, _) = check_consistent(&tar, &out, &info);
        assert!(toc.entries.is_empty());
        assert!(read_toc_json(&out).unwrap().ends_with(b"\"entries\": null\n}"));
    }
}

fn err_text(r: Result<impl std::fmt::Debug, Error>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn broken_blobs_are_clear_errors() {
    let good = &pairs()[1].esgz;
    for (blob, want) in [
        (&good[..0], "footer"),
        (&good[..10], "footer"),
        (&good[..good.len() - 1], "footer"),
        (&good[..good.len() - FOOTER_SIZE], "footer"),
        (&good[good.len() - FOOTER_SIZE..], "past the end"),
    ] {
        let e = err_text(read_toc(blob));
        assert!(e.contains(want), "{e}");
    }
    // A footer without the STARGZ magic.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 15] = b'X';
    assert!(err_text(read_toc(&bad)).contains("footer"));
    // A footer pointing at a member that is not the TOC.
    let mut wrong = good[..good.len() - FOOTER_SIZE].to_vec();
    let mut out = Vec::new();
    write_estargz(&mut &[][..], &mut out, 6).unwrap();
    wrong.extend_from_slice(&out[out.len() - FOOTER_SIZE..]); // offset 0: the first member
    assert!(err_text(read_toc(&wrong)).contains("expected \"stargz.index.json\""));
    // A corrupt TOC member.
    let toc_at = members(good).iter().rev().nth(1).unwrap().0;
    let mut corrupt = good.clone();
    for b in &mut corrupt[toc_at + 12..toc_at + 40] {
        *b ^= 0x55;
    }
    assert!(err_text(read_toc(&corrupt)).contains("read the TOC"));
    // Not JSON.
    let mut tar = TarBuilder::default();
    tar.entry(
        H {
            name: TOC_TAR_NAME.as_bytes(),
            ..H::default()
        },
        b"{not json",
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar.finish()).unwrap();
    let mut blob = gz.finish().unwrap();
    blob.extend_from_slice(&out[out.len() - FOOTER_SIZE..]);
    assert!(err_text(read_toc(&blob)).contains("not valid JSON"));
    // A TOC claiming to be huge is refused before anything is allocated.
    let mut huge = TarBuilder::default();
    huge.header(
        &H {
            name: TOC_TAR_NAME.as_bytes(),
            ..H::default()
        },
        1 << 30,
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &huge.0).unwrap();
    let mut blob = gz.finish().unwrap();
    blob.extend_from_slice(&out[out.len() - FOOTER_SIZE..]);
    assert!(err_text(read_toc(&blob)).contains("too large"));
}

#[test]
fn bad_tars_are_clear_errors() {
    let mut out = Vec::new();
    let mut run = |tar: &[u8]| {
        write_estargz(&mut &tar[..], &mut out, 6)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let file = |name: &'static [u8]| H { name, ..H::default() };

    let e = run(&TarBuilder::default()
        .entry(file(b"./stargz.index.json"), b"{}")
        .finish());
    assert!(e.contains("already holds stargz.index.json"), "{e}");
    let e = run(&TarBuilder::default().pax(b'g', &[("comment", b"x")]).finish());
    assert!(e.contains("unsupported tar entry type 'g'"), "{e}");
    let e = run(&TarBuilder::default()
        .entry(
            H {
                kind: b'S',
                ..file(b"sparse")
            },
            b"",
        )
        .finish());
    assert!(e.contains("sparse"), "{e}");
    let e = run(&TarBuilder::default()
        .entry(
            H {
                kind: b'V',
                ..file(b"volume")
            },
            b"",
        )
        .finish());
    assert!(e.contains("unsupported tar entry type 'V'"), "{e}");
    let mut bad_sum = TarBuilder::default().entry(file(b"a"), b"x").finish();
    bad_sum[0] = b'b';
    let e = run(&bad_sum);
    assert!(e.contains("checksum"), "{e}");
    let truncated = TarBuilder::default().entry(file(b"a"), &[1; 5000]).finish();
    let e = run(&truncated[..3000]);
    assert!(e.contains("ends inside"), "{e}");
    let e = run(&truncated[..700]);
    assert!(e.contains("ends inside a header") || e.contains("ends inside"), "{e}");
    let e = run(&[b'x'; 100]);
    assert!(e.contains("ends inside a header"), "{e}");
    let e = write_estargz(&mut &[][..], &mut Vec::new(), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("compression-level"), "{e}");
}

#[test]
fn conversion_gzip_to_estargz_and_back() {
    let p = &pairs()[0];
    let plain = layers("local-uncompressed").remove(0);
    let convert = |src: &Descriptor, bytes: &[u8], to: LayerCompression| {
        let mut out = Vec::new();
        let d = convert_sync(
            src,
            Box::new(bytes),
            Target {
                compression: to,
                level: None,
            },
            &mut out,
            1 << 30,
        )
        .unwrap();
        assert_eq!(d.digest, Digest::of_bytes(&out));
        assert_eq!(d.size, out.len() as u64);
        (d, out)
    };
    let (gz, gz_bytes) = convert(&plain, &p.tar, LayerCompression::Gzip);
    let (esgz, esgz_bytes) = convert(&gz, &gz_bytes, LayerCompression::Estargz);
    // BuildKit's descriptor shape: gzip media type, the three estargz annotations.
    assert_eq!(esgz.media_type, p.desc.media_type);
    assert_eq!(
        esgz.annotations.keys().collect::<Vec<_>>(),
        p.desc.annotations.keys().collect::<Vec<_>>()
    );
    let json = read_toc_json(&esgz_bytes).unwrap();
    assert_eq!(
        Digest::of_bytes(&json).as_str(),
        esgz.annotations[ANNOTATION_STARGZ_TOC]
    );
    let all = gunzip_all(&esgz_bytes);
    assert_eq!(Some(Digest::of_bytes(&all)), esgz.diff_id());
    assert_eq!(
        all.len().to_string(),
        esgz.annotations[ANNOTATION_ESTARGZ_UNCOMPRESSED_SIZE]
    );
    assert_eq!(&all[..p.tar.len()], &p.tar[..]);
    assert_eq!(
        without_offsets(&read_toc(&esgz_bytes).unwrap()),
        without_offsets(&read_toc(&p.esgz).unwrap())
    );
    // Back to gzip: the estargz content (tar + TOC entry) is kept, and the TOC annotations go.
    let (back, back_bytes) = convert(&esgz, &esgz_bytes, LayerCompression::Gzip);
    assert_eq!(gunzip_all(&back_bytes), all);
    assert_eq!(back.diff_id(), esgz.diff_id());
    assert!(!back.annotations.contains_key(ANNOTATION_STARGZ_TOC));
    assert!(!back.annotations.contains_key(ANNOTATION_ESTARGZ_UNCOMPRESSED_SIZE));
    // BuildKit's own estargz layer converts to gzip the same way.
    let (_, bk_back) = convert(&p.desc, &p.esgz, LayerCompression::Gzip);
    assert_eq!(gunzip_all(&bk_back), gunzip_all(&p.esgz));
    // The size bound applies while converting to estargz too.
    let e = convert_sync(
        &gz,
        Box::new(&gz_bytes[..]),
        Target {
            compression: LayerCompression::Estargz,
            level: Some(9),
        },
        &mut Vec::new(),
        1000,
    )
    .unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
}
