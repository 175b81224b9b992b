//! The S3 test server: moto_server (PyPI `moto[server]`, installed by `.ci/install.d/s3.sh`) on
//! 127.0.0.1 and a free port. Buckets are created by the tests (moto accepts any credentials).
//!
//! | variable | meaning |
//! |---|---|
//! | `BKCACHE_TEST_S3` | `http://127.0.0.1:PORT`, the moto endpoint |
//! | `BKCACHE_TEST_MOTO_SERVER` | the `moto_server` program, for tests that start (and kill) their own |

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::servers::{free_port, wait_ready, Servers};
use crate::Result;

/// Where `.ci/install.d/s3.sh` puts moto, relative to `$HOME`.
const VENV_BIN: &str = ".cache/bkcache/moto-venv/bin/moto_server";

/// `$HOME/.cache/bkcache/moto-venv/bin/moto_server`, else `moto_server` on `PATH`.
pub(crate) fn find_moto() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(VENV_BIN);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("moto_server");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(format!(
        "moto_server not found in $HOME/{VENV_BIN} or on PATH: run `bash .ci/run` once, or \
         `python3 -m venv ~/.cache/bkcache/moto-venv && ~/.cache/bkcache/moto-venv/bin/pip install 'moto[server]==5.2.5'` \
         (or leave s3 out with BKCACHE_SERVERS=registry,docker,azurite)"
    ))
}

/// Start moto and export `BKCACHE_TEST_S3` and `BKCACHE_TEST_MOTO_SERVER`.
pub fn start(s: &mut Servers) -> Result {
    let moto = find_moto()?;
    let port = free_port()?;
    let dir = s.dir.join("moto");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let log = dir.join("log.txt");
    let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let logf2 = logf.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(&moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(logf2)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", moto.display()))?;
    eprintln!("servers: moto on 127.0.0.1:{port} (pid {})", child.id());
    s.children.push(("moto".into(), child));
    // Any HTTP answer (moto answers GET /v2/ with an S3 error) means it is serving.
    wait_ready(port, true, &log)?;
    s.vars
        .push(("BKCACHE_TEST_S3".into(), format!("http://127.0.0.1:{port}")));
    s.vars
        .push(("BKCACHE_TEST_MOTO_SERVER".into(), moto.display().to_string()));
    Ok(())
}
