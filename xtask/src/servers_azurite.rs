//! The Azure Blob test server: Azurite's blob service (npm `azurite@3.35.0`, the newest that runs
//! on Node 20), installed by `.ci/install.d/azurite.sh`, on a 127.0.0.1 free port, with the
//! well-known development account (public, from Azure's documentation; Azurite checks shared-key
//! signatures against it).
//!
//! | variable | value |
//! |---|---|
//! | `BKCACHE_TEST_AZURITE` | account URL, `http://127.0.0.1:PORT/devstoreaccount1` (path-style: clients must be told the account name) |
//! | `BKCACHE_TEST_AZURITE_ACCOUNT` | `devstoreaccount1` |
//! | `BKCACHE_TEST_AZURITE_KEY` | the development account's key |
//!
//! (No connection-string variable: `cargo xtask servers` prints `export K=V` lines, and a
//! connection string's `;` would end the shell command.)

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::servers::{free_port, wait_ready, Servers};
use crate::Result;

/// Azurite's development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key (public: Azure's documentation and every Azurite install carry it).
pub const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Where `.ci/install.d/azurite.sh` installs it, else `azurite-blob` on `PATH`.
pub(crate) fn azurite_blob() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cache/bkcache/azurite/node_modules/.bin/azurite-blob");
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("azurite-blob"))
            .find(|p| p.is_file())
    })
}

/// Start Azurite's blob service and export the `BKCACHE_TEST_AZURITE*` variables.
pub fn start(s: &mut Servers) -> Result {
    let bin = azurite_blob().ok_or_else(|| {
        "cannot find azurite-blob in ~/.cache/bkcache/azurite/node_modules/.bin or on PATH: install it with \
         `npm install --prefix ~/.cache/bkcache/azurite azurite@3.35.0` (what .ci/install.d/azurite.sh does)"
            .to_owned()
    })?;
    let port = free_port()?;
    let dir = s.dir.join("azurite");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let log = dir.join("log.txt");
    let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let logf2 = logf.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(&bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--location"])
        .arg(&data)
        // --disableTelemetry: Azurite otherwise posts usage data to Application Insights
        // (the tests must not reach outside 127.0.0.1).
        .args(["--skipApiVersionCheck", "--silent", "--disableTelemetry"])
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(logf2)
        .spawn()
        .map_err(|e| format!("cannot start {} (needs node on PATH): {e}", bin.display()))?;
    eprintln!("servers: azurite on 127.0.0.1:{port} (pid {})", child.id());
    s.children.push(("azurite".into(), child));
    wait_ready(port, true, &log)?;
    let url = format!("http://127.0.0.1:{port}/{ACCOUNT}");
    s.vars.push(("BKCACHE_TEST_AZURITE".into(), url));
    s.vars.push(("BKCACHE_TEST_AZURITE_ACCOUNT".into(), ACCOUNT.into()));
    s.vars.push(("BKCACHE_TEST_AZURITE_KEY".into(), KEY.into()));
    Ok(())
}
