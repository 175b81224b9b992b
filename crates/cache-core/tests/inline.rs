//! Golden tests of the inline cache codec over BuildKit v0.32.2's inline fixture (`testdata/buildkit-v0.32.2/inline`) and spec fixture F5.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bkcache_core::cache::{Input, LayerChain, Record};
use bkcache_core::config::records_from_slice;
use bkcache_core::descriptor::{ANNOTATION_CREATED_AT, ANNOTATION_UNCOMPRESSED};
use bkcache_core::gojson::to_go_json;
use bkcache_core::inline::{decode_inline, encode_inline, ANNOTATION_DESCRIPTION, INLINE_CACHE_KEY};
use bkcache_core::manifest::{ImageManifest, TopLevel};
use bkcache_core::{AbstractCache, Descriptor, Digest, GoTime, MediaType};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/buildkit-v0.32.2")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap()
}

/// The pushed image: manifest and config bytes exactly as BuildKit wrote them.
fn inline_image() -> (ImageManifest, Vec<u8>) {
    let manifest_bytes = read("inline/registry/manifest.json");
    assert_eq!(manifest_bytes.len(), 855);
    assert_eq!(
        Digest::of_bytes(&manifest_bytes).as_str(),
        "sha256:d96a3cd11cdc96d112685068fbb8729126e3118e8a1a6b81225ef10de9a2f991"
    );
    let TopLevel::Manifest(manifest) = TopLevel::detect(&manifest_bytes, "inline manifest").unwrap() else {
        panic!("the inline fixture is an image manifest");
    };
    assert!(
        TopLevel::Manifest(manifest.clone()).cache_manifest().is_none(),
        "a plain image"
    );
    let config = read("inline/registry/config.json");
    assert_eq!(Digest::of_bytes(&config), manifest.config.digest);
    assert_eq!(
        config,
        read("inline/oci/config.json"),
        "the OCI tar holds the same config"
    );
    (*manifest, config)
}

/// The config with the inline-cache key removed, as Go would marshal it.
fn without_key(config: &[u8]) -> Vec<u8> {
    let mut m: BTreeMap<String, Box<serde_json::value::RawValue>> = serde_json::from_slice(config).unwrap();
    assert!(m.remove(INLINE_CACHE_KEY).is_some());
    to_go_json(&m).unwrap()
}

fn records_text(config: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(config).unwrap();
    String::from_utf8(STANDARD.decode(v[INLINE_CACHE_KEY].as_str().unwrap()).unwrap()).unwrap()
}

/// A cache from a local fixture, by manifest digest (also reaches orphan manifests).
fn local_cache(case: &str, manifest_hex: &str) -> AbstractCache {
    let dir = fixtures().join(case).join("cache/blobs/sha256");
    let bytes = std::fs::read(dir.join(manifest_hex)).unwrap();
    let cm = TopLevel::detect(&bytes, case).unwrap().cache_manifest().unwrap();
    let config = std::fs::read(dir.join(cm.config.digest.hex())).unwrap();
    let (cache, warnings) = cm.decode(&config).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    cache
}

#[test]
fn decode_buildkit_inline_fixture() {
    let (manifest, config) = inline_image();
    let (cache, warnings) = decode_inline(&manifest, &config).unwrap().expect("an inline cache");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(cache.records.len(), 6);
    assert_eq!(cache.result_count(), 3);
    assert_eq!(cache.blobs.len(), 3);

    let view: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let layers: Vec<&Digest> = manifest.layers.iter().map(|l| &l.digest).collect();
    for (i, layer) in manifest.layers.iter().enumerate() {
        let desc = &cache.blobs[&layer.digest];
        assert_eq!(desc.media_type, MediaType::OciLayerGzip);
        assert_eq!(desc.size, layer.size);
        assert_eq!(
            desc.annotations[ANNOTATION_UNCOMPRESSED],
            view["rootfs"]["diff_ids"][i].as_str().unwrap()
        );
        assert_eq!(
            desc.annotations[ANNOTATION_CREATED_AT],
            view["history"][i]["created"].as_str().unwrap()
        );
        assert_eq!(
            desc.annotations[ANNOTATION_DESCRIPTION],
            view["history"][i]["created_by"].as_str().unwrap()
        );
    }
    // Every result is a prefix of the image's layers: one per length 1, 2, 3.
    let mut lengths: Vec<usize> = Vec::new();
    for rec in &cache.records {
        for res in &rec.results {
            assert_eq!(res.blobs.iter().collect::<Vec<_>>(), layers[..res.blobs.len()]);
            lengths.push(res.blobs.len());
        }
    }
    lengths.sort();
    assert_eq!(lengths, [1, 2, 3]);
    // Result times are the records' own, not the history's.
    let top = cache
        .records
        .iter()
        .flat_map(|r| &r.results)
        .find(|r| r.blobs.len() == 3)
        .unwrap();
    assert_eq!(top.created_at.to_string(), "2026-11-23T14:28:19.605960195Z");
}

#[test]
fn encode_round_trips_buildkit_config_byte_exact() {
    let (manifest, config) = inline_image();
    let (cache, _) = decode_inline(&manifest, &config).unwrap().unwrap();
    let out = encode_inline(&cache, &manifest, &config)
        .unwrap()
        .expect("results over the image");
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        String::from_utf8(config).unwrap()
    );
    assert_eq!(
        Digest::of_bytes(&out).as_str(),
        "sha256:8abef9c2826d8f3df7dcc56f7e725f87f649c4d846b867e5775e59f8b6c7140f"
    );
}

/// local-two-tags step 1 (ctx1, mode=max; its manifest and config stayed behind as orphans when
/// step 2 re-tagged `main`) built the same image as the inline fixture, from the same daemon:
/// embedding that local cache into the plain image config gives BuildKit's inline config.
#[test]
fn local_cache_of_same_build_encodes_to_buildkit_inline_config() {
    let (manifest, config) = inline_image();
    let step1 = local_cache(
        "local-two-tags",
        "902c35d8a3f493bfabfb850a150a751e577b004223498db3a20050f00453027b",
    );
    assert_eq!(step1.result_count(), 3);
    let plain = without_key(&config);
    assert!(!String::from_utf8_lossy(&plain).contains(INLINE_CACHE_KEY));
    assert_eq!(decode_inline(&manifest, &plain).unwrap(), None, "no key, no cache");
    let out = encode_inline(&step1, &manifest, &plain).unwrap().unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(config.clone()).unwrap()
    );
    // Replacing an existing key gives the same bytes.
    assert_eq!(encode_inline(&step1, &manifest, &config).unwrap().unwrap(), config);
}

/// local-two-tags `main` is ctx1-mod: a new a.txt layer under b.bin and dir layers that the
/// image shares. Every result sits on the new bottom layer, so nothing matches the image.
/// Merged with step 1, only step 1's results survive, and ctx1-mod's records stay as bare keys.
#[test]
fn encode_keeps_only_results_over_image_layers() {
    let (manifest, config) = inline_image();
    let image: Vec<&Digest> = manifest.layers.iter().map(|l| &l.digest).collect();
    let main = local_cache(
        "local-two-tags",
        "d2ecc563419cfde0727eeacedb6fa80d5b124112529373055a95d36026ea0049",
    );
    assert_eq!(main.result_count(), 3);
    let shared = main.blobs.keys().filter(|d| image.contains(d)).count();
    assert_eq!(shared, 2, "b.bin and dir layers are the image's");
    assert_eq!(encode_inline(&main, &manifest, &config).unwrap(), None);

    let step1 = local_cache(
        "local-two-tags",
        "902c35d8a3f493bfabfb850a150a751e577b004223498db3a20050f00453027b",
    );
    let merged = AbstractCache::merge([main, step1]);
    assert_eq!((merged.records.len(), merged.result_count()), (10, 6));
    let out = encode_inline(&merged, &manifest, &config).unwrap().unwrap();
    let (back, warnings) = decode_inline(&manifest, &out).unwrap().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(back.records.len(), 10);
    assert_eq!(back.result_count(), 3);
    assert!(back.blobs.keys().all(|d| image.contains(&d)));
    // Records are sorted by digest: the two f57d… keys are neighbours.
    let text = records_text(&out);
    let records = records_from_slice(text.as_bytes(), "records").unwrap();
    assert!(records.windows(2).all(|w| w[0].digest <= w[1].digest));
    assert!(records.iter().all(|r| r.chained_results.is_empty()));
}

fn dg(n: u32) -> Digest {
    Digest::parse(&format!("sha256:{n:064x}")).unwrap()
}

fn t(s: &str) -> GoTime {
    s.parse().unwrap()
}

fn synthetic_image() -> (ImageManifest, Vec<u8>) {
    let layer = |d: Digest| {
        format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":10}}"#)
    };
    let manifest: ImageManifest = serde_json::from_str(&format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[{},{},{}]}}"#,
        dg(0xcf),
        layer(dg(0xa0)),
        layer(dg(0xb0)),
        layer(dg(0xc0))
    ))
    .unwrap();
    // Pretty-printed, keys unsorted, HTML characters: Go compacts, sorts and escapes.
    let config = format!(
        "{{\n  \"rootfs\": {{ \"type\": \"layers\", \"diff_ids\": [\"{}\", \"{}\", \"{}\"] }},\n  \"config\": {{ \"Labels\": {{ \"x\": \"<a & b>\" }} }},\n  \"architecture\": \"amd64\"\n}}\n",
        dg(0xa1),
        dg(0xb1),
        dg(0xc1)
    );
    (manifest, config.into_bytes())
}

/// A hand-made cache against a 3-layer image [A, B, C]: a prefix result, a non-prefix result
/// over image layers (→ chains), a result on a foreign blob (dropped), and a prefix whose second
/// blob is another compression of B (matched by diffID).
#[test]
fn synthetic_cache_gives_buildkit_shapes() {
    let (manifest, config) = synthetic_image();
    let (a, b, c, x, b_zstd) = (dg(0xa0), dg(0xb0), dg(0xc0), dg(0xf0), dg(0xb2));
    let chain = |blobs: &[&Digest], time: &str| LayerChain {
        blobs: blobs.iter().map(|d| (*d).clone()).collect(),
        created_at: t(time),
    };
    let rec = |n: u32, inputs: &[usize], results: Vec<LayerChain>| Record {
        digest: dg(n),
        inputs: inputs
            .iter()
            .map(|&link| {
                vec![Input {
                    selector: String::new(),
                    link,
                }]
            })
            .collect(),
        results,
    };
    let mut blobs = BTreeMap::new();
    for d in [&a, &b, &c, &x] {
        blobs.insert(d.clone(), Descriptor::new(MediaType::OciLayerGzip, d.clone(), 10));
    }
    let mut zstd = Descriptor::new(MediaType::OciLayerZstd, b_zstd.clone(), 12);
    zstd.annotations
        .insert(ANNOTATION_UNCOMPRESSED.to_owned(), dg(0xb1).to_string());
    blobs.insert(b_zstd.clone(), zstd);
    // Given out of order: the encoder sorts records by digest.
    let cache = AbstractCache {
        records: vec![
            rec(4, &[2], vec![chain(&[&a, &b, &c], "2024-01-01T00:00:04Z")]),
            rec(1, &[], vec![]),
            rec(3, &[1], vec![chain(&[&b, &c], "2024-01-01T00:00:03Z")]),
            rec(2, &[1], vec![chain(&[&a], "2024-01-01T00:00:02Z")]),
            rec(5, &[1], vec![chain(&[&x], "2024-01-01T00:00:05Z")]),
            rec(6, &[1], vec![chain(&[&a, &b_zstd], "2024-01-01T00:00:06+01:00")]),
        ],
        blobs,
    };
    let out = encode_inline(&cache, &manifest, &config).unwrap().unwrap();
    let (d1, d2, d3, d4, d5, d6) = (dg(1), dg(2), dg(3), dg(4), dg(5), dg(6));
    let expected_records = format!(
        concat!(
            r#"[{{"digest":"{d1}"}},"#,
            r#"{{"layers":[{{"layer":0,"createdAt":"2024-01-01T00:00:02Z"}}],"digest":"{d2}","inputs":[[{{"link":0}}]]}},"#,
            r#"{{"chains":[{{"layers":[1,2],"createdAt":"0001-01-01T00:00:00Z"}}],"digest":"{d3}","inputs":[[{{"link":0}}]]}},"#,
            r#"{{"layers":[{{"layer":2,"createdAt":"2024-01-01T00:00:04Z"}}],"digest":"{d4}","inputs":[[{{"link":2}}]]}},"#,
            r#"{{"digest":"{d5}","inputs":[[{{"link":0}}]]}},"#,
            r#"{{"layers":[{{"layer":1,"createdAt":"2024-01-01T00:00:06+01:00"}}],"digest":"{d6}","inputs":[[{{"link":0}}]]}}]"#
        ),
        d1 = d1,
        d2 = d2,
        d3 = d3,
        d4 = d4,
        d5 = d5,
        d6 = d6
    );
    assert_eq!(records_text(&out), expected_records);
    let expected_config = format!(
        r#"{{"architecture":"amd64","config":{{"Labels":{{"x":"\u003ca \u0026 b\u003e"}}}},"{INLINE_CACHE_KEY}":"{}","rootfs":{{"type":"layers","diff_ids":["{}","{}","{}"]}}}}"#,
        STANDARD.encode(&expected_records),
        dg(0xa1),
        dg(0xb1),
        dg(0xc1)
    );
    assert_eq!(String::from_utf8(out.clone()).unwrap(), expected_config);

    // Reading it back: the chained result is B, C; the diffID prefix now names the image's B.
    let (back, warnings) = decode_inline(&manifest, &out).unwrap().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let results: Vec<(Digest, Vec<Digest>)> = back
        .records
        .iter()
        .flat_map(|r| r.results.iter().map(|c| (r.digest.clone(), c.blobs.clone())))
        .collect();
    assert_eq!(
        results,
        vec![
            (d2, vec![a.clone()]),
            (d3, vec![b.clone(), c.clone()]),
            (d4, vec![a.clone(), b.clone(), c]),
            (d6, vec![a, b]),
        ]
    );
    // And encoding that again is stable.
    assert_eq!(encode_inline(&back, &manifest, &out).unwrap().unwrap(), out);
}

#[test]
fn none_cases() {
    let (manifest, config) = inline_image();
    // Decode: no key.
    assert_eq!(decode_inline(&manifest, &without_key(&config)).unwrap(), None);
    // Decode: rootfs.diff_ids does not have one entry per layer.
    let mut two_layers = manifest.clone();
    two_layers.layers.pop();
    assert_eq!(decode_inline(&two_layers, &config).unwrap(), None);
    // Decode: an image with no layers.
    let mut no_layers = manifest.clone();
    no_layers.layers.clear();
    assert_eq!(decode_inline(&no_layers, &config).unwrap(), None);
    // Encode: nothing over the image's layers (the ctx2 cache shares no layer with ctx1).
    let ctx2 = local_cache(
        "local-max",
        "83b2b9fb42354a1f2928260f80624dd4bf1dd4dd5598626425eb0eba1a2abf6a",
    );
    assert!(ctx2.result_count() > 0);
    assert_eq!(encode_inline(&ctx2, &manifest, &config).unwrap(), None);
    assert_eq!(
        encode_inline(&AbstractCache::default(), &manifest, &config).unwrap(),
        None
    );
}

#[test]
fn errors_name_the_problem() {
    let (manifest, config) = inline_image();
    let text = String::from_utf8(config).unwrap();
    let bad = text.replacen(
        &format!("\"{INLINE_CACHE_KEY}\":\"W3"),
        &format!("\"{INLINE_CACHE_KEY}\":\"*3"),
        1,
    );
    assert_ne!(bad, text);
    let err = decode_inline(&manifest, bad.as_bytes()).unwrap_err().to_string();
    assert!(err.contains(INLINE_CACHE_KEY) && err.contains("base64"), "{err}");

    let not_records = text.replacen(
        &format!("\"{INLINE_CACHE_KEY}\":\"W3"),
        &format!("\"{INLINE_CACHE_KEY}\":\"e30=\",\"x\":\"W3"),
        1,
    );
    let err = decode_inline(&manifest, not_records.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("records"), "{err}");

    let err = encode_inline(&AbstractCache::default(), &manifest, b"[1]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("image config sha256:8abef9c2"), "{err}");
}

/// Spec fixture F5 (a real inline cache from a public image): the value decodes to exactly the
/// records text, which parses and re-encodes byte-exact, and survives a decode/encode through an
/// image with its two layers (the third history entry is an empty layer).
#[test]
fn spec_fixture_f5() {
    const VALUE: &str = "W3siZGlnZXN0Ijoic2hhMjU2OjBhMDNhMjBmMDY1M2I5MDVkMDA3ZmZmMDUzZGRiZjAyNGRiMTY0ODAwMTdhODU0ZmE5Y2I0ZDYxOTI0NTc4NzEifSx7ImRpZ2VzdCI6InNoYTI1Njo3MGQ4MGQzMjQ0YThkZDU1MTA0MzNhOTRkZDFlZmFjOGQyMDMyNjYyMmVhMmYxMzdhOGQwZjgxMzgwZTYxZGNiIn0seyJsYXllcnMiOlt7ImxheWVyIjoxLCJjcmVhdGVkQXQiOiIyMDI1LTA4LTEzVDEwOjQ5OjE5LjQ1NTAxNzg5NVoifV0sImRpZ2VzdCI6InNoYTI1NjpiNzc4NjcxMWNiNWQzOTA3NGMzZGYyNzU0YTE0MmNlOWRhMTE0NTM3OWU4MGJhZTlkN2EyMGE4MGMyYjBkMjhkIiwiaW5wdXRzIjpbW3sic2VsZWN0b3IiOiJzaGEyNTY6OGE1ZWRhYjI4MjYzMjQ0MzIxOWUwNTFlNGFkZTJkMWQ1YmJjNjcxYzc4MTA1MWJmMTQzNzg5N2NiZGZlYTBmMSIsImxpbmsiOjB9LHsic2VsZWN0b3IiOiJzaGEyNTY6OGE1ZWRhYjI4MjYzMjQ0MzIxOWUwNTFlNGFkZTJkMWQ1YmJjNjcxYzc4MTA1MWJmMTQzNzg5N2NiZGZlYTBmMSIsImxpbmsiOjF9XV19XQ==";
    const RECORDS: &str = r#"[{"digest":"sha256:0a03a20f0653b905d007fff053ddbf024db16480017a854fa9cb4d6192457871"},{"digest":"sha256:70d80d3244a8dd5510433a94dd1efac8d20326622ea2f137a8d0f81380e61dcb"},{"layers":[{"layer":1,"createdAt":"2025-08-13T10:49:19.455017895Z"}],"digest":"sha256:b7786711cb5d39074c3df2754a142ce9da1145379e80bae9d7a20a80c2b0d28d","inputs":[[{"selector":"sha256:8a5edab282632443219e051e4ade2d1d5bbc671c781051bf1437897cbdfea0f1","link":0},{"selector":"sha256:8a5edab282632443219e051e4ade2d1d5bbc671c781051bf1437897cbdfea0f1","link":1}]]}]"#;
    const DIFF_IDS: [&str; 2] = [
        "sha256:65014c70e84b6817fac42bb201ec5c1ea460a8da246cac0e481f5c9a9491eac0",
        "sha256:8f4aa887ecc8cf569c164bbb187545f4c234b0363a7f430781065311e24e7774",
    ];
    assert_eq!(STANDARD.decode(VALUE).unwrap(), RECORDS.as_bytes());
    let records = records_from_slice(RECORDS.as_bytes(), "F5").unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[2].results[0].layer, 1);
    assert_eq!(records[2].inputs[0].len(), 2);
    assert_eq!(to_go_json(&records).unwrap(), RECORDS.as_bytes());

    // The image: two layers (their compressed digests are not in the write-up; made up here).
    let (l0, l1) = (dg(0x50), dg(0x51));
    let layer = |d: &Digest| {
        format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":100}}"#)
    };
    let manifest: ImageManifest = serde_json::from_str(&format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[{},{}]}}"#,
        dg(0x5f),
        layer(&l0),
        layer(&l1)
    ))
    .unwrap();
    let config = format!(
        r#"{{"history":[{{"created":"2025-08-13T10:49:18Z","created_by":"ADD rootfs.tar.gz /"}},{{"created":"2025-08-13T10:49:19.45Z","created_by":"COPY flag.txt /"}},{{"created":"2025-08-13T10:49:20+02:00","created_by":"CMD [\"sh\"]","empty_layer":true}}],"{INLINE_CACHE_KEY}":"{VALUE}","rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
        DIFF_IDS[0], DIFF_IDS[1]
    );
    let (cache, warnings) = decode_inline(&manifest, config.as_bytes()).unwrap().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!((cache.records.len(), cache.result_count()), (3, 1));
    let d1 = &cache.blobs[&l1];
    assert_eq!(d1.annotations[ANNOTATION_UNCOMPRESSED], DIFF_IDS[1]);
    assert_eq!(d1.annotations[ANNOTATION_CREATED_AT], "2025-08-13T10:49:19.45Z");
    assert_eq!(d1.annotations[ANNOTATION_DESCRIPTION], "COPY flag.txt /");
    assert_eq!(
        encode_inline(&cache, &manifest, config.as_bytes()).unwrap().unwrap(),
        config.as_bytes()
    );
}
