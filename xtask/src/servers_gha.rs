//! The GitHub Actions cache test server (`xtask gha-server`, see `gha_server.rs`), started by
//! `Servers::start` as a child process after Azurite, whose blob service holds the entries and
//! serves the signed URLs (Azurite is started here when `BKCACHE_SERVERS` left it out).
//!
//! | variable | value |
//! |---|---|
//! | `BKCACHE_TEST_GHA_URL` | `http://127.0.0.1:PORT/`: the v2 results URL (`url_v2`, `ACTIONS_RESULTS_URL`) |
//! | `BKCACHE_TEST_GHA_V1_URL` | `http://127.0.0.1:PORT/`: the v1 cache URL (`url`, `ACTIONS_CACHE_URL`) |
//! | `BKCACHE_TEST_GHA_ADMIN` | `http://127.0.0.1:PORT/_admin/`: faults, rate limits, fixture loading, request log |
//!
//! Append `ns/<name>/` to either URL for a namespace of its own; the GitHub REST API (for
//! `ghtoken` + `repository`) is at `<url>api` (set `GITHUB_API_URL` to it).

use std::process::{Command, Stdio};

use crate::servers::{free_port, wait_ready, Servers};
use crate::Result;

fn var(s: &Servers, name: &str) -> Option<String> {
    s.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Start the GHA cache test server (and Azurite if it is not running) and export
/// `BKCACHE_TEST_GHA_URL`, `BKCACHE_TEST_GHA_V1_URL` and `BKCACHE_TEST_GHA_ADMIN`.
pub fn start(s: &mut Servers) -> Result {
    if var(s, "BKCACHE_TEST_AZURITE").is_none() {
        crate::servers_azurite::start(s)?;
    }
    let missing = || "BKCACHE_TEST_AZURITE* not set after starting Azurite".to_owned();
    let azurite = var(s, "BKCACHE_TEST_AZURITE").ok_or_else(missing)?;
    let account = var(s, "BKCACHE_TEST_AZURITE_ACCOUNT").ok_or_else(missing)?;
    let key = var(s, "BKCACHE_TEST_AZURITE_KEY").ok_or_else(missing)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the xtask binary: {e}"))?;
    let port = free_port()?;
    let dir = s.dir.join("gha");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let log = dir.join("log.txt");
    let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let logf2 = logf.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(&exe)
        .args(["gha-server", "--port", &port.to_string(), "--azurite", &azurite])
        .args(["--account", &account, "--key", &key])
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(logf2)
        .spawn()
        .map_err(|e| format!("cannot start {} gha-server: {e}", exe.display()))?;
    eprintln!("servers: gha-server on 127.0.0.1:{port} (pid {})", child.id());
    s.children.push(("gha-server".into(), child));
    wait_ready(port, true, &log)?;
    let url = format!("http://127.0.0.1:{port}/");
    s.vars.push(("BKCACHE_TEST_GHA_URL".into(), url.clone()));
    s.vars.push(("BKCACHE_TEST_GHA_V1_URL".into(), url.clone()));
    s.vars.push(("BKCACHE_TEST_GHA_ADMIN".into(), format!("{url}_admin/")));
    Ok(())
}
