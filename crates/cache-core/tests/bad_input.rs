//! Fuzz-like checks of the decoders on mutated real input: BuildKit's cache configs (manifest
//! family and annotated), image manifests / OCI indexes / Docker lists, an inline-cache image
//! config, cache option strings, times, digests and an uncompressed layer tar. Every mutation
//! must decode to `Ok` or `Err`, never panic; what decodes is also re-encoded, summarised and
//! filtered (`mode=min`), which must not panic either.
//!
//! A bounded, deterministic loop (fixed seed, `MUTATIONS` inputs): the same inputs every run, so
//! a failure reproduces; the failing input is printed. The open-ended version is `cargo xtask
//! fuzz` (cargo-fuzz targets in `fuzz/`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bkcache_core::annotated::{decode_annotated, encode_annotated};
use bkcache_core::inline::decode_inline;
use bkcache_core::manifest::{encode_manifest, ImageManifest, TopLevel};
use bkcache_core::{
    inspect, AbstractCache, CacheConfig, CacheSpec, Descriptor, Digest, ExportOptions, GoTime, MediaType, Mode, Wrapper,
};

/// Mutated inputs decoded per run, over all decoders.
const MUTATIONS: usize = 20_000;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/buildkit-v0.32.2")
}

fn blob(case: &str, digest: &str) -> Vec<u8> {
    std::fs::read(
        fixtures()
            .join(case)
            .join("cache/blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING_BYTES: &[u8] = b"\"{}[],:-0919e.\\ \x00\xff\x80nt";
const INTERESTING_TOKENS: &[&str] = &[
    "-1",
    "0",
    "1",
    "-0",
    "1e309",
    "1.5",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "99999999999999999999999",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "\"sha256:../../x\"",
    "\"SHA256:AA\"",
    "\"0000-00-00T00:00:00Z\"",
    "\"9999-12-31T23:59:59.999999999+23:59\"",
    "\\u0000",
    "\\ud800",
];

/// One random edit of `data` (bytes, ranges, JSON-ish tokens, or a splice of `other`).
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next() as u8;
        }
        2 if len > 0 => {
            let i = rng.below(len);
            data[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = rng.below((len - i).min(64)) + 1;
            data.drain(i..i + n);
        }
        4 if len > 0 => {
            let i = rng.below(len);
            let n = rng.below((len - i).min(256)) + 1;
            let copy = data[i..i + n].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, copy);
        }
        5 => data.truncate(rng.below(len + 1)),
        6 if len > 0 => {
            // Replace a run of digits (a number, an index, a size) with an interesting token.
            let start = rng.below(len);
            if let Some(p) = data[start..].iter().position(u8::is_ascii_digit) {
                let s = start + p;
                let e = s + data[s..].iter().take_while(|b| b.is_ascii_digit()).count();
                let t = INTERESTING_TOKENS[rng.below(INTERESTING_TOKENS.len())];
                data.splice(s..e, t.bytes());
            }
        }
        7 if len > 0 => {
            // Replace a quoted string with an interesting token.
            let start = rng.below(len);
            if let Some(p) = data[start..].iter().position(|b| *b == b'"') {
                let s = start + p;
                if let Some(q) = data[s + 1..].iter().position(|b| *b == b'"') {
                    let t = INTERESTING_TOKENS[rng.below(INTERESTING_TOKENS.len())];
                    data.splice(s..s + q + 2, t.bytes());
                }
            }
        }
        _ if !other.is_empty() => {
            let i = rng.below(other.len());
            let n = rng.below((other.len() - i).min(512)) + 1;
            let at = rng.below(len + 1);
            data.splice(at..at, other[i..i + n].iter().copied());
        }
        _ => data.push(rng.next() as u8),
    }
}

/// Everything done with a decoded cache: encode, filter, summarise (must not panic).
fn exercise(cache: &AbstractCache) {
    let _ = cache.to_config().to_bytes();
    let min = cache.apply_mode(Mode::Min);
    let _ = min.to_config().to_bytes();
    for w in [Wrapper::ImageManifest, Wrapper::OciIndex, Wrapper::DockerManifestList] {
        let _ = encode_manifest(cache, w, w != Wrapper::DockerManifestList);
    }
    let _ = encode_annotated(cache);
    let _ = inspect::age_histogram(cache, GoTime::now());
    let _ = (cache.layer_order(), cache.result_count(), cache.has_no_layers());
    let _ = cache.layer_bytes();
    let _ = AbstractCache::merge([cache.clone(), min]);
}

fn decode_config(bytes: &[u8]) {
    if let Ok(config) = CacheConfig::from_slice(bytes, "fuzz") {
        let _ = config.to_bytes();
        if let Ok((cache, _)) = AbstractCache::from_config(&config, |d| {
            Some(Descriptor::new(MediaType::OciLayerGzip, d.clone(), 1))
        }) {
            exercise(&cache);
        }
    }
}

fn decode_top(bytes: &[u8], config: &[u8]) {
    if let Ok(top) = TopLevel::detect(bytes, "fuzz") {
        if let Some(cm) = top.cache_manifest() {
            if let Ok((cache, _)) = cm.decode(config) {
                exercise(&cache);
            }
        }
    }
}

fn decode_ann(bytes: &[u8]) {
    if let Ok((cache, _)) = decode_annotated(bytes, "fuzz") {
        exercise(&cache);
    }
}

fn decode_spec(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(specs) = CacheSpec::parse(&text) {
        for s in specs {
            let _ = s.to_string();
            let _ = format!("{s:?}");
            let _ = ExportOptions::from_attrs(&s.attrs);
        }
    }
    let _ = CacheSpec::parse_all(&[text.as_ref(), text.as_ref()]);
}

fn decode_scalars(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(t) = text.parse::<GoTime>() {
        let _ = t.to_string();
        let _ = t.to_utc().unix_nanos();
    }
    if let Ok(d) = Digest::parse(&text) {
        let _ = (d.hex(), d.short(), d.algorithm());
    }
    let _ = MediaType::parse(&text).layer_compression();
}

fn decode_tar(bytes: &[u8]) {
    let mut r: &[u8] = bytes;
    let _ = bkcache_core::tar::for_each_entry(&mut r, |entry, content| {
        let _ = entry.is_file();
        let mut head = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(content, 4096), &mut head)?;
        Ok(())
    });
}

type Decoder = Box<dyn Fn(&[u8])>;

struct Corpus {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    weight: usize,
    decode: Decoder,
}

#[test]
fn mutated_real_inputs_never_panic() {
    let max_config = blob(
        "local-max",
        "sha256:69f9d08aca7363311b8dc19aa453e7962e95ef402280bf0f38960c7407ed5770",
    );
    let max_manifest = blob(
        "local-max",
        "sha256:83b2b9fb42354a1f2928260f80624dd4bf1dd4dd5598626425eb0eba1a2abf6a",
    );
    let index = blob(
        "local-index",
        "sha256:8276a40048cde0effb589f62d0052e3dfff41070180667c4d0d052a1c40973a5",
    );
    let docker = blob(
        "local-docker",
        "sha256:24b5f79eb5d2361f1d6538b6e1e64db3d92c5f40ea520a0e367de80146f7855b",
    );
    let annotated = std::fs::read(fixtures().join("s3-max/manifest-main.json")).unwrap();
    let inline_manifest = std::fs::read(fixtures().join("inline/registry/manifest.json")).unwrap();
    let inline_config = std::fs::read(fixtures().join("inline/registry/config.json")).unwrap();
    let tar = blob(
        "local-uncompressed",
        "sha256:1772aca13fee11c9e76e5501794de67089d398d2ab7b1e0f2281693df9699d7d",
    );
    let TopLevel::Manifest(inline_image) = TopLevel::detect(&inline_manifest, "inline").unwrap() else {
        panic!("the inline fixture is an image manifest");
    };
    let inline_image: ImageManifest = *inline_image;
    let specs: Vec<Vec<u8>> = [
        "type=local,src=/tmp/cache,tag=main",
        "type=registry,ref=user/app:cache,mode=max,compression=zstd,compression-level=3,force-compression=true,oci-mediatypes=true,image-manifest=true,ignore-error=false",
        "type=azblob,account_url=\"https://a.blob.core.windows.net/?sv=1&sig=abc,def\",container=c,secret_access_key=k",
        "[{\"type\":\"s3\",\"bucket\":\"b\",\"region\":\"r\",\"mode\":\"max\",\"ignore-error\":true}]",
        "user/app:cache,user/app:other",
        "type=gha,scope=main,token=t,url=http://127.0.0.1:1/,compression=estargz",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let scalars: Vec<Vec<u8>> = [
        "2026-11-23T14:28:18.981966683Z",
        "2024-01-02T03:04:05.5+01:30",
        "sha256:9966d6e1aca4ce2d128bf11e0fc0a477eca0cfa97b5c3f6caf06fa1aec716cdd",
        "application/vnd.oci.image.layer.v1.tar+zstd",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();

    let config_for_top = max_config.clone();
    let corpora = [
        Corpus {
            name: "cache config",
            seeds: vec![max_config.clone()],
            weight: 5,
            decode: Box::new(decode_config),
        },
        Corpus {
            name: "manifest / index / list",
            seeds: vec![max_manifest, index, docker],
            weight: 4,
            decode: Box::new(move |b| decode_top(b, &config_for_top)),
        },
        Corpus {
            name: "config under a manifest",
            seeds: vec![max_config],
            weight: 1,
            decode: Box::new(|b| {
                let m = blob(
                    "local-max",
                    "sha256:83b2b9fb42354a1f2928260f80624dd4bf1dd4dd5598626425eb0eba1a2abf6a",
                );
                decode_top(&m, b)
            }),
        },
        Corpus {
            name: "annotated config",
            seeds: vec![annotated],
            weight: 4,
            decode: Box::new(decode_ann),
        },
        Corpus {
            name: "inline image config",
            seeds: vec![inline_config],
            weight: 2,
            decode: Box::new(move |b| {
                if let Ok(Some((cache, _))) = decode_inline(&inline_image, b) {
                    exercise(&cache);
                }
            }),
        },
        Corpus {
            name: "cache option",
            seeds: specs,
            weight: 2,
            decode: Box::new(decode_spec),
        },
        Corpus {
            name: "time / digest / media type",
            seeds: scalars,
            weight: 1,
            decode: Box::new(decode_scalars),
        },
        Corpus {
            name: "layer tar",
            seeds: vec![tar],
            weight: 1,
            decode: Box::new(decode_tar),
        },
    ];

    // Quiet the default hook: a panic is reported once, with its input, below.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let total_weight: usize = corpora.iter().map(|c| c.weight).sum();
    let mut rng = Rng(0x0bad_1297_u64 ^ 0x9E37_79B9_7F4A_7C15);
    let mut failures: Vec<String> = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let start = Instant::now();
    for i in 0..MUTATIONS {
        let mut pick = rng.below(total_weight);
        let corpus = corpora
            .iter()
            .find(|c| {
                if pick < c.weight {
                    true
                } else {
                    pick -= c.weight;
                    false
                }
            })
            .unwrap();
        let seed = &corpus.seeds[rng.below(corpus.seeds.len())];
        let other = &corpus.seeds[rng.below(corpus.seeds.len())];
        let mut data = seed.clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut data, other);
        }
        *counts.entry(corpus.name).or_default() += 1;
        let r = catch_unwind(AssertUnwindSafe(|| (corpus.decode)(&data)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!(
                "mutation {i} of a {} panicked: {msg}\ninput ({} bytes): {:?}",
                corpus.name,
                data.len(),
                String::from_utf8_lossy(&data[..data.len().min(4000)])
            ));
            if failures.len() >= 5 {
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!("{MUTATIONS} mutations in {:?}: {counts:?}", start.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Run `f` on a thread; fail if it takes longer than `limit` (the thread is left running).
fn within(limit: Duration, what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(limit).is_ok(),
        "{what}: not done after {:?} (limit {limit:?})",
        start.elapsed()
    );
}

fn record_digest(i: usize) -> String {
    Digest::of_bytes(format!("record-{i}").as_bytes()).to_string()
}

#[test]
fn a_record_with_many_inputs_decodes_in_linear_time() {
    let slots = 50_000;
    let inputs = vec!["[{\"link\":1}]"; slots].join(",");
    let config = format!(
        "{{\"records\":[{{\"digest\":\"{}\",\"inputs\":[{inputs}]}},{{\"digest\":\"{}\"}}]}}",
        record_digest(0),
        record_digest(1)
    );
    within(Duration::from_secs(5), "50 000 input slots", move || {
        let c = CacheConfig::from_slice(config.as_bytes(), "wide").unwrap();
        AbstractCache::from_config(&c, |_| None).unwrap();
    });
}

#[test]
fn results_on_one_long_chain_do_not_expand_quadratically() {
    let n = 4000;
    let blob = "sha256:9966d6e1aca4ce2d128bf11e0fc0a477eca0cfa97b5c3f6caf06fa1aec716cdd";
    let layers: Vec<String> = (0..n)
        .map(|i| format!("{{\"blob\":\"{blob}\",\"parent\":{}}}", i as i64 - 1))
        .collect();
    let records: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{\"layers\":[{{\"layer\":{},\"createdAt\":\"2026-01-01T00:00:00Z\"}}],\"digest\":\"{}\"}}",
                n - 1,
                record_digest(i)
            )
        })
        .collect();
    let config = format!(
        "{{\"layers\":[{}],\"records\":[{}]}}",
        layers.join(","),
        records.join(",")
    );
    assert!(config.len() < 1 << 20, "under BuildKit's 1 MiB import limit");
    within(
        Duration::from_secs(5),
        "4 000 results on a 4 000-layer chain",
        move || {
            let c = CacheConfig::from_slice(config.as_bytes(), "chain").unwrap();
            // Either it loads, or it is refused by the bound on layer references; never a
            // quadratic blow-up of memory and time.
            match AbstractCache::from_config(&c, |d| Some(Descriptor::new(MediaType::OciLayerGzip, d.clone(), 1))) {
                Ok((cache, _)) => {
                    let _ = cache.to_config().to_bytes().unwrap();
                }
                Err(e) => assert!(e.to_string().contains("layer references"), "{e}"),
            }
        },
    );
}

#[test]
fn tar_entry_with_a_size_near_u64_max_is_an_error() {
    let mut h = [0u8; 512];
    h[..4].copy_from_slice(b"link");
    h[124] = 0x80; // base-256
    h[128..136].copy_from_slice(&u64::MAX.to_be_bytes());
    h[156] = b'2';
    h[257..263].copy_from_slice(b"ustar\0");
    let mut tar = h.to_vec();
    tar.extend_from_slice(&[0u8; 1024]);
    let mut r: &[u8] = &tar;
    let result = catch_unwind(AssertUnwindSafe(|| {
        bkcache_core::tar::for_each_entry(&mut r, |_, _| Ok(()))
    }));
    let result = result.expect("no panic");
    assert!(result.is_err(), "an absurd size is an error");
}
