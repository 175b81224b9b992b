//! moto (S3) over raw HTTP for the tests: moto checks no signatures, so what a test asserts is
//! what is stored, not what bkcache says it stored.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// moto accepts any signature, but refuses anonymous object requests.
pub const AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

pub fn host_of(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://").trim_end_matches('/')
}

/// Percent-encode an object key for a request path (keep `/`).
pub fn enc(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One HTTP/1.1 request with `Connection: close`.
pub fn http(endpoint: &str, method: &str, target: &str, body: &[u8]) -> Answer {
    http_as(endpoint, method, target, body, AUTH, "application/octet-stream")
}

/// The same with another `Authorization` and `Content-Type` (IAM calls).
pub fn http_as(endpoint: &str, method: &str, target: &str, body: &[u8], auth: &str, content_type: &str) -> Answer {
    let host = host_of(endpoint);
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nContent-Type: {content_type}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 4 + n..];
        }
        body = out;
    }
    Answer { status, headers, body }
}

/// A fresh bucket (moto outlives a test run).
pub fn new_bucket(endpoint: &str, tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("bk-{tag}-{}-{nanos}", std::process::id());
    let a = http(endpoint, "PUT", &format!("/{name}"), b"");
    assert_eq!(
        a.status,
        200,
        "create bucket {name}: {}",
        String::from_utf8_lossy(&a.body)
    );
    name
}

/// A `type=s3` spec for moto (path style is implied by the IP endpoint; said anyway, as
/// BuildKit users do).
pub fn s3(endpoint: &str, bucket: &str, extra: &str) -> String {
    let base = format!(
        "type=s3,bucket={bucket},region=us-east-1,endpoint_url={endpoint},use_path_style=true,access_key_id=test,secret_access_key=test"
    );
    if extra.is_empty() {
        base
    } else {
        format!("{base},{extra}")
    }
}

#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: String,
}

pub fn xml_all(body: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].replace("&quot;", "\"").replace("&#34;", "\""));
        rest = &after[j + close.len()..];
    }
    out
}

/// Every object in the bucket (ListObjectsV2).
pub fn list(endpoint: &str, bucket: &str) -> Vec<Object> {
    let a = http(endpoint, "GET", &format!("/{bucket}?list-type=2&max-keys=1000"), b"");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let body = String::from_utf8(a.body).unwrap();
    xml_all(&body, "Contents")
        .iter()
        .map(|c| Object {
            key: xml_all(c, "Key")[0].clone(),
            size: xml_all(c, "Size")[0].parse().unwrap(),
            etag: xml_all(c, "ETag")[0].clone(),
            last_modified: xml_all(c, "LastModified")[0].clone(),
        })
        .collect()
}

pub fn keys(endpoint: &str, bucket: &str) -> BTreeSet<String> {
    list(endpoint, bucket).into_iter().map(|o| o.key).collect()
}

pub fn get(endpoint: &str, bucket: &str, key: &str) -> Vec<u8> {
    let a = http(endpoint, "GET", &format!("/{bucket}/{}", enc(key)), b"");
    assert_eq!(a.status, 200, "GET {key}");
    a.body
}
