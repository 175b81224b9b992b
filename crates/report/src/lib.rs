//! Views of a BuildKit cache for people: one self-contained HTML page for `bkcache inspect
//! --html` and `bkcache diff --html`, and Graphviz DOT for `bkcache inspect --format dot`.
//!
//! A page holds the summary `inspect` prints, the record graph (each cache key a box, an edge
//! from each input, roots at the top, boxes with results marked; hover shows the key, its
//! inputs and each result's top layer digest, size and chain length), the age histogram, a
//! treemap of layer sizes and a layer table sortable by size and age. A diff page draws both
//! caches in one graph with shared, only-A and only-B records in colour, and the bytes of each.
//!
//! Everything is inline (SVG, CSS, a few lines of JavaScript for sorting): no network fetch,
//! works from `file://`. A cache over [`ReportOptions::max_graph_records`] records gets no
//! graph, and over [`ReportOptions::max_layers`] layers lists the biggest ones only, so a page
//! stays readable and small. The layout is our own small layering ([`layout`], where the
//! choice against the dagre ports is explained).
//!
//! ```
//! use bkcache_core::{AbstractCache, Descriptor, MediaType};
//! use bkcache_core::cache::{LayerChain, Record};
//! use bkcache_core::store::{CacheFormat, LoadedCache};
//!
//! let layer = Descriptor::of_bytes(MediaType::OciLayerGzip, b"layer");
//! let mut cache = AbstractCache::default();
//! cache.blobs.insert(layer.digest.clone(), layer.clone());
//! cache.records.push(Record {
//!     digest: bkcache_core::Digest::of_bytes(b"key"),
//!     inputs: Vec::new(),
//!     results: vec![LayerChain { blobs: vec![layer.digest.clone()], created_at: bkcache_core::GoTime::now() }],
//! });
//! let loaded = LoadedCache {
//!     cache,
//!     format: CacheFormat::Manifest(bkcache_core::Wrapper::ImageManifest),
//!     manifest: Descriptor::of_bytes(MediaType::OciImageManifest, b"{}"),
//!     config: None,
//!     warnings: Vec::new(),
//!     parts: Vec::new(),
//! };
//! let summary = bkcache_core::inspect::summarize("local:/tmp/cache", &loaded);
//! let page = bkcache_report::inspect_html(&summary, &loaded.cache, &Default::default());
//! assert_eq!(page.matches("<g class=\"node ").count(), 1);
//! assert!(bkcache_report::dot(&loaded.cache).starts_with("digraph cache {"));
//! ```

mod charts;
mod dot;
mod graph;
mod html;
pub mod layout;
mod pages;

pub use dot::dot;
pub use pages::{diff_html, inspect_html};

/// This crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Limits that keep a page readable.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Above this many records the graph is left out (a summary says so).
    pub max_graph_records: usize,
    /// Above this many layers only the biggest this many are listed.
    pub max_layers: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            max_graph_records: 1500,
            max_layers: 1000,
        }
    }
}

// The README's examples compile too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
