//! The scale table: the lifecycle commands on generated caches from 1k to 64k records (and one
//! 250k run in the full benchmark), wall time and peak RSS, with the growth factor per 4x of
//! records. Linear growth is 4x; n log n a little more; a quadratic step shows as 16x. 1 KiB a
//! blob, so the files stay small and what is measured is the graph, not the bytes.

use super::*;

/// The commands of a row, `{}` the cache, `{out}` a copy target.
const OPERATIONS: [(&str, &[&str]); 5] = [
    ("inspect --json", &["inspect", "{}", "--json"]),
    (
        "prune --dry-run --keep-storage 1MB",
        &[
            "prune",
            "{}",
            "--dry-run",
            "--keep-storage",
            "1MB",
            "--min-age",
            "0s",
            "--json",
        ],
    ),
    ("diff (a cache with itself)", &["diff", "{}", "{}", "--json"]),
    (
        "copy local -> local (every blob)",
        &["copy", "-q", "--from", "{}", "--to", "{out}"],
    ),
    (
        "copy again (nothing to do)",
        &["copy", "-q", "--from", "{}", "--to", "{out}"],
    ),
];

struct Cell {
    records: usize,
    documents: u64,
    wall: f64,
    rss_mib: f64,
}

/// Generate each size, run every operation once on it, return the Markdown section.
pub(super) fn table(bin: &Path, work: &Path, quick: bool) -> Result<String> {
    let sizes: &[usize] = if quick {
        &[1_000, 4_000]
    } else {
        &[1_000, 4_000, 16_000, 64_000, 250_000]
    };
    let mut cells: Vec<Vec<Cell>> = OPERATIONS.iter().map(|_| Vec::new()).collect();
    for &n in sizes {
        eprintln!("bench: scale: {n} records ...");
        let dir = work.join("scale-src");
        let out = work.join("scale-out");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&out);
        let spec = format!("type=local,dest={}", dir.display());
        let (blobs, bytes) = (n.to_string(), (n as u64 * 1024).to_string());
        run(Command::new(bin)
            .args([
                "debug",
                "generate",
                "-q",
                "--realistic",
                "--to",
                &spec,
                "--blobs",
                &blobs,
                "--bytes",
                &bytes,
            ])
            .stdout(Stdio::null()))?;
        let documents = documents(bin, &dir)?;
        let (src, dest) = (
            format!("type=local,src={}", dir.display()),
            format!("type=local,dest={}", out.display()),
        );
        for (i, (_, args)) in OPERATIONS.iter().enumerate() {
            let args: Vec<&str> = args
                .iter()
                .map(|a| match *a {
                    "{}" => src.as_str(),
                    "{out}" => dest.as_str(),
                    other => other,
                })
                .collect();
            let _ = Command::new("sync").status();
            let m = measure(
                Command::new(bin)
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?;
            cells[i].push(Cell {
                records: n,
                documents,
                wall: m.wall.as_secs_f64(),
                rss_mib: m.max_rss_kib as f64 / 1024.0,
            });
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&out);
    }
    Ok(render(&cells))
}

/// Manifest + config bytes, from `inspect --json`.
fn documents(bin: &Path, dir: &Path) -> Result<u64> {
    let out = Command::new(bin)
        .args(["inspect", &format!("type=local,src={}", dir.display()), "--json"])
        .output()
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("inspect --json: {e}"))?;
    let size = |k: &str| v[k]["size"].as_u64().unwrap_or(0);
    Ok(size("manifest") + size("config"))
}

fn render(cells: &[Vec<Cell>]) -> String {
    let Some(first) = cells.first() else {
        return String::new();
    };
    let mut out = String::from("| operation |");
    for c in first {
        out.push_str(&format!(
            " {}k records ({:.1} MB of documents) |",
            c.records / 1000,
            c.documents as f64 / 1e6
        ));
    }
    out.push_str(" growth per 4x (last step) |\n|---|");
    out.push_str(&"---|".repeat(first.len() + 1));
    out.push('\n');
    for ((what, _), row) in OPERATIONS.iter().zip(cells) {
        out.push_str(&format!("| {what} |"));
        for c in row {
            out.push_str(&format!(" {:.2} s, {:.0} MiB |", c.wall, c.rss_mib));
        }
        out.push_str(&format!(" {} |\n", growth(row)));
    }
    out
}

/// Wall-time growth per 4x records over the last step (a 250k step is ~3.9x).
fn growth(row: &[Cell]) -> String {
    let [.., a, b] = row else {
        return "—".into();
    };
    let per4 = (b.wall / a.wall.max(1e-3)).powf(4f64.ln() / (b.records as f64 / a.records as f64).ln());
    format!("{per4:.1}x")
}
