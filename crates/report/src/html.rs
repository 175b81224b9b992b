//! The page shell (inline CSS and a few lines of JavaScript, nothing fetched) and text escaping.

use std::fmt::Write as _;

use bkcache_core::Digest;

/// Escape text for HTML and SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d1d1f;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd}
code,.mono{font-family:ui-monospace,monospace;font-size:12px}
table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee}
th[data-key]{cursor:pointer;user-select:none}th[data-key]:after{content:' \\2195';color:#999}
td.num,th.num{text-align:right}
.facts td:first-child{color:#666}
.warn{color:#8a4b00}
.scroll{overflow:auto;max-height:720px;border:1px solid #ddd}
svg text{font:11px ui-monospace,monospace;fill:#1d1d1f}
.node rect{fill:#f3f3f3;stroke:#777;stroke-width:1}
.node.result rect{fill:#d9ead3;stroke:#38761d}
.node.shared rect{fill:#d9ead3;stroke:#38761d}
.node.only-a rect{fill:#cfe2f3;stroke:#1c4587}
.node.only-b rect{fill:#fce5cd;stroke:#b45f06}
.node:hover rect{stroke-width:2.5}
.node text.sub{fill:#555}
.edge{fill:none;stroke:#999;stroke-width:1}
.cell{stroke:#fff;stroke-width:1}
.legend span{display:inline-block;padding:1px 8px;margin-right:8px;border:1px solid #999}
.k-shared{background:#d9ead3}.k-only-a{background:#cfe2f3}.k-only-b{background:#fce5cd}
.k-result{background:#d9ead3}.k-none{background:#f3f3f3}
";

/// Sorts each `table.sortable` by its `th[data-default]` column on load (so a reader sees the
/// biggest first, and `data-sorted` says the script ran), and by any `th[data-key]` on click.
const JS: &str = "
(function () {
  function sortBy(table, key, dir) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) { return dir * (Number(a.dataset[key]) - Number(b.dataset[key])); });
    rows.forEach(function (r) { body.appendChild(r); });
    table.dataset.sorted = key;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th[data-key]').forEach(function (th) {
      th.addEventListener('click', function () {
        var dir = th.dataset.dir === '-1' ? 1 : -1;
        th.dataset.dir = String(dir);
        sortBy(table, th.dataset.key, dir);
      });
    });
    var first = table.querySelector('th[data-default]');
    if (first) { first.dataset.dir = '-1'; sortBy(table, first.dataset.key, -1); }
  });
})();
";

/// A whole page: `title` (escaped here) and `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + CSS.len() + JS.len() + 512);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"generator\" content=\"bkcache-report {}\"><title>{}</title><style>{CSS}</style></head>\n<body>\n{body}\n<script>{JS}</script>\n</body></html>\n",
        crate::VERSION,
        esc(title)
    );
    out
}

/// A two-column table of facts (values already HTML).
pub fn facts(rows: &[(&str, String)]) -> String {
    let mut out = String::from("<table class=\"facts\">");
    for (k, v) in rows {
        let _ = write!(out, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
    }
    out.push_str("</table>");
    out
}

/// A digest shown short ([`Digest::short`]), the whole of it on hover.
pub fn short_digest(d: &Digest) -> String {
    format!("<code title=\"{}\">{}</code>", esc(d.as_str()), esc(d.short()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_shell_fetches_nothing() {
        let p = page("t", "");
        assert!(!p.contains("http:") && !p.contains("https:") && !p.contains(" src="));
    }
}
