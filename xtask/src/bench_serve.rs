//! `bkcache serve` next to docker-registry (filesystem storage), the same client on both:
//! `bkcache copy` to and from `type=registry` (BuildKit's requests: blob HEAD, POST, monolithic
//! PUT, manifest PUT; then manifest and blob GETs). Server CPU is measured around each run.
//! Goal: serve onto local and onto s3 at least 1.0x docker-registry's speed.

use super::*;

/// Where the registry endpoint keeps its bytes.
#[derive(Clone, Copy)]
enum Endpoint {
    DockerRegistry,
    ServeLocal,
    ServeS3,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::DockerRegistry => "docker-registry (filesystem)",
            Endpoint::ServeLocal => "bkcache serve -> local",
            Endpoint::ServeS3 => "bkcache serve -> s3 (moto)",
        }
    }

    fn servers(self) -> &'static str {
        match self {
            Endpoint::DockerRegistry => "registry-plain",
            Endpoint::ServeLocal => "none",
            Endpoint::ServeS3 => "s3",
        }
    }
}

pub(super) const EXPORT: &str = "export through a registry endpoint";
pub(super) const IMPORT: &str = "import through a registry endpoint";

/// A `bkcache serve` child on a free port; killed on drop.
struct ServeChild(std::process::Child);

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_serve(bin: &Path, work: &Path, store: &str) -> Result<(u16, ServeChild)> {
    let port = crate::servers::free_port()?;
    let log = std::fs::File::create(work.join("serve.log")).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store", store])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start bkcache serve: {e}"))?;
    let child = ServeChild(child);
    crate::servers::wait_ready(port, true, &work.join("serve.log"))?;
    Ok((port, child))
}

impl Bench {
    /// Each endpoint, each round, fresh: export the generated cache, import it back.
    pub(super) fn serve(&mut self, size: Size, src: &Path) -> Result {
        for _ in 0..size.rounds {
            for endpoint in [Endpoint::DockerRegistry, Endpoint::ServeLocal, Endpoint::ServeS3] {
                let srv = Servers::start_selected(endpoint.servers())?;
                let mut pids: Vec<u32> = srv.children.iter().map(|(_, c)| c.id()).collect();
                let store_dir = self.fresh_dir("serve-store");
                let (port, child) = match endpoint {
                    Endpoint::DockerRegistry => (port_in(srv.var("BKCACHE_TEST_REGISTRY")?)?, None),
                    Endpoint::ServeLocal => {
                        let store = format!("type=local,dest={}/{{repo}},tag={{tag}}", store_dir.display());
                        let (p, c) = spawn_serve(&self.bin, &self.work, &store)?;
                        (p, Some(c))
                    }
                    Endpoint::ServeS3 => {
                        let s3 = port_in(srv.var("BKCACHE_TEST_S3")?)?;
                        crate::servers::sh(Command::new("curl").args([
                            "-sf",
                            "-X",
                            "PUT",
                            &format!("http://127.0.0.1:{s3}/bench"),
                        ]))?;
                        let store = format!("type=s3,bucket=bench,region=us-east-1,endpoint_url=http://127.0.0.1:{s3},use_path_style=true,access_key_id=test,secret_access_key=test,prefix={{repo}}/,name={{tag}}");
                        let (p, c) = spawn_serve(&self.bin, &self.work, &store)?;
                        (p, Some(c))
                    }
                };
                if let Some(c) = &child {
                    pids.push(c.0.id());
                }
                self.server_pids = pids;
                let spec = format!("type=registry,ref=127.0.0.1:{port}/bench/cache:c");
                let from = format!("type=local,src={}", src.display());
                let m = self.time(&mut self.copy(&from, &format!("{spec},image-manifest=true,oci-mediatypes=true")))?;
                self.record(size.label, EXPORT, endpoint.name(), m, None);
                let dir = self.fresh_dir("import");
                let m = self.time(&mut self.copy(&spec, &format!("type=local,dest={}", dir.display())))?;
                self.record(size.label, IMPORT, endpoint.name(), m, None);
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_dir_all(&store_dir);
                self.server_pids.clear();
                drop(child);
                drop(srv);
            }
        }
        Ok(())
    }
}

/// The target lines: each serve row's speed relative to docker-registry's, wall and CPU.
pub(super) fn targets(here: &[&Row]) -> String {
    let mut out = String::new();
    for op in [EXPORT, IMPORT] {
        let Some(peer) = here
            .iter()
            .find(|r| r.op == op && r.tool == Endpoint::DockerRegistry.name())
        else {
            continue;
        };
        for endpoint in [Endpoint::ServeLocal, Endpoint::ServeS3] {
            let Some(r) = here.iter().find(|r| r.op == op && r.tool == endpoint.name()) else {
                continue;
            };
            let ratio = peer.wall() / r.wall();
            let cpu = |x: &Row| x.cpu() + x.server_cpu().unwrap_or(0.0);
            let _ = writeln!(
                out,
                "| {op}: {} at least 1.0x docker-registry | {ratio:.2}x ({:.2} s vs {:.2} s wall; client + server CPU {:.2} s vs {:.2} s) | {} |",
                endpoint.name(),
                r.wall(),
                peer.wall(),
                cpu(r),
                cpu(peer),
                if ratio >= 1.0 { "yes" } else { "no" }
            );
        }
    }
    out
}
