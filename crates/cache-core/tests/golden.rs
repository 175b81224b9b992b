//! Golden tests over real BuildKit v0.32.2 caches (`testdata/buildkit-v0.32.2`, copied from
//! the shared fixtures): decode then encode must give back BuildKit's bytes.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use bkcache_core::annotated::{decode_annotated, encode_annotated};
use bkcache_core::manifest::{encode_manifest, Index, TopLevel, Wrapper};
use bkcache_core::{AbstractCache, Digest, Mode};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/buildkit-v0.32.2")
}

fn blob(case: &str, d: &Digest) -> Vec<u8> {
    std::fs::read(fixtures().join(case).join("cache/blobs/sha256").join(d.hex())).unwrap()
}

struct Loaded {
    manifest_bytes: Vec<u8>,
    config_bytes: Vec<u8>,
    wrapper: Wrapper,
    cache: AbstractCache,
}

fn load(case: &str, tag: &str) -> Loaded {
    let index_bytes = std::fs::read(fixtures().join(case).join("cache/index.json")).unwrap();
    let index = Index::from_slice(&index_bytes, "index.json").unwrap();
    assert_eq!(
        index.to_bytes().unwrap(),
        index_bytes,
        "{case}: index.json re-encodes byte-exact"
    );
    let entry = index
        .manifests
        .iter()
        .find(|d| {
            d.annotations
                .get("org.opencontainers.image.ref.name")
                .map(String::as_str)
                == Some(tag)
        })
        .unwrap();
    let manifest_bytes = blob(case, &entry.digest);
    let top = TopLevel::detect(&manifest_bytes, case).unwrap();
    let cm = top.cache_manifest().expect("a cache manifest");
    let config_bytes = blob(case, &cm.config.digest);
    let (cache, warnings) = cm.decode(&config_bytes).unwrap();
    assert!(warnings.is_empty(), "{case}: {warnings:?}");
    Loaded {
        manifest_bytes,
        config_bytes,
        wrapper: cm.wrapper,
        cache,
    }
}

#[test]
fn every_local_fixture_re_encodes_byte_identical() {
    let facts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("facts.json")).unwrap()).unwrap();
    let mut checked = 0;
    for case in facts["cases"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        if !name.starts_with("local-") {
            continue;
        }
        for tag in case["tags"].as_array().unwrap() {
            let l = load(name, tag["tag"].as_str().unwrap());
            assert_eq!(
                l.cache.blobs.len() as u64,
                tag["config_layers"].as_u64().unwrap(),
                "{name} layers"
            );
            assert_eq!(
                l.cache.records.len() as u64,
                tag["config_records"].as_u64().unwrap(),
                "{name} records"
            );
            assert_eq!(
                l.cache.result_count() as u64,
                tag["records_with_layers"].as_u64().unwrap(),
                "{name} results"
            );
            let oci = l.wrapper != Wrapper::DockerManifestList;
            let enc = encode_manifest(&l.cache, l.wrapper, oci).unwrap();
            assert_eq!(
                String::from_utf8(enc.config_bytes).unwrap(),
                String::from_utf8(l.config_bytes).unwrap(),
                "{name} config"
            );
            assert_eq!(
                String::from_utf8(enc.manifest_bytes).unwrap(),
                String::from_utf8(l.manifest_bytes).unwrap(),
                "{name} manifest"
            );
            assert_eq!(enc.manifest.digest.as_str(), tag["manifest_digest"].as_str().unwrap());
            checked += 1;
        }
    }
    assert_eq!(checked, 9, "8 local fixtures, one with two tags");
}

#[test]
fn wrappers_convert_into_each_other_like_buildkit() {
    let max = load("local-max", "latest");
    let index = load("local-index", "latest");
    let docker = load("local-docker", "latest");
    assert_eq!(
        encode_manifest(&max.cache, Wrapper::OciIndex, true)
            .unwrap()
            .manifest_bytes,
        index.manifest_bytes
    );
    assert_eq!(
        encode_manifest(&index.cache, Wrapper::DockerManifestList, false)
            .unwrap()
            .manifest_bytes,
        docker.manifest_bytes
    );
    assert_eq!(
        encode_manifest(&docker.cache, Wrapper::ImageManifest, true)
            .unwrap()
            .manifest_bytes,
        max.manifest_bytes
    );
}

#[test]
fn mode_min_of_local_max_is_local_min() {
    let max = load("local-max", "latest");
    let min = load("local-min", "latest");
    let converted = max.cache.apply_mode(Mode::Min);
    assert_eq!(converted.records.len(), min.cache.records.len(), "same records");
    assert_eq!(converted.layer_order(), min.cache.layer_order(), "same layers");
    let enc = encode_manifest(&converted, Wrapper::ImageManifest, true).unwrap();
    assert_eq!(
        String::from_utf8(enc.config_bytes).unwrap(),
        String::from_utf8(min.config_bytes).unwrap()
    );
    assert_eq!(
        enc.manifest_bytes, min.manifest_bytes,
        "byte-identical to BuildKit's own min export"
    );
    assert_eq!(min.cache.apply_mode(Mode::Min), min.cache, "min is idempotent");
}

#[test]
fn annotated_form_matches_buildkit_s3_export() {
    let s3 = std::fs::read(fixtures().join("s3-max/manifest-main.json")).unwrap();
    assert_eq!(
        Digest::of_bytes(&s3).as_str(),
        "sha256:1a311571886e7fcbb53ab2dd438802acc7edbfc0adc54346899fa95a7672d1be"
    );
    let max = load("local-max", "latest");
    assert_eq!(
        String::from_utf8(encode_annotated(&max.cache).unwrap()).unwrap(),
        String::from_utf8(s3.clone()).unwrap()
    );
    let (decoded, warnings) = decode_annotated(&s3, "s3").unwrap();
    assert!(warnings.is_empty());
    assert_eq!(
        encode_manifest(&decoded, Wrapper::ImageManifest, true)
            .unwrap()
            .manifest_bytes,
        max.manifest_bytes
    );
}

#[test]
fn merge_of_two_tags_unites_both_builds() {
    let main = load("local-two-tags", "main");
    let feature = load("local-two-tags", "feature");
    let merged = AbstractCache::merge([main.cache.clone(), feature.cache.clone()]);
    let distinct: std::collections::BTreeSet<&Digest> = main
        .cache
        .records
        .iter()
        .chain(&feature.cache.records)
        .map(|r| &r.digest)
        .collect();
    assert_eq!(
        merged.records.len(),
        distinct.len(),
        "records with the same key and inputs become one"
    );
    // The same build exported twice (max and min) shares every key: merging gives max back.
    let max = load("local-max", "latest");
    let min = load("local-min", "latest");
    let both = AbstractCache::merge([min.cache.clone(), max.cache.clone()]);
    assert_eq!((both.records.len(), both.result_count(), both.blobs.len()), (13, 7, 7));
    assert_eq!(both.to_config().to_bytes().unwrap(), max.config_bytes);
    assert_eq!(merged.blobs.len(), 10, "3 + 7 distinct layers");
    let again = AbstractCache::merge([merged.clone(), main.cache.clone()]);
    assert_eq!(
        again.to_config(),
        merged.to_config(),
        "merging the same cache twice changes nothing"
    );
}

#[test]
fn detection_rejects_ambiguous_and_mismatched() {
    let e = TopLevel::detect(br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#, "x").unwrap_err();
    assert!(e.to_string().contains("ambiguous"), "{e}");
    let e = TopLevel::detect(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","layers":[],"config":{"mediaType":"a","digest":"sha256:0ad52e338662c923b15fd45a73c6e97336efccf28a7aef9449443cc6dd7415fb","size":1}}"#, "x").unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    let e = TopLevel::detect(b"{\"schemaVersion\":2,\"manif", "index.json").unwrap_err();
    assert!(e.to_string().contains("index.json is not valid JSON"), "{e}");
}
