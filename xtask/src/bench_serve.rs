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
    /// No endpoint: `bkcache copy` straight to the same moto, what serve -> s3 adds to.
    DirectS3,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::DockerRegistry => "docker-registry (filesystem)",
            Endpoint::ServeLocal => "bkcache serve -> local",
            Endpoint::ServeS3 => "bkcache serve -> s3 (moto)",
            Endpoint::DirectS3 => "no endpoint: bkcache copy to s3 (moto)",
        }
    }

    fn servers(self) -> &'static str {
        match self {
            Endpoint::DockerRegistry => "registry-plain",
            Endpoint::ServeLocal => "none",
            Endpoint::ServeS3 | Endpoint::DirectS3 => "s3",
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
            for endpoint in [
                Endpoint::DockerRegistry,
                Endpoint::ServeLocal,
                Endpoint::ServeS3,
                Endpoint::DirectS3,
            ] {
                let srv = Servers::start_selected(endpoint.servers())?;
                let store_pids: Vec<u32> = srv.children.iter().map(|(_, c)| c.id()).collect();
                let store_dir = self.fresh_dir("serve-store");
                let s3 = match endpoint {
                    Endpoint::ServeS3 | Endpoint::DirectS3 => {
                        let port = port_in(srv.var("BKCACHE_TEST_S3")?)?;
                        bench_bucket(port)?;
                        bench_s3_spec(port)
                    }
                    _ => String::new(),
                };
                let (spec, child) = match endpoint {
                    Endpoint::DockerRegistry => {
                        let port = port_in(srv.var("BKCACHE_TEST_REGISTRY")?)?;
                        (format!("type=registry,ref=127.0.0.1:{port}/bench/cache:c"), None)
                    }
                    Endpoint::ServeLocal | Endpoint::ServeS3 => {
                        let store = match endpoint {
                            Endpoint::ServeLocal => {
                                format!("type=local,dest={}/{{repo}},tag={{tag}}", store_dir.display())
                            }
                            _ => format!("{s3},prefix={{repo}}/,name={{tag}}"),
                        };
                        let (port, c) = spawn_serve(&self.bin, &self.work, &store)?;
                        (format!("type=registry,ref=127.0.0.1:{port}/bench/cache:c"), Some(c))
                    }
                    Endpoint::DirectS3 => (format!("{s3},prefix=bench/cache/,name=c"), None),
                };
                let mut pids = store_pids.clone();
                pids.extend(child.as_ref().map(|c| c.0.id()));
                self.server_pids = pids;
                let from = format!("type=local,src={}", src.display());
                let export_attrs = if spec.starts_with("type=registry") {
                    ",image-manifest=true,oci-mediatypes=true"
                } else {
                    ""
                };
                let dir = self.fresh_dir("import");
                for (op, from, to) in [
                    (EXPORT, from.clone(), format!("{spec}{export_attrs}")),
                    (IMPORT, spec.clone(), format!("type=local,dest={}", dir.display())),
                ] {
                    let before = tree_cpu(&store_pids);
                    let m = self.time(&mut self.copy(&from, &to))?;
                    let note = (child.is_some() && !store_pids.is_empty()).then(|| {
                        format!(
                            "of the server CPU, {:.2} s is moto's",
                            tree_cpu(&store_pids).saturating_sub(before).as_secs_f64()
                        )
                    });
                    self.record(size.label, op, endpoint.name(), m, note);
                }
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
            if let (Endpoint::ServeS3, Some(direct)) = (
                endpoint,
                here.iter().find(|x| x.op == op && x.tool == Endpoint::DirectS3.name()),
            ) {
                let _ = writeln!(
                    out,
                    "| {op}: what serve adds to the same moto (serve -> s3 vs bkcache copy to s3) | {:.2}x ({:.2} s vs {:.2} s wall; {}) | info |",
                    direct.wall() / r.wall(),
                    r.wall(),
                    direct.wall(),
                    r.note
                );
            }
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
