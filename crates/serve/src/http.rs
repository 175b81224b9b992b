//! Requests in, responses out: authentication, the route table of the distribution API subset
//! real clients use (`../shared/guide/serve.md`), and the response helpers.
//!
//! Repository names hold `/`, so a path is matched from its end, as docker-registry's router
//! does: `/v2/<name>/blobs/uploads/[<id>]`, `/v2/<name>/blobs/<digest>`,
//! `/v2/<name>/manifests/<reference>`, `/v2/<name>/tags/list`.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};

use crate::error::OciError;
use crate::state::State;
use crate::{blobs, manifests, uploads};

/// A response body: bytes in memory or a blob streamed from a store.
pub type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// What a handler returns.
pub type Reply = Result<Response<Body>, OciError>;

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A body held in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A body streamed from a store.
pub fn stream(s: bkcache_core::BlobStream) -> Body {
    let frames = s
        .map_ok(Frame::data)
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
    StreamBody::new(frames).boxed_unsync()
}

/// A response with a status, headers and body.
pub fn response(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

/// The OCI error JSON for an error.
pub fn error_response(e: &OciError) -> Response<Body> {
    let body = e.body();
    response(
        e.status,
        &[
            ("content-type", "application/json".into()),
            ("content-length", body.len().to_string()),
        ],
        full(body),
    )
}

/// A header's value as text.
pub fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Every value of a header, joined with `,` (Accept may come as several).
pub fn header_all(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// A query parameter, percent-decoded.
pub fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    q.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let pair = (b[i] == b'%' && i + 2 < b.len())
            .then(|| hex(b[i + 1]).zip(hex(b[i + 2])))
            .flatten();
        match (b[i], pair) {
            (_, Some((hi, lo))) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (c, None) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The declared body length, if any.
pub fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The request's `Content-Type`.
pub fn content_type(req: &Request<Incoming>) -> Option<&str> {
    req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// A route of the API.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/`.
    Ping,
    /// `/v2/<name>/tags/list`.
    Tags(&'a str),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(&'a str, &'a str),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(&'a str, &'a str),
    /// `/v2/<name>/blobs/uploads/`.
    Uploads(&'a str),
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload(&'a str, &'a str),
}

/// Match a path.
pub fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Ping);
    }
    let rest = rest.strip_prefix('/')?;
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    let tail = |marker: &str| -> Option<(&str, &str)> {
        let at = rest.rfind(marker)?;
        let (name, last) = (&rest[..at], &rest[at + marker.len()..]);
        (!last.contains('/')).then_some((name, last))
    };
    if let Some((name, id)) = tail("/blobs/uploads/") {
        return Some(if id.is_empty() {
            Route::Uploads(name)
        } else {
            Route::Upload(name, id)
        });
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some(Route::Uploads(name));
    }
    if let Some((name, d)) = tail("/blobs/") {
        return Some(Route::Blob(name, d));
    }
    if let Some((name, r)) = tail("/manifests/") {
        return Some(Route::Manifest(name, r));
    }
    None
}

/// Serve one request.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    tracing::debug!(
        method = %req.method(),
        path = req.uri().path(),
        user_agent = header(&req, "user-agent").unwrap_or(""),
        accept = header_all(&req, "accept"),
        "request"
    );
    if let Some(auth) = &state.options.auth {
        if !auth.allows(header(&req, "authorization")) {
            let e = OciError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required: log in with the user of --htpasswd, or a token of --token-file as the password",
            );
            let mut r = error_response(&e);
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"bkcache serve\""),
            );
            return with_api_version(r);
        }
    }
    let reply = dispatch(&state, req).await;
    with_api_version(reply.unwrap_or_else(|e| error_response(&e)))
}

fn with_api_version(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

async fn dispatch(state: &Arc<State>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let not_found = || {
        OciError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no such endpoint: {method} {path}"),
        )
    };
    let Some(r) = route(&path) else { return Err(not_found()) };
    let head = method == Method::HEAD;
    match (r, &method) {
        (Route::Ping, &Method::GET | &Method::HEAD) => Ok(response(
            StatusCode::OK,
            &[
                ("content-type", "application/json".into()),
                ("content-length", "2".into()),
            ],
            if head { empty() } else { full("{}") },
        )),
        (Route::Tags(name), &Method::GET) => manifests::tags(state, name).await,
        (Route::Manifest(name, reference), &Method::GET | &Method::HEAD) => {
            let (name, reference) = (name.to_owned(), reference.to_owned());
            manifests::get(state, &name, &reference, head, &req).await
        }
        (Route::Manifest(name, reference), &Method::PUT) => {
            let (name, reference) = (name.to_owned(), reference.to_owned());
            manifests::put(state, &name, &reference, req).await
        }
        (Route::Blob(name, digest), &Method::GET | &Method::HEAD) => {
            let range = header(&req, "range").map(str::to_owned);
            blobs::get(state, name, digest, head, range.as_deref()).await
        }
        (Route::Uploads(name), &Method::POST) => {
            let name = name.to_owned();
            uploads::start(state, &name, req).await
        }
        (Route::Upload(name, id), &Method::PATCH) => {
            let (name, id) = (name.to_owned(), id.to_owned());
            uploads::patch(state, &name, &id, req).await
        }
        (Route::Upload(name, id), &Method::PUT) => {
            let (name, id) = (name.to_owned(), id.to_owned());
            uploads::finish(state, &name, &id, req).await
        }
        (Route::Upload(name, id), &Method::GET) => uploads::status(state, name, id),
        (Route::Upload(name, id), &Method::DELETE) => uploads::cancel(state, name, id),
        (Route::Manifest(..) | Route::Blob(..), &Method::DELETE) => Err(OciError::unsupported(
            "bkcache serve does not delete through the API: use `bkcache prune` or --keep-storage/--keep-duration",
        )),
        _ => Err(OciError::unsupported(format!("{method} is not supported on {path}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_from_the_end_so_names_may_hold_slashes() {
        assert_eq!(route("/v2/"), Some(Route::Ping));
        assert_eq!(route("/v2"), Some(Route::Ping));
        assert_eq!(route("/v2/a/b/tags/list"), Some(Route::Tags("a/b")));
        assert_eq!(
            route("/v2/a/blobs/b/blobs/sha256:1"),
            Some(Route::Blob("a/blobs/b", "sha256:1"))
        );
        assert_eq!(route("/v2/a/b/blobs/uploads/"), Some(Route::Uploads("a/b")));
        assert_eq!(route("/v2/a/blobs/uploads/xyz"), Some(Route::Upload("a", "xyz")));
        assert_eq!(route("/v2/a/manifests/latest"), Some(Route::Manifest("a", "latest")));
        assert_eq!(route("/v2/a/manifests/x/y"), None);
        assert_eq!(route("/v1/a"), None);
        assert_eq!(percent_decode("sha256%3Aab+c%zz"), "sha256:ab c%zz");
    }
}
