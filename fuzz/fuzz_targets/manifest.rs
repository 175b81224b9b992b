//! The top-level manifest decoder (image manifest, OCI index, Docker manifest list, detected
//! from the bytes as BuildKit does), then the cache it names, decoded with BuildKit's real
//! local-max config and summarised.

#![no_main]

use bkcache_core::manifest::TopLevel;
use bkcache_core::store::LoadedCache;
use bkcache_core::{inspect, CacheFormat, Descriptor, Digest};
use libfuzzer_sys::fuzz_target;

/// BuildKit v0.32.2's local-max cache config.
const CONFIG: &[u8] = include_bytes!(
    "../../testdata/buildkit-v0.32.2/local-max/cache/blobs/sha256/69f9d08aca7363311b8dc19aa453e7962e95ef402280bf0f38960c7407ed5770"
);

fuzz_target!(|data: &[u8]| {
    let Ok(top) = TopLevel::detect(data, "fuzz") else {
        return;
    };
    let Some(cm) = top.cache_manifest() else {
        return;
    };
    if let Ok((cache, warnings)) = cm.decode(CONFIG) {
        let loaded = LoadedCache {
            cache,
            format: CacheFormat::Manifest(cm.wrapper),
            manifest: Descriptor::new(cm.wrapper.media_type(), Digest::of_bytes(data), data.len() as u64),
            config: Some(cm.config.clone()),
            warnings,
        };
        let _ = inspect::summarize("fuzz", &loaded);
    }
});
