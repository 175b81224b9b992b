//! A small Sugiyama-style layered layout for a directed acyclic graph: nodes on levels by longest
//! path from the roots (a node sits one level below its deepest input), the order within each
//! level by barycenter sweeps (down, then up) to cut crossings, then each level centred.
//!
//! Our own, not a crate: the record graph needs only these three steps, on at most a few
//! thousand nodes; the Rust ports of dagre (`dagre` 0.1, `dugong`) bring a 27-step pipeline,
//! compound graphs and a second graph type to convert into, for what is about 100 lines here.
//! Long edges get no dummy nodes (they are drawn as curves across the levels between).
//!
//! ```
//! use bkcache_report::layout::{layered, Spacing};
//! // 0 and 1 are roots; 2 uses both; 3 uses 2.
//! let l = layered(4, &[(0, 2), (1, 2), (2, 3)], Spacing::default());
//! assert_eq!(l.level, vec![0, 0, 1, 2]);
//! assert!(l.y[3] > l.y[2] && l.y[2] > l.y[0]);
//! assert!(l.x[0] != l.x[1]);
//! ```

/// Node box and gaps, in SVG user units.
#[derive(Debug, Clone, Copy)]
pub struct Spacing {
    /// Width of a node box.
    pub node_width: f64,
    /// Height of a node box.
    pub node_height: f64,
    /// Horizontal gap between boxes.
    pub gap_x: f64,
    /// Vertical gap between levels.
    pub gap_y: f64,
}

impl Default for Spacing {
    fn default() -> Self {
        Spacing {
            node_width: 150.0,
            node_height: 40.0,
            gap_x: 16.0,
            gap_y: 48.0,
        }
    }
}

/// Where each node goes: the top-left corner of its box.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Level of each node (0 = roots, at the top).
    pub level: Vec<usize>,
    /// Left edge of each node's box.
    pub x: Vec<f64>,
    /// Top edge of each node's box.
    pub y: Vec<f64>,
    /// Width of the whole drawing.
    pub width: f64,
    /// Height of the whole drawing.
    pub height: f64,
}

/// Barycenter sweeps (each a pass down and a pass up); more rarely changes an order.
const SWEEPS: usize = 4;

/// Lay out `n` nodes with `edges` as (from, to): `from` above `to`. Edges naming a node outside
/// `0..n` are ignored; a cycle (none in a valid cache) leaves its nodes on level 0.
pub fn layered(n: usize, edges: &[(usize, usize)], s: Spacing) -> Layout {
    let edges: Vec<(usize, usize)> = edges
        .iter()
        .copied()
        .filter(|&(a, b)| a < n && b < n && a != b)
        .collect();
    let mut ins: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut outs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in &edges {
        outs[a].push(b);
        ins[b].push(a);
    }
    let level = levels(&ins, &outs);
    let depth = level.iter().copied().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (v, &l) in level.iter().enumerate() {
        rows[l].push(v);
    }
    let mut pos = vec![0.0f64; n];
    let place = |rows: &[Vec<usize>], pos: &mut [f64]| {
        for row in rows {
            for (i, &v) in row.iter().enumerate() {
                pos[v] = (i as f64 + 0.5) / row.len() as f64;
            }
        }
    };
    place(&rows, &mut pos);
    for _ in 0..SWEEPS {
        for row in rows.iter_mut().skip(1) {
            order_by_barycenter(row, &ins, &mut pos);
        }
        for row in rows.iter_mut().rev().skip(1) {
            order_by_barycenter(row, &outs, &mut pos);
        }
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let step = s.node_width + s.gap_x;
    let (mut x, mut y) = (vec![0.0; n], vec![0.0; n]);
    for (l, row) in rows.iter().enumerate() {
        let offset = (widest - row.len() as f64) * step / 2.0;
        for (i, &v) in row.iter().enumerate() {
            x[v] = s.gap_x + offset + i as f64 * step;
            y[v] = s.gap_y / 2.0 + l as f64 * (s.node_height + s.gap_y);
        }
    }
    Layout {
        level,
        x,
        y,
        width: widest * step + s.gap_x,
        height: depth as f64 * (s.node_height + s.gap_y),
    }
}

/// Longest-path levels by Kahn's topological order.
fn levels(ins: &[Vec<usize>], outs: &[Vec<usize>]) -> Vec<usize> {
    let n = ins.len();
    let mut pending: Vec<usize> = ins.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..n).filter(|&v| pending[v] == 0).collect();
    let mut level = vec![0usize; n];
    while let Some(v) = ready.pop() {
        for &w in &outs[v] {
            level[w] = level[w].max(level[v] + 1);
            pending[w] -= 1;
            if pending[w] == 0 {
                ready.push(w);
            }
        }
    }
    level
}

/// Sort one level by the mean position of each node's neighbours on `links`; a node without
/// neighbours keeps its place. Positions are 0..1 within each level.
fn order_by_barycenter(row: &mut [usize], links: &[Vec<usize>], pos: &mut [f64]) {
    let key = |v: usize| -> f64 {
        let l = &links[v];
        if l.is_empty() {
            pos[v]
        } else {
            l.iter().map(|&u| pos[u]).sum::<f64>() / l.len() as f64
        }
    };
    let mut keyed: Vec<(f64, usize)> = row.iter().map(|&v| (key(v), v)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (i, (_, v)) in keyed.into_iter().enumerate() {
        row[i] = v;
        pos[v] = (i as f64 + 0.5) / row.len() as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Edges that cross between two levels.
    fn crossings(l: &Layout, edges: &[(usize, usize)]) -> usize {
        let mut c = 0;
        for (i, &(a, b)) in edges.iter().enumerate() {
            for &(p, q) in &edges[i + 1..] {
                if l.level[a] == l.level[p] && l.level[b] == l.level[q] && (l.x[a] - l.x[p]) * (l.x[b] - l.x[q]) < 0.0 {
                    c += 1;
                }
            }
        }
        c
    }

    #[test]
    fn barycenters_untangle_a_crossed_pair() {
        // Roots 0, 1; 2 hangs from 1 and 3 from 0: in index order they cross.
        let edges = [(0, 3), (1, 2)];
        let l = layered(4, &edges, Spacing::default());
        assert_eq!(crossings(&l, &edges), 0);
    }

    #[test]
    fn a_node_sits_below_its_deepest_input_and_boxes_never_overlap() {
        let edges = [(0, 1), (1, 2), (0, 2), (3, 2)];
        let s = Spacing::default();
        let l = layered(4, &edges, s);
        assert_eq!(l.level, vec![0, 1, 2, 0]);
        for a in 0..4 {
            for b in a + 1..4 {
                if l.level[a] == l.level[b] {
                    assert!((l.x[a] - l.x[b]).abs() >= s.node_width, "{a} and {b} overlap");
                }
            }
            assert!(l.x[a] + s.node_width <= l.width && l.y[a] + s.node_height <= l.height);
        }
    }

    #[test]
    fn a_cycle_or_a_bad_edge_does_not_panic() {
        let l = layered(2, &[(0, 1), (1, 0), (0, 7)], Spacing::default());
        assert_eq!(l.x.len(), 2);
    }
}
