//! A GitHub Actions cache service for tests (`xtask gha-server`), since none exists in any package
//! registry. It speaks what BuildKit's client (go-actions-cache) and the official one
//! (npm `@actions/cache`) speak, with the quirks of the real service (spec §3.4, F7):
//!
//! - **v2** (github.com): Twirp JSON at `/twirp/github.actions.results.api.v1.CacheService/*`,
//!   proto field names (snake_case), `entry_id` answered as a JSON string (protojson int64),
//!   `size_bytes` accepted as a number (Go) or a string (protobuf-ts), and signed URLs that are
//!   real **service SAS URLs into Azurite** (sv=2021-08-06, signed with the account key), so the
//!   clients upload with Put Blob / Put Block / Put Block List and download with ranged GETs
//!   straight from the blob store, as on github.com.
//! - **v1** (GHES, Gitea/Forgejo runners): `/_apis/artifactcache/{cache,caches,caches/<id>}`:
//!   query (204 on a miss), reserve (`{"cacheId":N}`), chunked `PATCH` with
//!   `Content-Range: bytes a-b/*` (staged as Azure blocks, in any order), commit with the size
//!   (the block list in offset order); `archiveLocation` is a SAS URL too.
//! - **REST** (`/api/repos/<owner>/<repo>/actions/caches`): listing (key prefix, `ref`, pages)
//!   and deletion by key or id, for `ghtoken` + `repository`.
//!
//! Lookups match the exact key first, then each key as a prefix, **newest first**, scope by
//! scope in the token's order; only finalized entries of the same `version` are visible.
//! Entries live in the writer's scope: the last scope of the runtime token's `ac` claim with the
//! write bit (the JWT is read unverified, like the real clients do). A second reservation of the
//! same key, version and scope is `already_exists` (409), pending or not.
//!
//! Every path may be prefixed with `/ns/<name>` for a namespace of its own (the tests run in
//! parallel). Admin endpoints for tests: `POST /_admin/fault` (the next N matching requests
//! answer an HTTP status, e.g. 429 with `Retry-After`, optionally echoing the Authorization
//! header in the body, or the next N download URLs carry a bad signature), `POST /_admin/limit` (at most N reservations per time window, then 429 with the
//! seconds until a slot frees), `POST /_admin/sas_ttl` (how long signed URLs live),
//! `POST /_admin/load` (entries from a directory of files named by
//! %-escaped key), `GET /_admin/log` and `GET /_admin/entries`.
//!
//! A std::net HTTP/1.1 server, a thread per connection; talks to Azurite with a tiny HTTP
//! client and account SAS for its own work (container, committed sizes, deletes).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::Result;

/// The service SAS version the signed URLs use (string-to-sign with the encryption-scope line).
const SAS_VERSION: &str = "2021-08-06";
/// Largest request body accepted (v1 chunks are 32 MiB with the official clients).
const MAX_BODY: usize = 256 << 20;
/// How long signed URLs stay valid.
const SAS_TTL: Duration = Duration::from_secs(3600);

/// `xtask gha-server --port P --azurite URL --account NAME --key KEY [--container NAME]`.
pub fn main(args: &[String]) -> Result {
    let mut port = None;
    let (mut azurite, mut account, mut key) = (None, None, None);
    let mut container = "gha-cache".to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--port" => port = Some(value()?.parse::<u16>().map_err(|e| format!("--port: {e}"))?),
            "--azurite" => azurite = Some(value()?),
            "--account" => account = Some(value()?),
            "--key" => key = Some(value()?),
            "--container" => container = value()?,
            other => return Err(format!("gha-server: unknown argument {other:?}")),
        }
    }
    let usage = "usage: xtask gha-server --port P --azurite http://127.0.0.1:PORT/ACCOUNT --account NAME --key BASE64";
    let (Some(port), Some(azurite), Some(account), Some(key)) = (port, azurite, account, key) else {
        return Err(usage.into());
    };
    let azure = Azure::new(&azurite, &account, &key, &container)?;
    azure.create_container()?;
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let server = Arc::new(Server {
        state: Mutex::new(State::default()),
        azure,
        blob_prefix: format!("{started:x}"),
        started: Instant::now(),
    });
    eprintln!("gha-server: listening on 127.0.0.1:{port}, blobs in {azurite}/{container}");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let server = server.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve_connection(&server, stream) {
                eprintln!("gha-server: connection: {e}");
            }
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> std::result::Result<Value, Response> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            Response::json(
                400,
                json!({"code": "malformed", "msg": format!("body is not JSON: {e}")}),
            )
        })
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, v: Value) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
        }
    }

    fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A Twirp error: `{"code","msg"}` with the code's HTTP status.
    fn twirp(code: &str, msg: impl Into<String>) -> Self {
        let status = match code {
            "invalid_argument" | "malformed" => 400,
            "unauthenticated" => 401,
            "permission_denied" => 403,
            "not_found" => 404,
            "already_exists" => 409,
            "resource_exhausted" => 429,
            _ => 500,
        };
        Response::json(status, json!({"code": code, "msg": msg.into()}))
    }

    /// A v1 (Azure DevOps style) error body.
    fn v1_error(status: u16, type_key: &str, message: impl Into<String>) -> Self {
        Response::json(
            status,
            json!({"$id": "1", "innerException": null, "message": message.into(), "typeName": format!("GitHub.Services.ArtifactCache.{type_key}"), "typeKey": type_key, "errorCode": 0, "eventId": 3000}),
        )
    }

    fn with_header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode everything but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn read_request(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream) -> Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_err(|e| e.to_string())? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| e.to_string())?;
    }
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|e| format!("bad chunk size {size_line:?}: {e}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut t = String::new();
                    if reader.read_line(&mut t).map_err(|e| e.to_string())? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err("request body too large".into());
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).map_err(|e| e.to_string())?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).map_err(|e| e.to_string())?;
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(|e| format!("bad Content-Length: {e}"))?;
        if len > MAX_BODY {
            return Err("request body too large".into());
        }
        body.resize(len, 0);
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    }
    let (path, raw_query) = target.split_once('?').unwrap_or((&target, ""));
    let query = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect();
    Ok(Some(Request {
        method,
        path: percent_decode(path, false),
        query,
        headers,
        body,
    }))
}

fn serve_connection(server: &Server, stream: TcpStream) -> Result {
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader, &mut writer)? {
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let head = req.method == "HEAD";
        let resp = server.handle(&req);
        let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        writer.write_all(out.as_bytes()).map_err(|e| e.to_string())?;
        if !head {
            writer.write_all(&resp.body).map_err(|e| e.to_string())?;
        }
        writer.flush().map_err(|e| e.to_string())?;
        if close {
            break;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Azure Blob (Azurite): SAS signing and a tiny client

/// HMAC-SHA256 (RFC 2104) over sha2.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `YYYY-MM-DDTHH:MM:SSZ` (what SAS `se` wants).
fn iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

struct Azure {
    /// `127.0.0.1:PORT`.
    host: String,
    /// `/devstoreaccount1` (path-style account).
    account_path: String,
    /// `http://127.0.0.1:PORT/devstoreaccount1`.
    account_url: String,
    account: String,
    key: Vec<u8>,
    container: String,
}

struct AzureResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl AzureResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An account SAS URL for Azurite (`URL?sv=...`), for peers that take a SAS (the benchmark's
/// rclone).
pub(crate) fn account_sas_url(url: &str, account: &str, key: &str) -> Result<String> {
    let az = Azure::new(url, account, key, "")?;
    Ok(format!("{}?{}", az.account_url, az.account_sas()))
}

impl Azure {
    fn new(url: &str, account: &str, key: &str, container: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--azurite must be an http:// URL, got {url}"))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, account));
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|e| format!("--key is not base64: {e}"))?;
        Ok(Azure {
            host: host.to_owned(),
            account_path: format!("/{}", path.trim_matches('/')),
            account_url: url.trim_end_matches('/').to_owned(),
            account: account.to_owned(),
            key,
            container: container.to_owned(),
        })
    }

    fn sign(&self, to_sign: &str) -> String {
        percent_encode(&base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&self.key, to_sign.as_bytes())))
    }

    /// A service SAS for one blob (`sr=b`), valid for `ttl`.
    fn blob_sas(&self, blob: &str, permissions: &str, ttl: Duration) -> String {
        let se = iso8601(SystemTime::now() + ttl);
        let resource = format!("/blob/{}/{}/{blob}", self.account, self.container);
        // sp, st, se, canonicalizedResource, si, sip, spr, sv, sr, snapshot, ses, rscc, rscd,
        // rsce, rscl, rsct (versions 2020-12-06 and later).
        let to_sign = format!("{permissions}\n\n{se}\n{resource}\n\n\n\n{SAS_VERSION}\nb\n\n\n\n\n\n\n");
        format!(
            "sv={SAS_VERSION}&sr=b&sp={permissions}&se={}&sig={}",
            percent_encode(&se),
            self.sign(&to_sign)
        )
    }

    /// The signed URL a client gets for a blob.
    fn signed_url(&self, blob: &str, permissions: &str, corrupt: bool, ttl: Duration) -> String {
        let mut sas = self.blob_sas(blob, permissions, ttl);
        if corrupt {
            // Same shape, wrong signature: Azurite answers 403 AuthenticationFailed.
            sas = sas.replace("&sig=", "&sig=AAAA");
        }
        format!("{}/{}/{blob}?{sas}", self.account_url, self.container)
    }

    /// An account SAS for the server's own requests.
    fn account_sas(&self) -> String {
        let (sp, ss, srt, se, spr) = ("rwdlac", "b", "sco", iso8601(SystemTime::now() + SAS_TTL), "https,http");
        let to_sign = format!(
            "{}\n{sp}\n{ss}\n{srt}\n\n{se}\n\n{spr}\n{SAS_VERSION}\n\n",
            self.account
        );
        format!(
            "sv={SAS_VERSION}&ss={ss}&srt={srt}&sp={sp}&se={}&spr={}&sig={}",
            percent_encode(&se),
            percent_encode(spr),
            self.sign(&to_sign)
        )
    }

    fn request(&self, method: &str, path_query: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<AzureResponse> {
        let mut s = TcpStream::connect(&self.host).map_err(|e| format!("azurite {}: {e}", self.host))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        let mut head = format!(
            "{method} {path_query} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\nx-ms-version: {SAS_VERSION}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        s.write_all(body).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("azurite: no end of headers")?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or("azurite: bad status line")?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        if chunked {
            let mut out = Vec::new();
            let mut rest = &body[..];
            while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
                let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).unwrap_or(0);
                if size == 0 || rest.len() < eol + 2 + size {
                    break;
                }
                out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
                rest = &rest[(eol + 4 + size).min(rest.len())..];
            }
            body = out;
        }
        Ok(AzureResponse { status, headers, body })
    }

    fn blob_path(&self, blob: &str, extra: &str) -> String {
        format!(
            "{}/{}/{blob}?{}{extra}",
            self.account_path,
            self.container,
            self.account_sas()
        )
    }

    fn create_container(&self) -> Result {
        let path = format!(
            "{}/{}?restype=container&{}",
            self.account_path,
            self.container,
            self.account_sas()
        );
        let r = self.request("PUT", &path, &[], b"")?;
        if r.status == 201 || r.status == 409 {
            Ok(())
        } else {
            Err(format!(
                "azurite: create container {}: HTTP {}: {}",
                self.container,
                r.status,
                String::from_utf8_lossy(&r.body)
            ))
        }
    }

    fn put_blob(&self, blob: &str, data: &[u8]) -> Result {
        let r = self.request(
            "PUT",
            &self.blob_path(blob, ""),
            &[("x-ms-blob-type", "BlockBlob")],
            data,
        )?;
        expect_2xx("put blob", &r)
    }

    fn put_block(&self, blob: &str, id: &str, data: &[u8]) -> Result {
        let extra = format!("&comp=block&blockid={}", percent_encode(id));
        let r = self.request("PUT", &self.blob_path(blob, &extra), &[], data)?;
        expect_2xx("put block", &r)
    }

    fn put_block_list(&self, blob: &str, ids: &[String]) -> Result {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in ids {
            xml.push_str(&format!("<Latest>{id}</Latest>"));
        }
        xml.push_str("</BlockList>");
        let r = self.request("PUT", &self.blob_path(blob, "&comp=blocklist"), &[], xml.as_bytes())?;
        expect_2xx("put block list", &r)
    }

    /// The committed size of a blob, `None` when there is no committed blob.
    fn blob_size(&self, blob: &str) -> Result<Option<u64>> {
        let r = self.request("HEAD", &self.blob_path(blob, ""), &[], b"")?;
        match r.status {
            200 => Ok(r.header("content-length").and_then(|v| v.parse().ok())),
            404 => Ok(None),
            s => Err(format!("azurite: HEAD {blob}: HTTP {s}")),
        }
    }

    fn delete_blob(&self, blob: &str) -> Result {
        let r = self.request("DELETE", &self.blob_path(blob, ""), &[], b"")?;
        if r.status == 404 {
            return Ok(());
        }
        expect_2xx("delete blob", &r)
    }
}

fn expect_2xx(what: &str, r: &AzureResponse) -> Result {
    if (200..300).contains(&r.status) {
        Ok(())
    } else {
        Err(format!(
            "azurite: {what}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The service

#[derive(Clone)]
struct Entry {
    id: u64,
    ns: String,
    key: String,
    version: String,
    scope: String,
    blob: String,
    size: Option<u64>,
    finalized: bool,
    /// Creation order: "newest" is the highest.
    seq: u64,
    created_at: SystemTime,
    last_accessed_at: SystemTime,
    /// v1 chunks staged so far: (start, end inclusive).
    chunks: Vec<(u64, u64)>,
}

impl Entry {
    fn rest_json(&self) -> Value {
        json!({
            "id": self.id,
            "ref": self.scope,
            "key": self.key,
            "version": self.version,
            "last_accessed_at": iso8601(self.last_accessed_at),
            "created_at": iso8601(self.created_at),
            "size_in_bytes": self.size.unwrap_or(0),
        })
    }
}

struct Fault {
    ns: Option<String>,
    path_contains: String,
    status: u16,
    retry_after: Option<u64>,
    remaining: u32,
    /// Instead of a status: the next download URLs carry a bad signature.
    bad_sas: bool,
    /// Put the request's Authorization header into the error body (a careless server: the
    /// client must not show it).
    echo_auth: bool,
}

struct Limit {
    max: usize,
    window: Duration,
    recent: Vec<Instant>,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    next_id: u64,
    seq: u64,
    faults: Vec<Fault>,
    limits: HashMap<String, Limit>,
    /// Per namespace: how long signed URLs live (default an hour).
    ttls: HashMap<String, Duration>,
    log: Vec<Value>,
}

struct Server {
    state: Mutex<State>,
    azure: Azure,
    blob_prefix: String,
    /// For the request log's `t_ms`.
    started: Instant,
}

/// The runtime token's `ac` claim: (scope, permission bits), in the token's order.
struct Token {
    scopes: Vec<(String, u64)>,
}

impl Token {
    fn parse(req: &Request) -> std::result::Result<Token, String> {
        let auth = req
            .header("authorization")
            .ok_or("no Authorization header (expected Bearer <runtime token>)")?;
        let jwt = auth
            .strip_prefix("Bearer ")
            .ok_or("Authorization is not a Bearer token")?;
        let payload = jwt.split('.').nth(1).ok_or("the bearer token is not a JWT")?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| format!("JWT payload is not base64url: {e}"))?;
        let claims: Value = serde_json::from_slice(&bytes).map_err(|e| format!("JWT payload is not JSON: {e}"))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as f64;
        if claims["exp"].as_f64().is_some_and(|exp| exp < now) {
            return Err("the runtime token has expired".into());
        }
        let ac = claims["ac"]
            .as_str()
            .ok_or("the runtime token has no \"ac\" claim (a JSON string)")?;
        let list: Value = serde_json::from_str(ac).map_err(|e| format!("the \"ac\" claim is not JSON: {e}"))?;
        let scopes = list
            .as_array()
            .ok_or("the \"ac\" claim is not a JSON array")?
            .iter()
            .map(|s| {
                (
                    s["Scope"].as_str().unwrap_or_default().to_owned(),
                    s["Permission"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        Ok(Token { scopes })
    }

    fn readable(&self) -> Vec<&str> {
        self.scopes
            .iter()
            .filter(|(_, p)| p & 1 != 0)
            .map(|(s, _)| s.as_str())
            .collect()
    }

    /// The scope new entries go to: the last one with the write bit (BuildKit names its index
    /// after the same one).
    fn writable(&self) -> Option<&str> {
        self.scopes
            .iter()
            .rev()
            .find(|(_, p)| p & 2 != 0)
            .map(|(s, _)| s.as_str())
    }
}

/// `size_bytes` as the Go client (number) or protobuf-ts (string) sends it.
fn int64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const TWIRP: &str = "/twirp/github.actions.results.api.v1.CacheService/";

impl Server {
    fn handle(&self, req: &Request) -> Response {
        if let Some(admin) = req.path.strip_prefix("/_admin/") {
            return self.admin(admin, req);
        }
        let (ns, path) = match req.path.strip_prefix("/ns/") {
            Some(rest) => {
                let (ns, p) = rest.split_once('/').unwrap_or((rest, ""));
                (ns.to_owned(), format!("/{p}"))
            }
            None => (String::new(), req.path.clone()),
        };
        let resp = self
            .fault(&ns, &path, req)
            .unwrap_or_else(|| self.route(&ns, &path, req));
        self.record(&ns, &path, req, &resp);
        resp
    }

    fn record(&self, ns: &str, path: &str, req: &Request, resp: &Response) {
        let body: Value = if req.body.len() < 64 << 10 {
            serde_json::from_slice(&req.body).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let mut st = lock(&self.state);
        let seq = st.log.len() + 1;
        st.log.push(json!({
            "seq": seq,
            "t_ms": self.started.elapsed().as_millis() as u64,
            "ns": ns,
            "method": req.method,
            "path": path,
            "query": req.query.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "status": resp.status,
            "auth_scheme": req.header("authorization").and_then(|a| a.split_whitespace().next()).unwrap_or(""),
            "content_type": req.header("content-type").unwrap_or(""),
            "content_range": req.header("content-range").unwrap_or(""),
            "user_agent": req.header("user-agent").unwrap_or(""),
            "body_len": req.body.len(),
            "body": body,
        }));
    }

    /// An injected fault for this request, if one matches.
    fn fault(&self, ns: &str, path: &str, req: &Request) -> Option<Response> {
        let mut st = lock(&self.state);
        let f = st.faults.iter_mut().find(|f| {
            !f.bad_sas && f.remaining > 0 && f.ns.as_deref().is_none_or(|n| n == ns) && path.contains(&f.path_contains)
        })?;
        f.remaining -= 1;
        let mut msg = format!("injected fault: HTTP {}", f.status);
        if f.echo_auth {
            msg.push_str(&format!(
                " (request had Authorization: {})",
                req.header("authorization").unwrap_or("none")
            ));
        }
        let mut resp = if path.starts_with("/twirp/") {
            let code = if f.status == 429 {
                "resource_exhausted"
            } else {
                "unavailable"
            };
            let mut r = Response::twirp(code, msg);
            r.status = f.status;
            r
        } else {
            Response::json(f.status, json!({ "message": msg }))
        };
        if let Some(s) = f.retry_after {
            resp = resp.with_header("Retry-After", s.to_string());
        }
        Some(resp)
    }

    /// Whether the next download URL should be corrupted (fault `bad_sas`).
    fn corrupt_next_url(&self, ns: &str) -> bool {
        let mut st = lock(&self.state);
        match st
            .faults
            .iter_mut()
            .find(|f| f.bad_sas && f.remaining > 0 && f.ns.as_deref().is_none_or(|n| n == ns))
        {
            Some(f) => {
                f.remaining -= 1;
                true
            }
            None => false,
        }
    }

    fn ttl(&self, ns: &str) -> Duration {
        lock(&self.state).ttls.get(ns).copied().unwrap_or(SAS_TTL)
    }

    /// The reservation rate limit: `Some(seconds to wait)` when exceeded.
    fn rate_limited(&self, ns: &str) -> Option<u64> {
        let mut st = lock(&self.state);
        let limit = st.limits.get_mut(ns)?;
        let now = Instant::now();
        let window = limit.window;
        limit.recent.retain(|t| now.duration_since(*t) < window);
        if limit.recent.len() >= limit.max {
            let oldest = limit.recent.first().copied().unwrap_or(now);
            let wait = window.saturating_sub(now.duration_since(oldest));
            return Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        }
        limit.recent.push(now);
        None
    }

    fn route(&self, ns: &str, path: &str, req: &Request) -> Response {
        if let Some(method) = path.strip_prefix(TWIRP) {
            if req.method != "POST" {
                return Response::twirp("bad_route", "Twirp methods are POST");
            }
            if !req
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json"))
            {
                return Response::twirp("bad_route", "this server speaks the JSON encoding only");
            }
            let token = match Token::parse(req) {
                Ok(t) => t,
                Err(e) => return Response::twirp("unauthenticated", e),
            };
            let body = match req.json() {
                Ok(b) => b,
                Err(r) => return r,
            };
            return match method {
                "GetCacheEntryDownloadURL" => self.v2_lookup(ns, &token, &body),
                "CreateCacheEntry" => self.v2_create(ns, &token, &body),
                "FinalizeCacheEntryUpload" => self.v2_finalize(ns, &token, &body),
                other => Response::twirp("bad_route", format!("no method {other}")),
            };
        }
        if let Some(rest) = path.strip_prefix("/_apis/artifactcache/") {
            let token = match Token::parse(req) {
                Ok(t) => t,
                Err(e) => return Response::v1_error(401, "UnauthorizedException", e),
            };
            return match (req.method.as_str(), rest) {
                ("GET", "cache") => self.v1_query(ns, &token, req),
                ("POST", "caches") => self.v1_reserve(ns, &token, req),
                (m, r) if r.starts_with("caches/") => {
                    let Ok(id) = r["caches/".len()..].parse::<u64>() else {
                        return Response::v1_error(400, "ArgumentException", "bad cache id");
                    };
                    match m {
                        "PATCH" => self.v1_upload(ns, &token, id, req),
                        "POST" => self.v1_commit(ns, &token, id, req),
                        _ => Response::empty(405),
                    }
                }
                _ => Response::v1_error(404, "NotFoundException", format!("no route {rest}")),
            };
        }
        if let Some(rest) = path.strip_prefix("/api/repos/") {
            return self.rest(ns, rest, req);
        }
        Response::json(404, json!({"message": format!("no route {path}")}))
    }

    /// Exact key first, then each key as a prefix; scope by scope; newest first.
    fn find(&self, ns: &str, scopes: &[&str], key: &str, prefixes: &[&str], version: &str) -> Option<Entry> {
        let mut st = lock(&self.state);
        for scope in scopes {
            let newest = |entries: &[Entry], matches: &dyn Fn(&str) -> bool| {
                entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| {
                        e.ns == ns && e.finalized && e.version == version && e.scope == *scope && matches(&e.key)
                    })
                    .max_by_key(|(_, e)| e.seq)
                    .map(|(i, _)| i)
            };
            let found = newest(&st.entries, &|k| k == key).or_else(|| {
                std::iter::once(key)
                    .chain(prefixes.iter().copied())
                    .find_map(|p| newest(&st.entries, &|k| k.starts_with(p)))
            });
            if let Some(i) = found {
                let e = &mut st.entries[i];
                e.last_accessed_at = SystemTime::now();
                return Some(e.clone());
            }
        }
        None
    }

    fn reserve(&self, ns: &str, scope: &str, key: &str, version: &str) -> std::result::Result<Entry, ()> {
        let mut st = lock(&self.state);
        if st
            .entries
            .iter()
            .any(|e| e.ns == ns && e.scope == scope && e.key == key && e.version == version)
        {
            return Err(());
        }
        st.next_id += 1;
        st.seq += 1;
        let id = st.next_id;
        let now = SystemTime::now();
        let entry = Entry {
            id,
            ns: ns.to_owned(),
            key: key.to_owned(),
            version: version.to_owned(),
            scope: scope.to_owned(),
            blob: format!("{}-{id}", self.blob_prefix),
            size: None,
            finalized: false,
            seq: st.seq,
            created_at: now,
            last_accessed_at: now,
            chunks: Vec::new(),
        };
        st.entries.push(entry.clone());
        Ok(entry)
    }

    fn finalize(&self, id: u64, size: u64) {
        let mut st = lock(&self.state);
        st.seq += 1;
        let seq = st.seq;
        if let Some(e) = st.entries.iter_mut().find(|e| e.id == id) {
            e.finalized = true;
            e.size = Some(size);
            // "Newest" is the commit order, as the service sorts by creation of the entry.
            e.seq = seq;
        }
    }

    // --- v2 ---------------------------------------------------------------------------------

    fn v2_lookup(&self, ns: &str, token: &Token, body: &Value) -> Response {
        let (Some(key), Some(version)) = (body["key"].as_str(), body["version"].as_str()) else {
            return Response::twirp("invalid_argument", "key and version are required");
        };
        let restore: Vec<&str> = body["restore_keys"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let scopes = token.readable();
        if scopes.is_empty() {
            return Response::twirp(
                "permission_denied",
                "cache read denied: the token grants no readable scope",
            );
        }
        match self.find(ns, &scopes, key, &restore, version) {
            Some(e) => {
                let corrupt = self.corrupt_next_url(ns);
                Response::json(
                    200,
                    json!({"ok": true, "signed_download_url": self.azure.signed_url(&e.blob, "r", corrupt, self.ttl(ns)), "matched_key": e.key}),
                )
            }
            None => Response::json(200, json!({"ok": false, "signed_download_url": "", "matched_key": ""})),
        }
    }

    fn v2_create(&self, ns: &str, token: &Token, body: &Value) -> Response {
        let (Some(key), Some(version)) = (body["key"].as_str(), body["version"].as_str()) else {
            return Response::twirp("invalid_argument", "key and version are required");
        };
        if let Some(wait) = self.rate_limited(ns) {
            return Response::twirp("resource_exhausted", "too many cache entries created; try again later")
                .with_header("Retry-After", wait.to_string());
        }
        let Some(scope) = token.writable() else {
            return Response::json(
                200,
                json!({"ok": false, "signed_upload_url": "", "message": "cache write denied: the token grants no scope with write permission"}),
            );
        };
        match self.reserve(ns, scope, key, version) {
            Ok(e) => Response::json(
                200,
                json!({"ok": true, "signed_upload_url": self.azure.signed_url(&e.blob, "cw", false, self.ttl(ns))}),
            ),
            Err(()) => Response::twirp(
                "already_exists",
                "cache entry with the same key, version, and scope already exists",
            ),
        }
    }

    fn v2_finalize(&self, ns: &str, token: &Token, body: &Value) -> Response {
        let (Some(key), Some(version)) = (body["key"].as_str(), body["version"].as_str()) else {
            return Response::twirp("invalid_argument", "key and version are required");
        };
        let Some(size) = int64(&body["size_bytes"]) else {
            return Response::twirp("invalid_argument", "size_bytes must be an int64 (a number or a string)");
        };
        let Some(scope) = token.writable() else {
            return Response::json(
                200,
                json!({"ok": false, "message": "cache write denied: the token grants no scope with write permission"}),
            );
        };
        let pending = lock(&self.state)
            .entries
            .iter()
            .find(|e| e.ns == ns && e.scope == scope && e.key == key && e.version == version && !e.finalized)
            .cloned();
        let Some(e) = pending else {
            return Response::json(
                200,
                json!({"ok": false, "message": format!("no pending cache entry for key {key}")}),
            );
        };
        match self.azure.blob_size(&e.blob) {
            Ok(Some(n)) if n == size => {
                self.finalize(e.id, size);
                Response::json(200, json!({"ok": true, "entry_id": e.id.to_string()}))
            }
            Ok(Some(n)) => Response::json(
                200,
                json!({"ok": false, "message": format!("size_bytes {size} does not match the uploaded blob ({n} bytes)")}),
            ),
            Ok(None) => Response::json(
                200,
                json!({"ok": false, "message": "nothing was committed at the signed upload URL"}),
            ),
            Err(err) => Response::twirp("internal", err),
        }
    }

    // --- v1 ---------------------------------------------------------------------------------

    fn v1_query(&self, ns: &str, token: &Token, req: &Request) -> Response {
        let (Some(keys), Some(version)) = (req.query("keys"), req.query("version")) else {
            return Response::v1_error(400, "ArgumentNullException", "keys and version are required");
        };
        let keys: Vec<&str> = keys.split(',').collect();
        let scopes = token.readable();
        if scopes.is_empty() {
            return Response::v1_error(403, "AccessDeniedException", "cache read denied: no readable scope");
        }
        let Some(first) = keys.first() else {
            return Response::empty(204);
        };
        match self.find(ns, &scopes, first, &keys[1..], version) {
            Some(e) => {
                let corrupt = self.corrupt_next_url(ns);
                Response::json(
                    200,
                    json!({"scope": e.scope, "cacheKey": e.key, "cacheVersion": e.version, "creationTime": iso8601(e.created_at), "archiveLocation": self.azure.signed_url(&e.blob, "r", corrupt, self.ttl(ns))}),
                )
            }
            None => Response::empty(204),
        }
    }

    fn v1_reserve(&self, ns: &str, token: &Token, req: &Request) -> Response {
        let body = match req.json() {
            Ok(b) => b,
            Err(r) => return r,
        };
        let (Some(key), Some(version)) = (body["key"].as_str(), body["version"].as_str()) else {
            return Response::v1_error(400, "ArgumentNullException", "key and version are required");
        };
        if let Some(wait) = self.rate_limited(ns) {
            return Response::v1_error(
                429,
                "TooManyRequestsException",
                "too many caches reserved; try again later",
            )
            .with_header("Retry-After", wait.to_string());
        }
        let Some(scope) = token.writable() else {
            return Response::v1_error(
                403,
                "AccessDeniedException",
                "cache write denied: the token grants no scope with write permission",
            );
        };
        match self.reserve(ns, scope, key, version) {
            Ok(e) => Response::json(201, json!({"cacheId": e.id})),
            Err(()) => Response::v1_error(
                409,
                "ArtifactCacheItemAlreadyExistsException",
                format!("Cache already exists. Scope: {scope}, Key: {key}, Version: {version}"),
            ),
        }
    }

    fn pending_v1(&self, ns: &str, token: &Token, id: u64) -> std::result::Result<Entry, Response> {
        let scope = token.writable().ok_or_else(|| {
            Response::v1_error(
                403,
                "AccessDeniedException",
                "cache write denied: no scope with write permission",
            )
        })?;
        lock(&self.state)
            .entries
            .iter()
            .find(|e| e.id == id && e.ns == ns && e.scope == scope && !e.finalized)
            .cloned()
            .ok_or_else(|| Response::v1_error(404, "ArtifactCacheNotFoundException", format!("no reserved cache {id}")))
    }

    fn v1_upload(&self, ns: &str, token: &Token, id: u64, req: &Request) -> Response {
        let e = match self.pending_v1(ns, token, id) {
            Ok(e) => e,
            Err(r) => return r,
        };
        let range = req
            .header("content-range")
            .and_then(|r| r.strip_prefix("bytes "))
            .and_then(|r| r.split('/').next())
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        let Some((start, end)) = range.filter(|(a, b)| a <= b) else {
            return Response::v1_error(
                400,
                "ArgumentException",
                "Content-Range: bytes <start>-<end>/* is required",
            );
        };
        if end - start + 1 != req.body.len() as u64 {
            return Response::v1_error(
                400,
                "ArgumentException",
                format!(
                    "Content-Range {start}-{end} does not match the body ({} bytes)",
                    req.body.len()
                ),
            );
        }
        if let Err(err) = self.azure.put_block(&e.blob, &block_id(start), &req.body) {
            return Response::v1_error(500, "StorageException", err);
        }
        let mut st = lock(&self.state);
        if let Some(e) = st.entries.iter_mut().find(|x| x.id == id) {
            e.chunks.retain(|c| c.0 != start);
            e.chunks.push((start, end));
        }
        Response::empty(204)
    }

    fn v1_commit(&self, ns: &str, token: &Token, id: u64, req: &Request) -> Response {
        let e = match self.pending_v1(ns, token, id) {
            Ok(e) => e,
            Err(r) => return r,
        };
        let body = match req.json() {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Some(size) = int64(&body["size"]) else {
            return Response::v1_error(400, "ArgumentException", "size is required");
        };
        let mut chunks = e.chunks.clone();
        chunks.sort();
        let mut next = 0;
        for (a, b) in &chunks {
            if *a != next {
                return Response::v1_error(
                    400,
                    "ArgumentException",
                    format!("uploaded chunks do not cover the cache contiguously (gap or overlap at byte {next})"),
                );
            }
            next = b + 1;
        }
        if next != size {
            return Response::v1_error(
                400,
                "ArgumentException",
                format!("size {size} does not match the uploaded chunks ({next} bytes)"),
            );
        }
        let result = if chunks.is_empty() {
            self.azure.put_blob(&e.blob, b"")
        } else {
            let ids: Vec<String> = chunks.iter().map(|(a, _)| block_id(*a)).collect();
            self.azure.put_block_list(&e.blob, &ids)
        };
        if let Err(err) = result {
            return Response::v1_error(500, "StorageException", err);
        }
        self.finalize(e.id, size);
        Response::empty(204)
    }

    // --- REST ---------------------------------------------------------------------------------

    fn rest(&self, ns: &str, rest: &str, req: &Request) -> Response {
        if req.header("authorization").is_none_or(|a| a.len() <= "Bearer ".len()) {
            return Response::json(401, json!({"message": "Requires authentication"}));
        }
        // <owner>/<repo>/actions/caches[/<id>]
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() < 4 || parts[2] != "actions" || parts[3] != "caches" {
            return Response::json(404, json!({"message": "Not Found"}));
        }
        let key = req.query("key");
        let r#ref = req.query("ref");
        match (req.method.as_str(), parts.get(4)) {
            ("GET", None) => {
                let per_page: usize = req
                    .query("per_page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(30)
                    .clamp(1, 100);
                let page: usize = req.query("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
                let st = lock(&self.state);
                let mut list: Vec<&Entry> = st
                    .entries
                    .iter()
                    .filter(|e| e.ns == ns && e.finalized)
                    .filter(|e| key.is_none_or(|k| e.key.starts_with(k)))
                    .filter(|e| r#ref.is_none_or(|r| e.scope == r))
                    .collect();
                list.sort_by(|a, b| b.last_accessed_at.cmp(&a.last_accessed_at).then(b.seq.cmp(&a.seq)));
                let total = list.len();
                let page_items: Vec<Value> = list
                    .iter()
                    .skip((page - 1) * per_page)
                    .take(per_page)
                    .map(|e| e.rest_json())
                    .collect();
                Response::json(200, json!({"total_count": total, "actions_caches": page_items}))
            }
            ("DELETE", None) => {
                let Some(key) = key else {
                    return Response::json(422, json!({"message": "key is required"}));
                };
                let removed: Vec<Entry> = {
                    let mut st = lock(&self.state);
                    let (gone, kept): (Vec<Entry>, Vec<Entry>) = st
                        .entries
                        .drain(..)
                        .partition(|e| e.ns == ns && e.finalized && e.key == key && r#ref.is_none_or(|r| e.scope == r));
                    st.entries = kept;
                    gone
                };
                if removed.is_empty() {
                    return Response::json(404, json!({"message": "Not Found"}));
                }
                for e in &removed {
                    let _ = self.azure.delete_blob(&e.blob);
                }
                Response::json(
                    200,
                    json!({"total_count": removed.len(), "actions_caches": removed.iter().map(Entry::rest_json).collect::<Vec<_>>()}),
                )
            }
            ("DELETE", Some(id)) => {
                let Ok(id) = id.parse::<u64>() else {
                    return Response::json(404, json!({"message": "Not Found"}));
                };
                let removed = {
                    let mut st = lock(&self.state);
                    let pos = st.entries.iter().position(|e| e.ns == ns && e.id == id && e.finalized);
                    pos.map(|p| st.entries.remove(p))
                };
                match removed {
                    Some(e) => {
                        let _ = self.azure.delete_blob(&e.blob);
                        Response::empty(204)
                    }
                    None => Response::json(404, json!({"message": "Not Found"})),
                }
            }
            _ => Response::json(404, json!({"message": "Not Found"})),
        }
    }

    // --- admin ---------------------------------------------------------------------------------

    fn admin(&self, what: &str, req: &Request) -> Response {
        let body = match req.json() {
            Ok(b) => b,
            Err(r) => return r,
        };
        let ns = body["ns"].as_str().or_else(|| req.query("ns")).map(str::to_owned);
        match (req.method.as_str(), what) {
            ("POST", "fault") => {
                let fault = Fault {
                    ns,
                    path_contains: body["path_contains"].as_str().unwrap_or("").to_owned(),
                    status: body["status"].as_u64().unwrap_or(429) as u16,
                    retry_after: body["retry_after"].as_u64(),
                    remaining: body["count"].as_u64().unwrap_or(1) as u32,
                    bad_sas: body["kind"].as_str() == Some("bad_sas"),
                    echo_auth: body["echo_auth"].as_bool().unwrap_or(false),
                };
                lock(&self.state).faults.push(fault);
                Response::json(200, json!({"ok": true}))
            }
            ("POST", "limit") => {
                let ns = ns.unwrap_or_default();
                let max = body["creates"].as_u64().unwrap_or(0) as usize;
                let window = Duration::from_millis(body["window_ms"].as_u64().unwrap_or(60_000));
                let mut st = lock(&self.state);
                if max == 0 {
                    st.limits.remove(&ns);
                } else {
                    st.limits.insert(
                        ns,
                        Limit {
                            max,
                            window,
                            recent: Vec::new(),
                        },
                    );
                }
                Response::json(200, json!({"ok": true}))
            }
            ("POST", "sas_ttl") => {
                let secs = body["secs"].as_u64().unwrap_or(3600);
                lock(&self.state)
                    .ttls
                    .insert(ns.unwrap_or_default(), Duration::from_secs(secs));
                Response::json(200, json!({"ok": true}))
            }
            ("POST", "load") => self.load(ns.unwrap_or_default(), &body),
            ("GET", "log") => {
                let st = lock(&self.state);
                let lines: Vec<&Value> = st
                    .log
                    .iter()
                    .filter(|l| ns.as_deref().is_none_or(|n| l["ns"] == n))
                    .collect();
                Response::json(200, json!(lines))
            }
            ("GET", "entries") => {
                let st = lock(&self.state);
                let list: Vec<Value> = st
                    .entries
                    .iter()
                    .filter(|e| ns.as_deref().is_none_or(|n| e.ns == n))
                    .map(|e| {
                        json!({"id": e.id, "key": e.key, "version": e.version, "scope": e.scope, "size": e.size, "finalized": e.finalized, "blob": e.blob})
                    })
                    .collect();
                Response::json(200, json!(list))
            }
            _ => Response::json(404, json!({"message": format!("no admin endpoint {what}")})),
        }
    }

    /// Load finalized entries from a directory: files named by %-escaped key, in the order of
    /// its `entries.json` (BuildKit's fixture) or by name; the last loaded is the newest.
    fn load(&self, ns: String, body: &Value) -> Response {
        let (Some(dir), Some(scope)) = (body["dir"].as_str(), body["scope"].as_str()) else {
            return Response::json(400, json!({"message": "dir and scope are required"}));
        };
        let version = body["version"]
            .as_str()
            .unwrap_or("693bb7016429d80366022f036f84856888c9f13e00145f5f6f4dce303a38d6f2");
        let dir = std::path::Path::new(dir);
        let mut files: Vec<String> = match std::fs::read(dir.join("entries.json")) {
            Ok(b) => serde_json::from_slice::<Value>(&b)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|e| e["file"].as_str().map(str::to_owned))
                .collect(),
            Err(_) => Vec::new(),
        };
        if files.is_empty() {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return Response::json(400, json!({"message": format!("cannot read {}", dir.display())}));
            };
            files = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "entries.json")
                .collect();
            files.sort();
        }
        let mut loaded = Vec::new();
        for file in files {
            let key = percent_decode(&file, false);
            let data = match std::fs::read(dir.join(&file)) {
                Ok(d) => d,
                Err(e) => return Response::json(400, json!({"message": format!("{file}: {e}")})),
            };
            let Ok(entry) = self.reserve(&ns, scope, &key, version) else {
                return Response::json(409, json!({"message": format!("{key} already exists")}));
            };
            if let Err(e) = self.azure.put_blob(&entry.blob, &data) {
                return Response::json(500, json!({"message": e}));
            }
            self.finalize(entry.id, data.len() as u64);
            loaded.push(key);
        }
        Response::json(200, json!({"loaded": loaded}))
    }
}

/// Azure block IDs must have one length per blob: the offset, zero-padded, base64.
fn block_id(offset: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{offset:020}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn iso8601_formats_utc() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(1_606_835_429)),
            "2020-12-01T15:10:29Z"
        );
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn int64_accepts_number_and_string() {
        assert_eq!(int64(&json!(731)), Some(731));
        assert_eq!(int64(&json!("731")), Some(731));
        assert_eq!(int64(&json!("x")), None);
    }

    #[test]
    fn percent_coding_round_trips_keys() {
        let key = "index-main-1-f921bd05#1";
        assert_eq!(percent_encode(key), "index-main-1-f921bd05%231");
        assert_eq!(
            percent_decode("buildkit-blob-1-sha256%3Aab", false),
            "buildkit-blob-1-sha256:ab"
        );
        assert_eq!(percent_decode("a%2Cb+c", true), "a,b c");
    }
}
