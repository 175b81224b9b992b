//! Real servers for the backend tests, on 127.0.0.1 free ports, stopped by PID when dropped.
//!
//! | variable | server |
//! |---|---|
//! | `BKCACHE_TEST_REGISTRY` | Debian `docker-registry` (CNCF distribution 2.8), plain HTTP, anonymous |
//! | `BKCACHE_TEST_REGISTRY_TLS` (+ `_CA`, `_USER`, `_PASS`) | the same with TLS (self-signed CA made now) and htpasswd Basic auth |
//! | `BKCACHE_TEST_REGISTRY_TOKEN` (+ `BKCACHE_TEST_TOKEN_*`) | the same with bearer-token auth; the tests run the token server on `BKCACHE_TEST_TOKEN_PORT`, signing with `BKCACHE_TEST_TOKEN_KEY` |

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;

/// Running servers and the variables that tell the tests where they are.
pub struct Servers {
    pub(crate) children: Vec<(String, Child)>,
    pub vars: Vec<(String, String)>,
    pub(crate) dir: PathBuf,
}

impl Drop for Servers {
    /// SIGTERM each server (dockerd must stop its containerd and unmount), SIGKILL after 15 s.
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        for (name, child) in &mut self.children {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("servers: stopped {name} (pid {})", child.id());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A self-signed P-256 certificate (`openssl req -x509`), valid for 2 days.
fn self_signed(subject: &str, key: &Path, cert: &Path) -> Result {
    sh(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
        ])
        .arg(subject)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert))
}

pub(crate) fn sh(cmd: &mut Command) -> Result {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `GET /v2/` answered with any HTTP status (plain HTTP), or a TCP accept (TLS).
pub(crate) fn wait_ready(port: u16, http: bool, log: &Path) -> Result {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            if !http {
                return Ok(());
            }
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "server on port {port} did not become ready; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    ))
}

impl Servers {
    fn spawn_registry(&mut self, name: &str, extra_config: &str, http: bool) -> Result<u16> {
        let port = free_port()?;
        let dir = self.dir.join(name);
        std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
        let config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\n  maintenance: {{uploadpurging: {{enabled: false}}}}\nhttp:\n  addr: \"127.0.0.1:{port}\"\n{extra_config}",
            dir.join("data").display()
        );
        let cfg = dir.join("config.yml");
        std::fs::write(&cfg, config).map_err(|e| e.to_string())?;
        let log = dir.join("log.txt");
        let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("cannot start docker-registry (apt-get install docker-registry): {e}"))?;
        eprintln!("servers: {name} on 127.0.0.1:{port} (pid {})", child.id());
        self.children.push((name.to_owned(), child));
        wait_ready(port, http, &log)?;
        Ok(port)
    }

    /// Whether the comma list (registry, docker, s3, azurite, gha; empty: all) asks for this
    /// server (gha needs azurite). `registry-plain` (not in "all") is the plain registry alone.
    fn wanted_in(list: &str, name: &str) -> bool {
        list.trim().is_empty() || list.split(',').any(|n| n.trim() == name)
    }

    /// Start every server the tests use (or those `BKCACHE_SERVERS` names: for running one
    /// backend's tests by hand).
    pub fn start() -> Result<Servers> {
        Self::start_selected(&std::env::var("BKCACHE_SERVERS").unwrap_or_default())
    }

    /// Start the servers a comma list names (empty: all), in a directory of their own.
    pub fn start_selected(list: &str) -> Result<Servers> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bkcache-servers-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut s = Servers {
            children: Vec::new(),
            vars: Vec::new(),
            dir: dir.clone(),
        };
        let wanted = |name| Self::wanted_in(list, name);
        if wanted("registry") {
            s.start_registries()?;
        } else if list.split(',').any(|n| n.trim() == "registry-plain") {
            // Only the plain registry (the benchmark starts a fresh one per run).
            let port = s.spawn_registry("registry", "", true)?;
            s.vars
                .push(("BKCACHE_TEST_REGISTRY".into(), format!("127.0.0.1:{port}")));
        }
        if wanted("docker") && wanted("registry") {
            s.start_dockerd()?;
        }
        if wanted("s3") {
            crate::servers_s3::start(&mut s)?;
        }
        if wanted("azurite") {
            crate::servers_azurite::start(&mut s)?;
        }
        if wanted("gha") {
            crate::servers_gha::start(&mut s)?;
        }
        Ok(s)
    }

    /// The value of one of the variables this set of servers exports.
    pub fn var(&self, name: &str) -> Result<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("the servers export no {name}"))
    }

    fn start_registries(&mut self) -> Result {
        let s = self;
        let dir = s.dir.clone();
        let port = s.spawn_registry("registry", "", true)?;
        s.vars
            .push(("BKCACHE_TEST_REGISTRY".into(), format!("127.0.0.1:{port}")));

        // TLS + htpasswd Basic auth, with a CA made now.
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).map_err(|e| e.to_string())?;
        // A CA and a server certificate it signs (rustls refuses a CA certificate as the
        // server's own, as it should).
        self_signed("/CN=bkcache test CA", &tls.join("ca-key.pem"), &tls.join("ca.pem"))?;
        sh(Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
            ])
            .arg(tls.join("key.pem"))
            .arg("-out")
            .arg(tls.join("server.csr")))?;
        std::fs::write(
            tls.join("ext.cnf"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| e.to_string())?;
        sh(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(tls.join("server.csr"))
            .arg("-CA")
            .arg(tls.join("ca.pem"))
            .arg("-CAkey")
            .arg(tls.join("ca-key.pem"))
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(tls.join("ext.cnf"))
            .arg("-out")
            .arg(tls.join("cert.pem")))?;
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", "bkuser", "bkpass-test"])
            .output()
            .map_err(|e| format!("cannot run htpasswd (apt-get install apache2-utils): {e}"))?;
        std::fs::write(tls.join("htpasswd"), &htpasswd.stdout).map_err(|e| e.to_string())?;
        let extra = format!(
            "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: bkcache-test\n    path: {}\n",
            tls.join("cert.pem").display(),
            tls.join("key.pem").display(),
            tls.join("htpasswd").display()
        );
        let port = s.spawn_registry("registry-tls", &extra, false)?;
        s.vars
            .push(("BKCACHE_TEST_REGISTRY_TLS".into(), format!("127.0.0.1:{port}")));
        s.vars.push((
            "BKCACHE_TEST_REGISTRY_TLS_CA".into(),
            tls.join("ca.pem").display().to_string(),
        ));
        s.vars.push(("BKCACHE_TEST_REGISTRY_TLS_USER".into(), "bkuser".into()));
        s.vars
            .push(("BKCACHE_TEST_REGISTRY_TLS_PASS".into(), "bkpass-test".into()));

        // Bearer-token auth: the registry trusts tokens signed by this key; the test process
        // runs the token server on the port given here.
        let tok = dir.join("token");
        std::fs::create_dir_all(&tok).map_err(|e| e.to_string())?;
        self_signed("/CN=bkcache-token-issuer", &tok.join("key.pem"), &tok.join("cert.pem"))?;
        sh(Command::new("openssl")
            .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
            .arg(tok.join("key.pem"))
            .arg("-out")
            .arg(tok.join("key.p8")))?;
        sh(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(tok.join("cert.pem"))
            .arg("-out")
            .arg(tok.join("cert.der")))?;
        let token_port = free_port()?;
        let extra = format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: bkcache-test-registry\n    issuer: bkcache-test-issuer\n    rootcertbundle: {}\n",
            tok.join("cert.pem").display()
        );
        let port = s.spawn_registry("registry-token", &extra, true)?;
        s.vars
            .push(("BKCACHE_TEST_REGISTRY_TOKEN".into(), format!("127.0.0.1:{port}")));
        s.vars.push(("BKCACHE_TEST_TOKEN_PORT".into(), token_port.to_string()));
        s.vars.push((
            "BKCACHE_TEST_TOKEN_KEY".into(),
            tok.join("key.p8").display().to_string(),
        ));
        s.vars.push((
            "BKCACHE_TEST_TOKEN_CERT".into(),
            tok.join("cert.der").display().to_string(),
        ));
        Ok(())
    }

    /// dockerd 20.10 (Debian docker.io) with its built-in BuildKit: the real old peer. It
    /// trusts the plain registry as insecure. Skipped when dockerd is not installed (the tests
    /// that need it then fail under CI).
    fn start_dockerd(&mut self) -> Result {
        if !Path::new("/usr/sbin/dockerd").exists() {
            eprintln!(
                "servers: no /usr/sbin/dockerd (apt-get install docker.io): BuildKit interop tests will fail in CI"
            );
            return Ok(());
        }
        let plain = self.vars[0].1.clone();
        let d = self.dir.join("docker");
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let log = d.join("log.txt");
        let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let sock = d.join("docker.sock");
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--ip-forward=false",
                "--ip-masq=false",
                "--storage-driver=overlay2",
                "--insecure-registry",
                &plain,
            ])
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("cannot start dockerd: {e}"))?;
        eprintln!("servers: dockerd on {} (pid {})", sock.display(), child.id());
        self.children.push(("dockerd".into(), child));
        let host = format!("unix://{}", sock.display());
        let start = Instant::now();
        loop {
            let ok = Command::new("/usr/bin/docker")
                .arg("version")
                .env("DOCKER_HOST", &host)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|st| st.success());
            if ok {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "dockerd did not start; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.vars.push(("BKCACHE_TEST_DOCKER_HOST".into(), host));
        Ok(())
    }
}
