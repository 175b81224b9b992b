//! The top-level manifest decoder (image manifest, OCI index, Docker manifest list, detected
//! from the bytes as BuildKit does), then the cache it names, decoded with BuildKit's real
//! local-max config and re-encoded in the wrapper it came in.

#![no_main]

use bkcache_core::manifest::{encode_manifest, TopLevel};
use bkcache_core::{inspect, GoTime, Wrapper};
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
    if let Ok((cache, _)) = cm.decode(CONFIG) {
        let _ = encode_manifest(&cache, cm.wrapper, cm.wrapper != Wrapper::DockerManifestList);
        let _ = inspect::age_histogram(&cache, GoTime::from_unix(1_800_000_000, 0));
    }
});
