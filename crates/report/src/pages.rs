//! The two pages: `inspect` (one cache) and `diff` (two caches side by side).

use std::collections::HashMap;
use std::fmt::Write as _;

use bkcache_core::inspect::{age_histogram, human_bytes, Summary};
use bkcache_core::lifecycle::DiffReport;
use bkcache_core::{AbstractCache, Descriptor, Digest, GoTime};

use crate::charts::{self, Cell};
use crate::graph;
use crate::html::{esc, facts, page, short_digest};
use crate::ReportOptions;

/// A layer row: which side it is on (diff) and what it is.
struct LayerRow<'a> {
    desc: &'a Descriptor,
    /// Results whose chain holds it.
    used_by: usize,
    /// `shared` / `only-a` / `only-b` in a diff; empty for inspect.
    side: &'static str,
}

/// Results naming each layer.
fn use_counts(cache: &AbstractCache) -> HashMap<&Digest, usize> {
    let mut used: HashMap<&Digest, usize> = HashMap::new();
    for res in cache.records.iter().flat_map(|r| &r.results) {
        for d in &res.blobs {
            *used.entry(d).or_default() += 1;
        }
    }
    used
}

/// The `inspect` page of one cache.
pub fn inspect_html(summary: &Summary, cache: &AbstractCache, options: &ReportOptions) -> String {
    let mut body = format!("<h1>BuildKit cache: {}</h1>", esc(&summary.location));
    let mut rows = vec![
        ("format", esc(summary.format)),
        ("location", esc(&summary.location)),
        (
            "manifest",
            format!(
                "{} · {} · {}",
                short_digest(&summary.manifest.digest),
                esc(&summary.manifest.media_type),
                human_bytes(summary.manifest.size)
            ),
        ),
    ];
    if let Some(c) = &summary.config {
        rows.push((
            "config",
            format!("{} · {}", short_digest(&c.digest), human_bytes(c.size)),
        ));
    }
    rows.extend([
        ("records (cache keys)", summary.records.to_string()),
        ("results", summary.results.to_string()),
        (
            "layers",
            format!("{} · {}", summary.layers.len(), human_bytes(summary.layer_bytes)),
        ),
        ("total (layers, config, manifest)", human_bytes(summary.total_bytes)),
    ]);
    for p in &summary.parts {
        rows.push(("part", format!("{} · {} record(s)", esc(&p.name), p.records)));
    }
    body.push_str(&facts(&rows));
    for w in &summary.warnings {
        let _ = write!(body, "<p class=\"warn\">warning: {}</p>", esc(w));
    }
    body.push_str(&graph_section(
        cache.records.len(),
        options,
        || graph::of_cache(cache),
        "<span class=\"k-result\">has a result</span><span class=\"k-none\">no result</span>",
    ));
    body.push_str(
        "<h2>Age</h2><p>Results by age of creation; a layer counts in the bucket of the newest result using it.</p>",
    );
    body.push_str(&charts::age_histogram(&summary.age));
    let used = use_counts(cache);
    let layers: Vec<LayerRow> = cache
        .layer_order()
        .iter()
        .filter_map(|d| cache.blobs.get(d))
        .map(|desc| LayerRow {
            desc,
            used_by: used.get(&desc.digest).copied().unwrap_or(0),
            side: "",
        })
        .collect();
    body.push_str(&layer_sections(layers, options));
    page(&format!("bkcache inspect: {}", summary.location), &body)
}

/// The `diff` page: A and B by their locations, the report `diff` prints, one graph of both.
pub fn diff_html(
    a: (&str, &AbstractCache),
    b: (&str, &AbstractCache),
    report: &DiffReport,
    options: &ReportOptions,
) -> String {
    let (la, ca) = a;
    let (lb, cb) = b;
    let mut body = format!(
        "<h1>BuildKit caches compared</h1><p>A: <code>{}</code><br>B: <code>{}</code></p>",
        esc(la),
        esc(lb)
    );
    let rows = vec![
        (
            "layers shared",
            format!("{} · {}", report.shared_layers, human_bytes(report.shared_bytes)),
        ),
        (
            "layers only in A",
            format!("{} · {}", report.only_a_layers, human_bytes(report.only_a_bytes)),
        ),
        (
            "layers only in B",
            format!("{} · {}", report.only_b_layers, human_bytes(report.only_b_bytes)),
        ),
        ("records shared", report.shared_records.to_string()),
        ("records only in A", report.only_a_records.to_string()),
        ("records only in B", report.only_b_records.to_string()),
        ("keys with a result in both", report.shared_results.to_string()),
    ];
    body.push_str(&facts(&rows));
    body.push_str(
        "<p class=\"legend\"><span class=\"k-shared\">shared</span><span class=\"k-only-a\">only in A</span><span class=\"k-only-b\">only in B</span></p>",
    );
    body.push_str(&charts::stacked_bar(
        &[
            ("shared", report.shared_bytes, "shared"),
            ("only in A", report.only_a_bytes, "only-a"),
            ("only in B", report.only_b_bytes, "only-b"),
        ],
        720.0,
    ));
    let union = {
        let mut digests: Vec<&Digest> = ca.records.iter().chain(&cb.records).map(|r| &r.digest).collect();
        digests.sort();
        digests.dedup();
        digests.len()
    };
    let legend = "<span class=\"k-shared\">shared</span><span class=\"k-only-a\">only in A</span><span class=\"k-only-b\">only in B</span>";
    body.push_str(&graph_section(union, options, || graph::of_diff(ca, cb), legend));
    let (used_a, used_b) = (use_counts(ca), use_counts(cb));
    let mut layers: Vec<LayerRow> = Vec::new();
    for (d, desc) in &ca.blobs {
        let side = if cb.blobs.contains_key(d) { "shared" } else { "only-a" };
        let used_by = used_a.get(d).copied().unwrap_or(0) + used_b.get(d).copied().unwrap_or(0);
        layers.push(LayerRow { desc, used_by, side });
    }
    for (d, desc) in cb.blobs.iter().filter(|(d, _)| !ca.blobs.contains_key(*d)) {
        layers.push(LayerRow {
            desc,
            used_by: used_b.get(d).copied().unwrap_or(0),
            side: "only-b",
        });
    }
    body.push_str(&layer_sections(layers, options));
    body.push_str(&format!(
        "<h2>Age (A)</h2>{}",
        charts::age_histogram(&age_histogram(ca, GoTime::now()))
    ));
    body.push_str(&format!(
        "<h2>Age (B)</h2>{}",
        charts::age_histogram(&age_histogram(cb, GoTime::now()))
    ));
    page("bkcache diff", &body)
}

/// The graph, or why it is left out.
fn graph_section(
    records: usize,
    options: &ReportOptions,
    graph: impl FnOnce() -> graph::Graph,
    legend: &str,
) -> String {
    let mut out = String::from("<h2>Records</h2>");
    if records > options.max_graph_records {
        let _ = write!(
            out,
            "<p>The graph is left out: {records} records (over {}) would not be readable. The layers are listed below.</p>",
            options.max_graph_records
        );
        return out;
    }
    let _ = write!(
        out,
        "<p class=\"legend\">{legend} Each box is a cache key; an edge runs from each input to the key that uses it, roots at the top. Hover a box for its key, inputs and results.</p><div class=\"scroll\">{}</div>",
        graph::svg(&graph())
    );
    out
}

/// Seconds since the epoch of a layer's `buildkit/createdat`, or 0.
fn created_secs(desc: &Descriptor) -> i64 {
    desc.created_at().map_or(0, |t| (t.unix_nanos() / 1_000_000_000) as i64)
}

/// The treemap and the sortable table, the biggest `max_layers` when there are more.
fn layer_sections(mut layers: Vec<LayerRow>, options: &ReportOptions) -> String {
    let total = layers.len();
    let mut out = String::from("<h2>Layers</h2>");
    if total > options.max_layers {
        layers.sort_by_key(|l| std::cmp::Reverse(l.desc.size));
        layers.truncate(options.max_layers);
        let _ = write!(out, "<p>The biggest {} of {total} layers.</p>", options.max_layers);
    }
    let mut by_size: Vec<(usize, &LayerRow)> = layers.iter().enumerate().collect();
    by_size.sort_by_key(|(_, l)| std::cmp::Reverse(l.desc.size));
    let cells: Vec<Cell> = by_size
        .iter()
        .map(|(i, l)| Cell {
            title: format!(
                "{} · {} · used by {} result(s)",
                l.desc.digest,
                human_bytes(l.desc.size),
                l.used_by
            ),
            size: l.desc.size,
            class: match l.side {
                "shared" => "cell k-shared",
                "only-a" => "cell k-only-a",
                "only-b" => "cell k-only-b",
                _ => "cell",
            },
            fill: charts::fill(*i, l.side),
        })
        .collect();
    out.push_str(&charts::treemap(&cells, 960.0, 320.0));
    let side_col = layers.iter().any(|l| !l.side.is_empty());
    out.push_str("<div class=\"scroll\"><table class=\"sortable layers\"><thead><tr><th>layer</th>");
    if side_col {
        out.push_str("<th>in</th>");
    }
    out.push_str(
        "<th class=\"num\" data-key=\"size\" data-default>size</th><th>compression</th><th data-key=\"created\">created</th><th class=\"num\" data-key=\"used\">results using it</th><th>media type</th></tr></thead><tbody>",
    );
    for l in &layers {
        let created = l.desc.created_at().map(|t| t.to_string()).unwrap_or_default();
        let _ = write!(
            out,
            "<tr class=\"layer\" data-size=\"{}\" data-created=\"{}\" data-used=\"{}\"><td>{}</td>",
            l.desc.size,
            created_secs(l.desc),
            l.used_by,
            short_digest(&l.desc.digest)
        );
        if side_col {
            let _ = write!(
                out,
                "<td class=\"k-{}\">{}</td>",
                l.side,
                l.side.replace("only-", "only ")
            );
        }
        let _ = write!(
            out,
            "<td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"mono\">{}</td></tr>",
            human_bytes(l.desc.size),
            l.desc.compression_name(),
            esc(&created),
            l.used_by,
            esc(l.desc.media_type.as_str())
        );
    }
    out.push_str("</tbody></table></div>");
    out
}
