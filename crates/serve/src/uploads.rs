//! Blob uploads: POST starts a session (or, with `digest=`, is the whole upload; with
//! `mount=`, is answered 201 only when the blob really is in this repository's stores), PATCH
//! appends a chunk, PUT with `digest=` ends it.
//!
//! A monolithic PUT (BuildKit's way: one body, `Content-Length` known) into one store streams
//! straight into it through core's `VerifiedStream`: no copy in memory or on disk, and the store
//! makes the blob visible only after the digest and size matched. Chunked uploads, uploads of
//! unknown length and fan-out to several stores spool to one scratch file first (in
//! `--scratch-dir`), then stream from it into each store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bkcache_core::{BlobStream, Descriptor, Digest, Error as CoreError, MediaType, VerifiedStream};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyStream;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::blobs::parse_digest;
use crate::error::OciError;
use crate::http::{self, Reply};
use crate::log::bytes as human_bytes;
use crate::names::check_repo;
use crate::state::{Opened, State};
use crate::Limits;

/// One upload in progress.
struct Session {
    repo: String,
    /// The chunks so far, when there were any.
    spool: Option<Spool>,
    received: u64,
    touched: Instant,
}

/// A scratch file and the bytes it holds against the server's scratch budget (given back when
/// the file goes).
struct Spool {
    file: tempfile::NamedTempFile,
    budget: Arc<AtomicU64>,
    charged: u64,
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.charged, Ordering::SeqCst);
    }
}

/// The upload sessions, bounded in number and idle time, and the slots that bound how many
/// uploads stream at once.
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
    slots: Semaphore,
    max_sessions: usize,
    /// Bytes in scratch files now, and the most there may be.
    spooled: Arc<AtomicU64>,
    max_scratch: u64,
}

impl Sessions {
    /// Sessions within these limits.
    pub fn new(limits: &Limits) -> Self {
        Sessions {
            map: Mutex::default(),
            slots: Semaphore::new(limits.max_uploads.max(1)),
            max_sessions: limits.max_uploads.max(1) * 8,
            spooled: Arc::default(),
            max_scratch: limits.max_scratch,
        }
    }

    fn get(&self, repo: &str, id: &str) -> Result<Arc<tokio::sync::Mutex<Session>>, OciError> {
        let s = self.map.lock().ok().and_then(|m| m.get(id).cloned());
        match s {
            Some(s) if s.try_lock().map_or(true, |g| g.repo == repo) => Ok(s),
            _ => Err(OciError::upload_unknown(id)),
        }
    }

    fn remove(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
    }

    /// Drop sessions idle for longer than `idle` (their scratch files go with them).
    pub fn expire(&self, idle: Duration) -> usize {
        let Ok(mut m) = self.map.lock() else { return 0 };
        let before = m.len();
        m.retain(|_, s| s.try_lock().map_or(true, |g| g.touched.elapsed() < idle));
        before - m.len()
    }
}

fn new_id() -> String {
    let mut raw = [0u8; 16];
    if getrandom::getrandom(&mut raw).is_err() {
        // No OS randomness: still unique within this process.
        let n = Instant::now().elapsed().as_nanos() ^ (std::process::id() as u128);
        raw = n.to_le_bytes();
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn session_response(status: StatusCode, repo: &str, id: &str, received: u64) -> hyper::Response<http::Body> {
    http::response(
        status,
        &[
            ("location", format!("/v2/{repo}/blobs/uploads/{id}")),
            ("range", format!("0-{}", received.saturating_sub(1))),
            ("docker-upload-uuid", id.to_owned()),
            ("content-length", "0".into()),
        ],
        http::empty(),
    )
}

fn created(repo: &str, digest: &Digest) -> hyper::Response<http::Body> {
    http::response(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{repo}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".into()),
        ],
        http::empty(),
    )
}

/// `POST /v2/<name>/blobs/uploads/`.
pub async fn start(state: &Arc<State>, repo: &str, req: Request<Incoming>) -> Reply {
    check_repo(repo)?;
    if let Some(d) = http::query(&req, "digest") {
        let digest = parse_digest(&d)?;
        return put_whole(state, repo, &digest, None, req).await;
    }
    if let Some(m) = http::query(&req, "mount") {
        let digest = parse_digest(&m)?;
        // Answered honestly: 201 only when the blob is in every store of this repository;
        // otherwise the client uploads it (202 and a session, as the spec allows).
        if missing_stores(state, repo, &digest, None, false).await?.is_empty() {
            return Ok(created(repo, &digest));
        }
    }
    let id = new_id();
    let session = Session {
        repo: repo.to_owned(),
        spool: None,
        received: 0,
        touched: Instant::now(),
    };
    {
        let mut m = state
            .uploads
            .map
            .lock()
            .map_err(|_| OciError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "upload table poisoned"))?;
        if m.len() >= state.uploads.max_sessions {
            return Err(too_many("upload sessions"));
        }
        m.insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
    }
    Ok(session_response(StatusCode::ACCEPTED, repo, &id, 0))
}

fn too_many(what: &str) -> OciError {
    OciError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TOOMANYREQUESTS",
        format!("too many {what} at once; try again shortly"),
    )
}

/// `PATCH` a chunk onto a session.
pub async fn patch(state: &Arc<State>, repo: &str, id: &str, req: Request<Incoming>) -> Reply {
    check_repo(repo)?;
    let session = state.uploads.get(repo, id)?;
    let mut s = session.lock().await;
    let received = spool(state, &mut s, req.into_body())
        .await
        .inspect_err(|_| state.uploads.remove(id))?;
    s.touched = Instant::now();
    Ok(session_response(StatusCode::ACCEPTED, repo, id, received))
}

/// `GET` a session's progress.
pub fn status(state: &Arc<State>, repo: &str, id: &str) -> Reply {
    let session = state.uploads.get(repo, id)?;
    let received = session.try_lock().map(|s| s.received).unwrap_or(0);
    Ok(session_response(StatusCode::NO_CONTENT, repo, id, received))
}

/// `DELETE` a session.
pub fn cancel(state: &Arc<State>, repo: &str, id: &str) -> Reply {
    state.uploads.get(repo, id)?;
    state.uploads.remove(id);
    Ok(http::response(StatusCode::NO_CONTENT, &[], http::empty()))
}

/// `PUT <location>?digest=`: the last chunk (or the whole blob), then into every store.
pub async fn finish(state: &Arc<State>, repo: &str, id: &str, req: Request<Incoming>) -> Reply {
    check_repo(repo)?;
    let digest = match http::query(&req, "digest") {
        Some(d) => parse_digest(&d)?,
        None => {
            return Err(OciError::digest_invalid(
                "the closing PUT of an upload needs ?digest=sha256:…",
            ))
        }
    };
    let session = state.uploads.get(repo, id)?;
    let result = put_whole(state, repo, &digest, Some(session), req).await;
    state.uploads.remove(id);
    result
}

/// Append a request body to a session's scratch file; the bytes received so far.
async fn spool(state: &State, s: &mut Session, body: Incoming) -> Result<u64, OciError> {
    let limits = &state.options.limits;
    if s.spool.is_none() {
        let file = tempfile::Builder::new()
            .prefix("bkcache-serve-upload-")
            .tempfile_in(&state.options.scratch_dir)
            .map_err(|e| scratch_error(state, e))?;
        s.spool = Some(Spool {
            file,
            budget: state.uploads.spooled.clone(),
            charged: 0,
        });
    }
    let received = s.received;
    let Some(spool) = s.spool.as_mut() else {
        return Ok(received);
    };
    let mut out = tokio::fs::File::from_std(spool.file.reopen().map_err(|e| scratch_error(state, e))?);
    out.seek(std::io::SeekFrom::Start(received))
        .await
        .map_err(|e| scratch_error(state, e))?;
    let mut body = body_stream(body, limits.max_blob.saturating_sub(received));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| body_error(&e))?;
        let n = chunk.len() as u64;
        let max = state.uploads.max_scratch;
        if spool.budget.fetch_add(n, Ordering::SeqCst) + n > max {
            spool.budget.fetch_sub(n, Ordering::SeqCst);
            return Err(OciError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TOOMANYREQUESTS",
                format!("the scratch space for chunked uploads is full ({max} bytes, --scratch-limit); try again shortly or upload in one PUT"),
            ));
        }
        spool.charged += n;
        out.write_all(&chunk).await.map_err(|e| scratch_error(state, e))?;
        s.received += n;
    }
    out.flush().await.map_err(|e| scratch_error(state, e))?;
    Ok(s.received)
}

fn scratch_error(state: &State, e: std::io::Error) -> OciError {
    OciError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        format!("scratch file in {}: {e}", state.options.scratch_dir.display()),
    )
}

fn body_error(e: &CoreError) -> OciError {
    match e {
        CoreError::TooLarge { .. } => OciError::too_large(e.to_string()),
        _ => OciError::new(
            StatusCode::BAD_REQUEST,
            "BLOB_UPLOAD_INVALID",
            format!("the upload body broke off: {e}"),
        ),
    }
}

/// A request body as a blob stream that fails beyond `limit` bytes.
fn body_stream(body: Incoming, limit: u64) -> BlobStream {
    let mut seen = 0u64;
    Box::pin(
        BodyStream::new(body)
            .map_err(|e| CoreError::Io {
                location: "the client's request".into(),
                operation: "receive the upload body".into(),
                source: std::io::Error::other(e.to_string()),
            })
            .try_filter_map(|frame| futures::future::ready(Ok(frame.into_data().ok())))
            .and_then(move |chunk: Bytes| {
                seen += chunk.len() as u64;
                futures::future::ready(if seen > limit {
                    Err(CoreError::TooLarge {
                        what: "upload".into(),
                        size: seen,
                        limit,
                    })
                } else {
                    Ok(chunk)
                })
            }),
    )
}

/// The stores of `repo` that lack the blob (`size`, when known, must match too).
/// `trust_absent`: an absence serve saw within the last minute (the client's own HEAD right
/// before an upload) counts without asking the store again.
async fn missing_stores(
    state: &State,
    repo: &str,
    digest: &Digest,
    size: Option<u64>,
    trust_absent: bool,
) -> Result<Vec<Arc<Opened>>, OciError> {
    let mut out = Vec::new();
    for o in state.blob_stores(repo)? {
        let have = state.blob_size(&o, repo, digest, trust_absent).await?;
        if have.is_none() || (size.is_some() && have != size) {
            out.push(o);
        }
    }
    Ok(out)
}

/// Receive the rest of the blob and put it into every store that lacks it.
async fn put_whole(
    state: &Arc<State>,
    repo: &str,
    digest: &Digest,
    session: Option<Arc<tokio::sync::Mutex<Session>>>,
    req: Request<Incoming>,
) -> Reply {
    let limits = &state.options.limits;
    let length = http::content_length(&req);
    if length.is_some_and(|n| n > limits.max_blob) {
        return Err(OciError::too_large(format!(
            "a blob of {} bytes is over this server's limit of {} (--max-blob-size)",
            length.unwrap_or_default(),
            limits.max_blob
        )));
    }
    let _slot = state.uploads.slots.try_acquire().map_err(|_| too_many("uploads"))?;
    let started = Instant::now();
    let mut guard = match &session {
        Some(s) => Some(s.lock().await),
        None => None,
    };
    let spooled = guard.as_ref().is_some_and(|s| s.spool.is_some());
    let stores = state.blob_stores(repo)?;
    let direct = !spooled && stores.len() == 1 && length.is_some();
    let (size, stored) = if direct {
        let size = length.unwrap_or_default();
        let desc = Descriptor::new(MediaType::parse("application/octet-stream"), digest.clone(), size);
        let body = body_stream(req.into_body(), size);
        let missing = missing_stores(state, repo, digest, Some(size), true).await?;
        match missing.first() {
            // No size is noted here: a store may finish a put in the background (local does);
            // its own blob_size waits for that, a read right away may not.
            Some(o) => {
                put_one(o, &desc, body).await?;
                state.forget_size(o, repo, digest);
            }
            None => verify_only(&desc, body).await?,
        }
        (size, missing.len())
    } else {
        let mut fresh = Session {
            repo: repo.to_owned(),
            spool: None,
            received: 0,
            touched: Instant::now(),
        };
        let s = guard.as_deref_mut().unwrap_or(&mut fresh);
        let size = spool(state, s, req.into_body()).await?;
        let desc = Descriptor::new(MediaType::parse("application/octet-stream"), digest.clone(), size);
        let missing = missing_stores(state, repo, digest, Some(size), true).await?;
        let path = s.spool.as_ref().map(|f| f.file.path().to_path_buf());
        let path =
            path.ok_or_else(|| OciError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "no scratch file"))?;
        if missing.is_empty() {
            verify_only(&desc, file_stream(&path).await?).await?;
        }
        for o in &missing {
            put_one(o, &desc, file_stream(&path).await?).await?;
            state.forget_size(o, repo, digest);
        }
        (size, missing.len())
    };
    drop(guard);
    state.log.event(
        "upload",
        serde_json::json!({"repository": repo, "digest": digest.as_str(), "size": size, "stores_written": stored, "seconds": started.elapsed().as_secs_f64()}),
        &format!(
            "upload {repo}@{} {} in {:.2} s -> {stored} store(s){}",
            digest.short(),
            human_bytes(size),
            started.elapsed().as_secs_f64(),
            if stored == 0 { " (already there)" } else { "" }
        ),
    );
    Ok(created(repo, digest))
}

async fn file_stream(path: &std::path::Path) -> Result<BlobStream, OciError> {
    let file = tokio::fs::File::open(path).await.map_err(|e| {
        OciError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("scratch file: {e}"),
        )
    })?;
    let location = path.display().to_string();
    Ok(Box::pin(file_chunks(file, 256 << 10).map_err(move |e| CoreError::Io {
        location: location.clone(),
        operation: "read the spooled upload".into(),
        source: e,
    })))
}

/// Stream into one store; a digest or size mismatch is `DIGEST_INVALID`, whatever the store
/// wraps it in.
async fn put_one(o: &Opened, desc: &Descriptor, body: BlobStream) -> Result<(), OciError> {
    let mut verified = VerifiedStream::new(desc, body);
    let mismatch = verified.mismatch_flag();
    let result = o.store.put_blob(desc, verified).await;
    match result {
        Ok(()) => Ok(()),
        Err(e) if mismatch.load(std::sync::atomic::Ordering::SeqCst) => Err(OciError::digest_invalid(format!(
            "the upload does not match {} ({} bytes); nothing was stored: {}",
            desc.digest,
            desc.size,
            e.chain()
        ))),
        Err(e @ CoreError::TooLarge { .. }) => Err(body_error(&e)),
        Err(e) => Err(OciError::from(e)),
    }
}

/// Check a body against its digest when every store already has the blob.
async fn verify_only(desc: &Descriptor, body: BlobStream) -> Result<(), OciError> {
    VerifiedStream::new(desc, body)
        .drain()
        .await
        .map(|_| ())
        .map_err(|e| match e {
            CoreError::DigestMismatch { .. } => OciError::digest_invalid(e.to_string()),
            e => body_error(&e),
        })
}

/// A file read in fixed chunks (what tokio-util's `ReaderStream` does; not worth the crate).
fn file_chunks(file: tokio::fs::File, chunk: usize) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    use tokio::io::AsyncReadExt;
    futures::stream::try_unfold(file, move |mut f| async move {
        let mut buf = vec![0u8; chunk];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), f)))
    })
}
