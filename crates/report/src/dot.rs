//! Graphviz DOT of the record graph (`bkcache inspect --format dot | dot -Tsvg`).

use std::fmt::Write as _;

use bkcache_core::inspect::human_bytes;
use bkcache_core::AbstractCache;

/// A DOT string literal.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One node per record (`r<index>`, labelled with its short key and results, filled when it has
/// a result), one edge per input alternative labelled with its slot (and selector).
pub fn dot(cache: &AbstractCache) -> String {
    let mut out = String::from(
        "digraph cache {\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f3f3f3\", fontname=\"monospace\", fontsize=10];\n  edge [fontsize=9, color=\"#888888\"];\n",
    );
    for (r, rec) in cache.records.iter().enumerate() {
        let top = rec
            .results
            .iter()
            .filter_map(|res| res.blobs.last())
            .filter_map(|d| cache.blobs.get(d))
            .map(|d| d.size)
            .max()
            .unwrap_or(0);
        let label = match rec.results.len() {
            0 => format!("{}\nno result", rec.digest.short()),
            n => format!("{}\n{n} result(s), top {}", rec.digest.short(), human_bytes(top)),
        };
        let fill = if rec.results.is_empty() {
            ""
        } else {
            ", fillcolor=\"#d9ead3\""
        };
        let _ = writeln!(
            out,
            "  r{r} [label={}, tooltip={}{fill}];",
            quote(&label),
            quote(rec.digest.as_str())
        );
    }
    for (r, rec) in cache.records.iter().enumerate() {
        for (slot, alts) in rec.inputs.iter().enumerate() {
            for i in alts {
                let label = if i.selector.is_empty() {
                    slot.to_string()
                } else {
                    format!("{slot} {}", i.selector)
                };
                let _ = writeln!(out, "  r{} -> r{r} [label={}];", i.link, quote(&label));
            }
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_the_literal_closed() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
