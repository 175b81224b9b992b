//! Inline SVG charts: a squarified treemap of layer sizes, the age histogram, and a stacked bar
//! of bytes (shared / only A / only B).

use std::fmt::Write as _;

use bkcache_core::inspect::{human_bytes, AgeBucket};

use crate::html::esc;

/// One treemap entry: its label on hover, its size, its CSS class.
pub struct Cell {
    /// Hover text.
    pub title: String,
    /// Bytes.
    pub size: u64,
    /// `cell` plus a colour class.
    pub class: &'static str,
    /// Fill colour (varied so neighbours differ).
    pub fill: String,
}

/// Rectangles (x, y, w, h) for `values` (sorted largest first) filling `w` x `h`: the
/// squarified algorithm (Bruls, Huizing, van Wijk), rows kept while the worst aspect improves.
pub fn squarify(values: &[f64], w: f64, h: f64) -> Vec<(f64, f64, f64, f64)> {
    let total: f64 = values.iter().sum();
    if total <= 0.0 || w <= 0.0 || h <= 0.0 {
        return values.iter().map(|_| (0.0, 0.0, 0.0, 0.0)).collect();
    }
    let scale = w * h / total;
    let v: Vec<f64> = values.iter().map(|x| x * scale).collect();
    let worst = |row: &[f64], sum: f64, side: f64| -> f64 {
        row.iter()
            .map(|&r| {
                let a = side * side * r / (sum * sum);
                a.max(1.0 / a)
            })
            .fold(0.0, f64::max)
    };
    let (mut x, mut y, mut w, mut h) = (0.0, 0.0, w, h);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let side = w.min(h);
        if side <= 0.0 {
            out.extend((i..v.len()).map(|_| (x, y, 0.0, 0.0)));
            break;
        }
        let (mut end, mut sum) = (i + 1, v[i]);
        let mut best = worst(&v[i..end], sum, side);
        while end < v.len() {
            let next = worst(&v[i..=end], sum + v[end], side);
            if next > best {
                break;
            }
            best = next;
            sum += v[end];
            end += 1;
        }
        let thick = sum / side;
        let mut along = 0.0;
        for &r in &v[i..end] {
            let len = r / thick;
            out.push(if w >= h {
                (x, y + along, thick, len)
            } else {
                (x + along, y, len, thick)
            });
            along += len;
        }
        if w >= h {
            x += thick;
            w -= thick;
        } else {
            y += thick;
            h -= thick;
        }
        i = end;
    }
    out
}

/// The treemap SVG: one `rect.cell` per entry, its title on hover.
pub fn treemap(cells: &[Cell], width: f64, height: f64) -> String {
    let sizes: Vec<f64> = cells.iter().map(|c| c.size.max(1) as f64).collect();
    let rects = squarify(&sizes, width, height);
    let mut out =
        format!("<svg class=\"treemap\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">");
    for (c, (x, y, w, h)) in cells.iter().zip(rects) {
        let _ = write!(
            out,
            "<rect class=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{}</title></rect>",
            c.class,
            c.fill,
            esc(&c.title)
        );
    }
    out.push_str("</svg>");
    out
}

/// A fill for the i-th layer: hues spread by the golden angle; in a diff, the side's hue with
/// the lightness varied so neighbours differ.
pub fn fill(i: usize, side: &str) -> String {
    let lightness = 62 + (i % 3) * 8;
    match side {
        "shared" => format!("hsl(100,38%,{lightness}%)"),
        "only-a" => format!("hsl(210,55%,{lightness}%)"),
        "only-b" => format!("hsl(30,80%,{lightness}%)"),
        _ => format!("hsl({:.0},45%,72%)", (i as f64 * 137.508) % 360.0),
    }
}

/// Bars of layer bytes per age bucket, each labelled with its results and bytes.
pub fn age_histogram(buckets: &[AgeBucket]) -> String {
    let (bar_w, gap, chart_h) = (110.0, 14.0, 140.0);
    let max = buckets.iter().map(|b| b.layer_bytes).max().unwrap_or(0).max(1) as f64;
    let width = buckets.len() as f64 * (bar_w + gap) + gap;
    let mut out = format!(
        "<svg class=\"ages\" width=\"{width}\" height=\"{}\" viewBox=\"0 0 {width} {}\">",
        chart_h + 44.0,
        chart_h + 44.0
    );
    for (i, b) in buckets.iter().enumerate() {
        let h = (b.layer_bytes as f64 / max * chart_h).max(if b.layer_bytes > 0 { 2.0 } else { 0.0 });
        let x = gap + i as f64 * (bar_w + gap);
        let _ = write!(
            out,
            "<g class=\"age\"><rect x=\"{x}\" y=\"{:.1}\" width=\"{bar_w}\" height=\"{h:.1}\" fill=\"#9fc5e8\"><title>{}: {} result(s), {} of layers</title></rect>\
             <text x=\"{x}\" y=\"{}\">{}</text><text class=\"sub\" x=\"{x}\" y=\"{}\">{} · {}</text></g>",
            chart_h - h,
            esc(b.bucket),
            b.results,
            human_bytes(b.layer_bytes),
            chart_h + 16.0,
            esc(b.bucket),
            chart_h + 32.0,
            b.results,
            human_bytes(b.layer_bytes)
        );
    }
    out.push_str("</svg>");
    out
}

/// One stacked bar of (label, bytes, class) parts.
pub fn stacked_bar(parts: &[(&str, u64, &str)], width: f64) -> String {
    let total = parts.iter().map(|p| p.1).sum::<u64>().max(1) as f64;
    let mut out = format!("<svg class=\"bytes\" width=\"{width}\" height=\"28\" viewBox=\"0 0 {width} 28\">");
    let mut x = 0.0;
    for (label, bytes, class) in parts {
        let w = *bytes as f64 / total * width;
        let _ = write!(
            out,
            "<rect class=\"part k-{class}\" x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"28\" fill=\"{}\"><title>{}: {}</title></rect>",
            match *class {
                "shared" => "#b6d7a8",
                "only-a" => "#9fc5e8",
                _ => "#f9cb9c",
            },
            esc(label),
            human_bytes(*bytes)
        );
        x += w;
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squarify_fills_the_area_without_overlap() {
        let values = [50.0, 25.0, 12.0, 6.0, 4.0, 2.0, 1.0];
        let (w, h) = (400.0, 300.0);
        let rects = squarify(&values, w, h);
        let area: f64 = rects.iter().map(|r| r.2 * r.3).sum();
        assert!((area - w * h).abs() < 1e-6, "area {area}");
        for (i, a) in rects.iter().enumerate() {
            assert!(a.0 >= -1e-9 && a.1 >= -1e-9 && a.0 + a.2 <= w + 1e-9 && a.1 + a.3 <= h + 1e-9);
            for b in &rects[i + 1..] {
                let overlap_x = (a.0 + a.2).min(b.0 + b.2) - a.0.max(b.0);
                let overlap_y = (a.1 + a.3).min(b.1 + b.3) - a.1.max(b.1);
                assert!(overlap_x <= 1e-9 || overlap_y <= 1e-9, "{a:?} overlaps {b:?}");
            }
        }
        // Proportional: 50 of 100 is half the area.
        assert!((rects[0].2 * rects[0].3 - w * h / 2.0).abs() < w * h * 0.01);
    }
}
