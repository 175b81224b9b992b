//! A counting HTTP/1.1 proxy for the benchmark: forwards every byte between a client and one
//! upstream server and counts the requests by method and the bytes each way, so a no-change
//! re-export can be shown to send HEADs (and the manifest) only.
//!
//! It parses request framing (Content-Length or chunked) to find where one request ends and
//! the next begins on a kept-alive connection; responses are forwarded as they come.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::Result;

#[derive(Default)]
struct Counts {
    methods: Mutex<BTreeMap<String, u64>>,
    up: AtomicU64,
    down: AtomicU64,
}

/// A running proxy; stops accepting when dropped.
pub struct CountingProxy {
    pub port: u16,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
}

/// What went through the proxy.
pub struct Traffic {
    pub methods: BTreeMap<String, u64>,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl Traffic {
    pub fn requests(&self) -> u64 {
        self.methods.values().sum()
    }

    /// `HEAD 600, PUT 2`.
    pub fn summary(&self) -> String {
        self.methods
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl CountingProxy {
    pub fn start(upstream_port: u16) -> Result<CountingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("proxy bind: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let c = c.clone();
                std::thread::spawn(move || {
                    let _ = serve(client, upstream_port, &c);
                });
            }
        });
        Ok(CountingProxy { port, counts, stop })
    }

    /// The counts so far, and reset them.
    pub fn take(&self) -> Traffic {
        let methods = std::mem::take(&mut *self.counts.methods.lock().unwrap_or_else(|p| p.into_inner()));
        Traffic {
            methods,
            bytes_up: self.counts.up.swap(0, Ordering::Relaxed),
            bytes_down: self.counts.down.swap(0, Ordering::Relaxed),
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(client: TcpStream, upstream_port: u16, counts: &Counts) -> std::io::Result<()> {
    let server = TcpStream::connect(("127.0.0.1", upstream_port))?;
    let (mut server_r, mut client_w) = (server.try_clone()?, client.try_clone()?);
    let down = std::thread::scope(|scope| {
        let responses = scope.spawn(move || -> u64 {
            let n = std::io::copy(&mut server_r, &mut client_w).unwrap_or(0);
            let _ = client_w.shutdown(Shutdown::Write);
            n
        });
        let _ = requests(client, &server, counts);
        let _ = server.shutdown(Shutdown::Write);
        responses.join().unwrap_or(0)
    });
    counts.down.fetch_add(down, Ordering::Relaxed);
    Ok(())
}

/// Forward requests one by one, counting each by method.
fn requests(client: TcpStream, mut server: &TcpStream, counts: &Counts) -> std::io::Result<()> {
    let mut r = BufReader::with_capacity(256 * 1024, client);
    loop {
        let mut head = Vec::new();
        let mut line = String::new();
        let (mut length, mut chunked) = (0u64, false);
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(()); // the client closed the connection
            }
            head.extend_from_slice(line.as_bytes());
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                }
            }
        }
        let method = String::from_utf8_lossy(&head)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_owned();
        *counts
            .methods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(method)
            .or_default() += 1;
        server.write_all(&head)?;
        let mut sent = head.len() as u64;
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                server.write_all(line.as_bytes())?;
                sent += line.len() as u64;
                let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        line.clear();
                        if r.read_line(&mut line)? == 0 {
                            break;
                        }
                        server.write_all(line.as_bytes())?;
                        sent += line.len() as u64;
                        if line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                sent += std::io::copy(&mut (&mut r).take(size + 2), &mut server)?;
            }
        } else {
            sent += std::io::copy(&mut (&mut r).take(length), &mut server)?;
        }
        counts.up.fetch_add(sent, Ordering::Relaxed);
    }
}
