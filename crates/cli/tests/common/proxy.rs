//! A fault-injecting HTTP/1.1 proxy for the backend tests: bkcache talks to
//! `127.0.0.1:PROXYPORT` instead of the server (registry ref host, s3 `endpoint_url`, azblob
//! `account_url`), and the proxy forwards every request, or does what a rule says instead:
//! reset the connection, stall, answer a canned status, cut the response body short, or flip
//! one byte of it.
//!
//! std::net and threads only. Each client connection gets a thread; each request is read whole
//! (head and body, `Content-Length` or chunked), sent to the server on a fresh connection, and
//! the whole answer is read back before it is passed on (re-framed with `Content-Length`), so a
//! fault can be placed at an exact byte. Test caches are small: buffering is fine.
//!
//! ```ignore
//! let p = Proxy::start(&registry_addr);
//! p.add(Rule::request("PUT", "/manifests/", Fault::Status { code: 503, retry_after: None }).times(2));
//! bkcache(&["copy", "--from", &src, "--to", &format!("type=registry,ref={}/x:t", p.addr())]);
//! assert_eq!(p.injected(), 2);
//! ```
//!
//! Also here: reading a server directly (around the proxy), to check what a failed export left.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do instead of (or to) a normal forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the client connection with a TCP RST; the server never sees the request.
    Reset,
    /// Forward the request (the server acts on it), then RST the client without an answer.
    ResetAfterForward,
    /// Hold the answer this long: after its head and half its body when it has a body (a
    /// download stalls mid-stream), before anything otherwise.
    Stall(Duration),
    /// Answer this status (with `Retry-After` seconds when given) instead of forwarding.
    Status { code: u16, retry_after: Option<u32> },
    /// Forward, but pass on only half the answer's body (its `Content-Length` unchanged; half
    /// the head when there is no body), then close the connection.
    Truncate,
    /// Forward, with one bit flipped in the middle byte of the answer's body (length unchanged).
    Corrupt,
}

impl Fault {
    /// A canned status without `Retry-After`.
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            retry_after: None,
        }
    }

    /// Short name for logs and assertion messages.
    pub fn name(&self) -> String {
        match self {
            Fault::Reset => "reset".into(),
            Fault::ResetAfterForward => "reset-after-forward".into(),
            Fault::Stall(d) => format!("stall-{}ms", d.as_millis()),
            Fault::Status { code, .. } => format!("status-{code}"),
            Fault::Truncate => "truncate".into(),
            Fault::Corrupt => "corrupt".into(),
        }
    }
}

/// Which events a rule applies to.
#[derive(Debug, Clone)]
enum When {
    /// Accepted connections: the fault applies to the connection's first request (a reset
    /// happens as soon as the client has sent something; a stall before anything is read).
    Connection,
    /// Requests whose method matches (empty: any) and whose path contains `path`.
    Request { method: String, path: String },
}

/// A fault for the matching events `skip..skip+times` (counted per rule).
#[derive(Debug, Clone)]
pub struct Rule {
    when: When,
    fault: Fault,
    skip: usize,
    times: usize,
    seen: usize,
}

impl Rule {
    /// Requests with this method (`""`: any) whose path contains `path_contains`.
    pub fn request(method: &str, path_contains: &str, fault: Fault) -> Rule {
        Rule {
            when: When::Request {
                method: method.to_owned(),
                path: path_contains.to_owned(),
            },
            fault,
            skip: 0,
            times: 1,
            seen: 0,
        }
    }

    /// Accepted connections.
    pub fn connection(fault: Fault) -> Rule {
        Rule {
            when: When::Connection,
            fault,
            skip: 0,
            times: 1,
            seen: 0,
        }
    }

    /// Let the first `n` matching events through untouched.
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }

    /// Apply to `n` matching events (default 1); `usize::MAX`: every one.
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }

    /// Apply to every matching event.
    pub fn always(self) -> Rule {
        self.times(usize::MAX)
    }

    fn take(&mut self) -> Option<Fault> {
        self.seen += 1;
        (self.seen > self.skip && self.seen - self.skip <= self.times).then(|| self.fault.clone())
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Event {
    /// Connection number (0-based, in accept order).
    pub conn: usize,
    pub method: String,
    pub path: String,
    /// The status the client got (the server's, or the canned one); `None` when the client
    /// got no complete answer.
    pub status: Option<u16>,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct State {
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Event>>,
    stop: AtomicBool,
    connections: AtomicUsize,
}

impl State {
    fn fault_for_connection(&self) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        rules
            .iter_mut()
            .filter(|r| matches!(r.when, When::Connection))
            .find_map(Rule::take)
    }

    fn fault_for_request(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let mut chosen = None;
        // Every matching rule counts the event; the first that fires wins.
        for r in rules.iter_mut() {
            let When::Request { method: m, path: p } = &r.when else {
                continue;
            };
            if (m.is_empty() || m.eq_ignore_ascii_case(method)) && path.contains(p.as_str()) {
                let f = r.take();
                if chosen.is_none() {
                    chosen = f;
                }
            }
        }
        chosen
    }

    fn record(&self, event: Event) {
        self.log.lock().unwrap().push(event);
    }
}

/// A running proxy. Dropping it stops accepting; open connections end with their clients.
pub struct Proxy {
    addr: String,
    upstream: String,
    state: Arc<State>,
}

impl Proxy {
    /// Proxy a free 127.0.0.1 port to `upstream` (`HOST:PORT`, or a URL whose host is used).
    pub fn start(upstream: &str) -> Proxy {
        let upstream = host_port(upstream);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state: Arc<State> = Arc::default();
        let (st, up) = (state.clone(), upstream.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let conn = st.connections.fetch_add(1, Ordering::SeqCst);
                let (st, up) = (st.clone(), up.clone());
                std::thread::spawn(move || serve_connection(client, conn, &up, &st));
            }
        });
        Proxy { addr, upstream, state }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `url` with the upstream's `host:port` replaced by the proxy's (e.g. an account URL).
    pub fn rewrite(&self, url: &str) -> String {
        url.replacen(&self.upstream, &self.addr, 1)
    }

    /// Add a rule (rules are checked in the order added).
    pub fn add(&self, rule: Rule) -> &Self {
        self.state.rules.lock().unwrap().push(rule);
        self
    }

    /// Remove every rule and forget the log.
    pub fn reset(&self) {
        self.state.rules.lock().unwrap().clear();
        self.state.log.lock().unwrap().clear();
    }

    /// Every request seen so far.
    pub fn log(&self) -> Vec<Event> {
        self.state.log.lock().unwrap().clone()
    }

    /// How many faults were applied.
    pub fn injected(&self) -> usize {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.fault.is_some())
            .count()
    }

    /// The log as `METHOD path -> status [fault]` lines, for assertion messages.
    pub fn describe(&self) -> String {
        self.log()
            .iter()
            .map(|e| {
                format!(
                    "#{} {} {} -> {}{}",
                    e.conn,
                    e.method,
                    e.path,
                    e.status.map_or("-".into(), |s| s.to_string()),
                    e.fault.as_ref().map_or(String::new(), |f| format!(" [{}]", f.name()))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn host_port(s: &str) -> String {
    let s = s.trim_start_matches("http://").trim_start_matches("https://");
    s.split('/').next().unwrap_or(s).to_owned()
}

/// Close with a TCP RST (SO_LINGER on, timeout 0), not a FIN.
#[allow(unsafe_code)]
fn reset(stream: TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        #[repr(C)]
        struct Linger {
            l_onoff: i32,
            l_linger: i32,
        }
        extern "C" {
            fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
        }
        const SOL_SOCKET: i32 = 1;
        const SO_LINGER: i32 = 13;
        let l = Linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket fd we own, a pointer to a live struct linger and its size.
        unsafe {
            setsockopt(
                stream.as_raw_fd(),
                SOL_SOCKET,
                SO_LINGER,
                &l,
                std::mem::size_of::<Linger>() as u32,
            )
        };
    }
    let _ = stream.shutdown(Shutdown::Read);
    drop(stream);
}

/// A parsed message head.
struct Head {
    raw: Vec<u8>,
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn content_length(&self) -> Option<usize> {
        self.get("content-length").and_then(|v| v.trim().parse().ok())
    }

    /// The head again with some headers dropped and others added.
    fn rebuild(&self, drop: &[&str], add: &[(&str, String)]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.first);
        for (k, v) in &self.headers {
            if !drop.iter().any(|d| k.eq_ignore_ascii_case(d)) {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        for (k, v) in add {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Read a head; `None` at a clean end of stream.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if raw.is_empty() && (line == b"\r\n" || line == b"\n") {
            continue; // stray CRLF between messages
        }
        raw.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if raw.len() > 1 << 20 {
            return Err(std::io::Error::other("head too large"));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").trim_end().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Head { raw, first, headers }))
}

/// A chunked body: (raw bytes with framing, decoded bytes).
fn read_chunked(r: &mut impl BufRead) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let (mut raw, mut data) = (Vec::new(), Vec::new());
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        let size = text.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16).map_err(|_| std::io::Error::other("bad chunk size"))?;
        if n == 0 {
            // Trailers, then an empty line.
            loop {
                let mut t = Vec::new();
                if r.read_until(b'\n', &mut t)? == 0 {
                    return Ok((raw, data));
                }
                raw.extend_from_slice(&t);
                if t == b"\r\n" || t == b"\n" {
                    return Ok((raw, data));
                }
            }
        }
        let mut chunk = vec![0u8; n + 2];
        r.read_exact(&mut chunk)?;
        raw.extend_from_slice(&chunk);
        data.extend_from_slice(&chunk[..n]);
    }
}

fn read_exact_vec(r: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

/// The server's answer, whole.
struct Answer {
    head: Head,
    status: u16,
    /// `None`: the answer has no body by definition (HEAD, 204, 304).
    body: Option<Vec<u8>>,
}

/// Send one request to the server on a fresh connection and read the whole answer.
fn forward(upstream: &str, request_head: &[u8], body: &[u8], method: &str) -> std::io::Result<Answer> {
    let mut server = TcpStream::connect(upstream)?;
    server.set_read_timeout(Some(Duration::from_secs(120)))?;
    server.write_all(request_head)?;
    server.write_all(body)?;
    let mut reader = BufReader::new(server);
    loop {
        let head = read_head(&mut reader)?.ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let status: u16 = head
            .first
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&status) {
            continue; // interim answers are not passed on
        }
        let body = if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
            None
        } else if head.chunked() {
            Some(read_chunked(&mut reader)?.1)
        } else if let Some(n) = head.content_length() {
            Some(read_exact_vec(&mut reader, n)?)
        } else {
            let mut v = Vec::new();
            reader.read_to_end(&mut v)?;
            Some(v)
        };
        return Ok(Answer { head, status, body });
    }
}

fn serve_connection(client: TcpStream, conn: usize, upstream: &str, state: &State) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(300)));
    // A TLS ClientHello (bkcache tries https first on loopback registries): refuse it, as a
    // plain-HTTP registry does, so the client falls back to http.
    let mut first = [0u8; 1];
    match client.peek(&mut first) {
        Ok(1) if first[0] == 0x16 => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Ok(1) => {}
        _ => return,
    }
    let mut pending = state.fault_for_connection();
    match &pending {
        Some(Fault::Reset) => {
            state.record(Event {
                conn,
                method: "(connection)".into(),
                path: String::new(),
                status: None,
                fault: pending.clone(),
            });
            reset(client);
            return;
        }
        Some(Fault::Stall(d)) => {
            std::thread::sleep(*d);
            state.record(Event {
                conn,
                method: "(connection)".into(),
                path: String::new(),
                status: None,
                fault: pending.take(),
            });
        }
        _ => {}
    }
    let mut writer = client.try_clone().unwrap();
    let mut reader = BufReader::new(client);
    loop {
        let head = match read_head(&mut reader) {
            Ok(Some(h)) => h,
            _ => return,
        };
        let mut parts = head.first.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let raw_body = if head.chunked() {
            match read_chunked(&mut reader) {
                Ok((raw, _)) => raw,
                Err(_) => return,
            }
        } else {
            match read_exact_vec(&mut reader, head.content_length().unwrap_or(0)) {
                Ok(b) => b,
                Err(_) => return,
            }
        };
        let client_closes = head.get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let fault = pending.take().or_else(|| state.fault_for_request(&method, &path));
        let mut event = Event {
            conn,
            method: method.clone(),
            path: path.clone(),
            status: None,
            fault: fault.clone(),
        };
        match &fault {
            Some(Fault::Reset) => {
                state.record(event);
                reset(writer);
                return;
            }
            Some(Fault::Status { code, retry_after }) => {
                let body = format!("injected fault: HTTP {code}\n");
                let mut h = format!(
                    "HTTP/1.1 {code} Injected\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
                    body.len()
                );
                if let Some(s) = retry_after {
                    h.push_str(&format!("Retry-After: {s}\r\n"));
                }
                h.push_str("\r\n");
                event.status = Some(*code);
                state.record(event);
                let mut out = h.into_bytes();
                if !method.eq_ignore_ascii_case("HEAD") {
                    out.extend_from_slice(body.as_bytes());
                }
                if writer.write_all(&out).is_err() || client_closes {
                    return;
                }
                continue;
            }
            _ => {}
        }
        // Forward: the server closes after answering; no `Expect` (the proxy holds the body).
        let request_head = head.rebuild(
            &["connection", "expect", "keep-alive"],
            &[("Connection", "close".to_owned())],
        );
        let answer = match forward(upstream, &request_head, &raw_body, &method) {
            Ok(a) => a,
            Err(_) => {
                // The server is gone or broke off: the client sees the connection end.
                state.record(event);
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        };
        let (out_head, mut body) = match answer.body {
            None => (answer.head.rebuild(&["connection", "keep-alive"], &[]), Vec::new()),
            Some(b) => (
                answer.head.rebuild(
                    &["connection", "keep-alive", "transfer-encoding", "content-length"],
                    &[("Content-Length", b.len().to_string())],
                ),
                b,
            ),
        };
        match &fault {
            Some(Fault::ResetAfterForward) => {
                state.record(event);
                reset(writer);
                return;
            }
            Some(Fault::Truncate) => {
                let cut: Vec<u8> = if body.is_empty() {
                    out_head[..out_head.len() / 2].to_vec()
                } else {
                    let mut v = out_head.clone();
                    v.extend_from_slice(&body[..body.len() / 2]);
                    v
                };
                state.record(event);
                let _ = writer.write_all(&cut);
                let _ = writer.flush();
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Some(Fault::Stall(d)) => {
                event.status = Some(answer.status);
                state.record(event);
                let half = body.len() / 2;
                if half > 0 {
                    let _ = writer.write_all(&out_head);
                    let _ = writer.write_all(&body[..half]);
                    let _ = writer.flush();
                    std::thread::sleep(*d);
                    if writer.write_all(&body[half..]).is_err() {
                        return;
                    }
                } else {
                    std::thread::sleep(*d);
                    if writer.write_all(&out_head).is_err() || writer.write_all(&body).is_err() {
                        return;
                    }
                }
                if client_closes {
                    return;
                }
                continue;
            }
            Some(Fault::Corrupt) if !body.is_empty() => {
                let i = body.len() / 2;
                body[i] ^= 0x01;
            }
            _ => {}
        }
        event.status = Some(answer.status);
        state.record(event);
        if writer.write_all(&out_head).is_err() || writer.write_all(&body).is_err() {
            return;
        }
        if client_closes {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a server directly (around the proxy): what a failed export left behind.

/// A plain HTTP/1.1 request to `host:port` with `Connection: close`: (status, body).
pub fn http_direct(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let addr = host_port(addr);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    let head = read_head(&mut reader).unwrap().unwrap();
    let status = head
        .first
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = if method == "HEAD" {
        Vec::new()
    } else if head.chunked() {
        read_chunked(&mut reader).unwrap().1
    } else if let Some(n) = head.content_length() {
        read_exact_vec(&mut reader, n).unwrap()
    } else {
        let mut v = Vec::new();
        reader.read_to_end(&mut v).unwrap();
        v
    };
    (status, body)
}

/// The manifest bytes a plain-HTTP registry serves for `repo:reference`, if any.
pub fn registry_manifest(host: &str, repo: &str, reference: &str) -> Option<Vec<u8>> {
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
    let (status, body) = http_direct(
        host,
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", accept)],
    );
    match status {
        200 => Some(body),
        404 => None,
        s => panic!("registry answered {s} for {repo}:{reference}"),
    }
}

/// moto checks no signatures, but refuses anonymous object requests.
const MOTO_AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

/// An object's bytes in a moto bucket, if present.
pub fn s3_object(endpoint: &str, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let (status, body) = http_direct(
        endpoint,
        "GET",
        &format!("/{bucket}/{key}"),
        &[
            ("Authorization", MOTO_AUTH),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ],
    );
    match status {
        200 => Some(body),
        404 => None,
        s => panic!(
            "moto answered {s} for {bucket}/{key}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// Create a moto bucket no other test or run uses; returns its name.
pub fn s3_new_bucket(endpoint: &str, tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("bk-{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000_000);
    let (status, body) = http_direct(
        endpoint,
        "PUT",
        &format!("/{name}"),
        &[
            ("Authorization", MOTO_AUTH),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ],
    );
    assert_eq!(status, 200, "create bucket {name}: {}", String::from_utf8_lossy(&body));
    name
}

/// A blob's bytes in an Azurite container (signed with the account key), if present.
pub fn azblob_object(account_url: &str, account: &str, key: &str, container: &str, name: &str) -> Option<Vec<u8>> {
    use object_store::azure::MicrosoftAzureBuilder;
    use object_store::{ClientOptions, ObjectStoreExt};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = MicrosoftAzureBuilder::new()
        .with_account(account)
        .with_access_key(key)
        .with_container_name(container)
        .with_endpoint(account_url.to_owned())
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match store.get(&object_store::path::Path::from(name)).await {
            Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("Azurite GET {container}/{name}: {e}"),
        }
    })
}

/// A name no other test or run uses (for repositories, prefixes, containers).
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}
