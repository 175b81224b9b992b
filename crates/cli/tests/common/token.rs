//! A minimal bearer-token server for the registry's `auth.token` mode: checks Basic
//! credentials, answers `{"token": JWT}` signed (ES256, x5c) with the key the registry trusts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

/// Requests the server saw: (authorized, scopes).
pub type Log = Arc<Mutex<Vec<(bool, Vec<String>)>>>;

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serve tokens on 127.0.0.1:`port` in a background thread (lives until the test process ends).
pub fn start(port: u16, key_p8: &Path, cert_der: &Path, user: &str, pass: &str) -> Log {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind token port");
    let key = std::fs::read(key_p8).expect("token key");
    let cert = std::fs::read(cert_der).expect("token cert");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        let rng = ring::rand::SystemRandom::new();
        let pair =
            ring::signature::EcdsaKeyPair::from_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &key, &rng)
                .expect("PKCS#8 P-256 key");
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        auth = v.trim().to_owned();
                    }
                }
            }
            let target = request_line.split_whitespace().nth(1).unwrap_or("");
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
            let scopes: Vec<String> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| *k == "scope")
                .map(|(_, v)| percent_decode(v))
                .collect();
            let ok = auth == expected;
            seen.lock().unwrap().push((ok, scopes.clone()));
            if !ok {
                let _ =
                    stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let access: Vec<serde_json::Value> = scopes
                .iter()
                .filter_map(|s| {
                    let (kind, rest) = s.split_once(':')?;
                    let (name, actions) = rest.rsplit_once(':')?;
                    Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                })
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [base64::engine::general_purpose::STANDARD.encode(&cert)]});
            let claims = serde_json::json!({
                "iss": "bkcache-test-issuer", "sub": "bkuser", "aud": "bkcache-test-registry",
                "exp": now + 600, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", seen.lock().unwrap().len()),
                "access": access,
            });
            let signing_input = format!(
                "{}.{}",
                b64url(header.to_string().as_bytes()),
                b64url(claims.to_string().as_bytes())
            );
            let sig = pair.sign(&rng, signing_input.as_bytes()).expect("sign");
            let token = format!("{signing_input}.{}", b64url(sig.as_ref()));
            let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    log
}
