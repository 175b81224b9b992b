//! The cache option parser (`--cache-from` / `--cache-to` strings: CSV, the bare-reference form,
//! bake's JSON form), then what is done with a parsed spec: printing (redacted) and the common
//! export options.

#![no_main]

use bkcache_core::{CacheSpec, ExportOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(specs) = CacheSpec::parse(text) {
        for spec in &specs {
            let shown = spec.to_string();
            let _ = format!("{spec:?}");
            let _ = ExportOptions::from_attrs(&spec.attrs);
            // What is printed parses again (the spec is shown in errors and reports).
            let _ = CacheSpec::parse(&shown);
        }
    }
    let _ = CacheSpec::parse_all(&[text, text]);
});
