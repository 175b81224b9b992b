//! The record graph: one box per record (cache key), an edge from each input to the record that
//! uses it, roots at the top; laid out by [`crate::layout`] and drawn as inline SVG.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use bkcache_core::inspect::human_bytes;
use bkcache_core::{AbstractCache, Digest};

use crate::html::esc;
use crate::layout::{layered, Spacing};

/// A box of the graph.
pub struct Node {
    /// The record's cache key.
    pub digest: Digest,
    /// `result` / `none`, or `shared` / `only-a` / `only-b` in a diff.
    pub class: &'static str,
    /// Second line of the box.
    pub sub: String,
    /// Hover text.
    pub title: String,
}

/// Nodes and edges (from input record, to the record using it, input slot).
#[derive(Default)]
pub struct Graph {
    /// The boxes.
    pub nodes: Vec<Node>,
    /// The edges.
    pub edges: Vec<(usize, usize, usize)>,
}

/// Results shown in a box's hover text; the rest are counted.
const RESULTS_SHOWN: usize = 6;

/// Hover text and second line for record `r` of `cache`.
fn describe(cache: &AbstractCache, r: usize) -> (String, String) {
    let rec = &cache.records[r];
    let mut title = format!("cache key {}\n{} input slot(s)", rec.digest, rec.inputs.len());
    for (slot, alts) in rec.inputs.iter().enumerate() {
        for i in alts {
            let sel = if i.selector.is_empty() {
                String::new()
            } else {
                format!(" selector {}", i.selector)
            };
            let _ = write!(
                title,
                "\n  input {slot} <- {}{sel}",
                cache.records[i.link].digest.short()
            );
        }
    }
    let mut top_bytes = 0;
    for (n, res) in rec.results.iter().enumerate() {
        let Some(top) = res.blobs.last() else { continue };
        let size = cache.blobs.get(top).map_or(0, |d| d.size);
        top_bytes = top_bytes.max(size);
        if n < RESULTS_SHOWN {
            let _ = write!(
                title,
                "\nresult {n}: top layer {top} ({}), a chain of {} layer(s), created {}",
                human_bytes(size),
                res.blobs.len(),
                res.created_at
            );
        }
    }
    if rec.results.len() > RESULTS_SHOWN {
        let _ = write!(title, "\n... and {} more result(s)", rec.results.len() - RESULTS_SHOWN);
    }
    let sub = match rec.results.len() {
        0 => "no result".to_owned(),
        1 => format!("1 result · {}", human_bytes(top_bytes)),
        n => format!("{n} results · {}", human_bytes(top_bytes)),
    };
    (title, sub)
}

/// The graph of one cache.
pub fn of_cache(cache: &AbstractCache) -> Graph {
    let mut g = Graph::default();
    for (r, rec) in cache.records.iter().enumerate() {
        let (title, sub) = describe(cache, r);
        g.nodes.push(Node {
            digest: rec.digest.clone(),
            class: if rec.results.is_empty() { "none" } else { "result" },
            sub,
            title,
        });
        for (slot, alts) in rec.inputs.iter().enumerate() {
            g.edges.extend(alts.iter().map(|i| (i.link, r, slot)));
        }
    }
    g
}

/// The union of two caches' graphs, records matched by cache key and coloured by side.
pub fn of_diff(a: &AbstractCache, b: &AbstractCache) -> Graph {
    let in_b: HashSet<&Digest> = b.records.iter().map(|r| &r.digest).collect();
    let mut index: HashMap<&Digest, usize> = HashMap::new();
    let mut g = Graph::default();
    let mut edges: BTreeMap<(usize, usize, usize), ()> = BTreeMap::new();
    for (side, cache) in [("a", a), ("b", b)] {
        let mut local = Vec::with_capacity(cache.records.len());
        for (r, rec) in cache.records.iter().enumerate() {
            let id = *index.entry(&rec.digest).or_insert_with(|| {
                let (title, sub) = describe(cache, r);
                let class = match (side, in_b.contains(&rec.digest)) {
                    ("a", true) => "shared",
                    ("a", false) => "only-a",
                    _ => "only-b",
                };
                g.nodes.push(Node {
                    digest: rec.digest.clone(),
                    class,
                    sub,
                    title,
                });
                g.nodes.len() - 1
            });
            local.push(id);
        }
        for (r, rec) in cache.records.iter().enumerate() {
            for (slot, alts) in rec.inputs.iter().enumerate() {
                for i in alts {
                    edges.insert((local[i.link], local[r], slot), ());
                }
            }
        }
    }
    g.edges = edges.into_keys().collect();
    g
}

/// Draw the graph: edges under boxes; each box a `g.node` with `data-digest` and its title.
pub fn svg(g: &Graph) -> String {
    let s = Spacing::default();
    let pairs: Vec<(usize, usize)> = g.edges.iter().map(|&(a, b, _)| (a, b)).collect();
    let l = layered(g.nodes.len(), &pairs, s);
    let (w, h) = (l.width.max(s.node_width), l.height.max(s.node_height));
    let mut out = format!("<svg class=\"graph\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\">");
    for &(a, b, slot) in &g.edges {
        let (x1, y1) = (l.x[a] + s.node_width / 2.0, l.y[a] + s.node_height);
        let (x2, y2) = (l.x[b] + s.node_width / 2.0, l.y[b]);
        let bend = (y2 - y1).abs().max(20.0) / 2.0;
        let _ = write!(
            out,
            "<path class=\"edge\" d=\"M{x1:.1} {y1:.1} C{x1:.1} {:.1} {x2:.1} {:.1} {x2:.1} {y2:.1}\"><title>input {slot} of {}: {}</title></path>",
            y1 + bend,
            y2 - bend,
            g.nodes[b].digest.short(),
            g.nodes[a].digest.short()
        );
    }
    for (i, n) in g.nodes.iter().enumerate() {
        let _ = write!(
            out,
            "<g class=\"node {}\" data-digest=\"{}\" transform=\"translate({:.1},{:.1})\"><title>{}</title>\
             <rect width=\"{}\" height=\"{}\" rx=\"4\"></rect><text x=\"8\" y=\"16\">{}</text><text class=\"sub\" x=\"8\" y=\"32\">{}</text></g>",
            n.class,
            n.digest,
            l.x[i],
            l.y[i],
            esc(&n.title),
            s.node_width,
            s.node_height,
            n.digest.short(),
            esc(&n.sub)
        );
    }
    out.push_str("</svg>");
    out
}
