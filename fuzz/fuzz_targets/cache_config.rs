//! The cache config decoder, both encodings: the manifest family's plain config (every blob
//! described) and the gha/s3/azblob annotated config; whatever decodes is re-encoded in every
//! wrapper, filtered to `mode=min`, merged and summarised.

#![no_main]

use bkcache_core::annotated::{decode_annotated, encode_annotated};
use bkcache_core::manifest::encode_manifest;
use bkcache_core::{inspect, AbstractCache, CacheConfig, Descriptor, GoTime, MediaType, Mode, Wrapper};
use libfuzzer_sys::fuzz_target;

fn exercise(cache: &AbstractCache) {
    let _ = cache.to_config().to_bytes();
    let min = cache.apply_mode(Mode::Min);
    for w in [Wrapper::ImageManifest, Wrapper::OciIndex, Wrapper::DockerManifestList] {
        let _ = encode_manifest(cache, w, w != Wrapper::DockerManifestList);
    }
    let _ = encode_annotated(cache);
    let _ = inspect::age_histogram(cache, GoTime::from_unix(1_800_000_000, 0));
    let _ = AbstractCache::merge([cache.clone(), min]);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = CacheConfig::from_slice(data, "fuzz") {
        let _ = config.to_bytes();
        if let Ok((cache, _)) = AbstractCache::from_config(&config, |d| {
            Some(Descriptor::new(MediaType::OciLayerGzip, d.clone(), 1))
        }) {
            exercise(&cache);
        }
    }
    if let Ok((cache, _)) = decode_annotated(data, "fuzz") {
        exercise(&cache);
    }
});
