//! Blob HEAD and GET (with `Range`): from the documents serve encoded, else from the first
//! store that has the blob. A whole-blob GET is verified while it streams, so a damaged store
//! ends the response early instead of serving wrong bytes to the end.

use std::sync::Arc;

use bkcache_core::{BlobStream, Descriptor, Digest, MediaType, VerifiedStream};
use bytes::Bytes;
use futures::StreamExt;
use hyper::StatusCode;

use crate::error::OciError;
use crate::http::{self, Reply};
use crate::names::check_repo;
use crate::state::State;

/// Parse a digest from a path or query, as the spec's `DIGEST_INVALID`.
pub fn parse_digest(s: &str) -> Result<Digest, OciError> {
    Digest::parse(s).map_err(|e| OciError::digest_invalid(e.to_string()))
}

/// HEAD or GET a blob.
pub async fn get(state: &Arc<State>, repo: &str, digest: &str, head: bool, range: Option<&str>) -> Reply {
    check_repo(repo)?;
    let digest = parse_digest(digest)?;
    if let Some(doc) = state.doc(repo, &digest) {
        let size = doc.bytes.len() as u64;
        let span = parse_range(range, size)?;
        let body = match span {
            Some((a, b)) => doc.bytes.slice(a as usize..=b as usize),
            None => doc.bytes.clone(),
        };
        return Ok(blob_response(&digest, size, span, head, http::full(body)));
    }
    let mut failure = None;
    for opened in state.blob_stores(repo)? {
        let size = match state.blob_size(&opened, repo, &digest, false).await {
            Ok(Some(size)) => size,
            Ok(None) => continue,
            Err(e) => {
                failure = Some(state.store_failed(&opened, e));
                continue;
            }
        };
        let span = parse_range(range, size)?;
        if head {
            return Ok(blob_response(&digest, size, span, true, http::empty()));
        }
        let desc = Descriptor::new(MediaType::parse("application/octet-stream"), digest.clone(), size);
        let (start, len) = span.map_or((0, size), |(a, b)| (a, b - a + 1));
        let stream = opened.store.open_blob(&desc, start).await?;
        let stream: BlobStream = if span.is_none() {
            Box::pin(VerifiedStream::new(&desc, stream))
        } else {
            take(stream, len)
        };
        return Ok(blob_response(&digest, size, span, false, http::stream(stream)));
    }
    Err(failure.unwrap_or_else(|| {
        OciError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("blob {digest} is not in any store of {repo}"),
        )
    }))
}

fn blob_response(
    digest: &Digest,
    size: u64,
    span: Option<(u64, u64)>,
    head: bool,
    body: http::Body,
) -> hyper::Response<http::Body> {
    let mut headers = vec![
        ("docker-content-digest", digest.to_string()),
        ("content-type", "application/octet-stream".to_owned()),
        ("accept-ranges", "bytes".to_owned()),
        ("etag", format!("\"{digest}\"")),
    ];
    let status = match span {
        Some((a, b)) => {
            headers.push(("content-range", format!("bytes {a}-{b}/{size}")));
            headers.push(("content-length", (b - a + 1).to_string()));
            StatusCode::PARTIAL_CONTENT
        }
        None => {
            headers.push(("content-length", size.to_string()));
            StatusCode::OK
        }
    };
    let body = if head { http::empty() } else { body };
    http::response(status, &headers, body)
}

/// A `Range: bytes=a-b` / `bytes=a-` / `bytes=-n` header as an inclusive span, `None` for the
/// whole blob; what cannot be satisfied is 416 with the blob's size.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, OciError> {
    let Some(h) = header else { return Ok(None) };
    let bad = || {
        OciError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "SIZE_INVALID",
            format!("range {h:?} cannot be served: the blob has {size} bytes; allowed: bytes=START-[END] or bytes=-SUFFIX within it"),
        )
    };
    let spec = h.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Err(bad());
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => {
            let n = num(b)?;
            if n == 0 || size == 0 {
                return Err(bad());
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, true) => (num(a)?, size.saturating_sub(1)),
        (false, false) => (num(a)?, num(b)?.min(size.saturating_sub(1))),
        (true, true) => return Err(bad()),
    };
    if start >= size || start > end {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

/// The first `len` bytes of a stream.
fn take(stream: BlobStream, len: u64) -> BlobStream {
    Box::pin(
        stream
            .scan(len, |left, chunk| {
                let out = match chunk {
                    Ok(_) if *left == 0 => None,
                    Ok(c) => {
                        let n = (c.len() as u64).min(*left);
                        *left -= n;
                        Some(Ok(c.slice(..n as usize)))
                    }
                    Err(e) => Some(Err(e)),
                };
                futures::future::ready(out)
            })
            .filter(|c: &bkcache_core::Result<Bytes>| {
                futures::future::ready(c.as_ref().map_or(true, |b| !b.is_empty()))
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_inside_the_blob_are_served_and_others_are_416() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some("bytes=4-"), 10), Ok(Some((4, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=5-99"), 10), Ok(Some((5, 9))));
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=-",
            "bytes=x-1",
            "bytes=-0",
        ] {
            let e = parse_range(Some(bad), 10).expect_err(bad);
            assert_eq!(e.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        }
    }
}
