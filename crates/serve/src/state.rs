//! What one running serve holds: the store templates and the stores opened from them, the
//! documents it encoded (manifests and configs a client reads back by digest), the layers
//! `--scan` found clean, and one commit lock per repository and tag.
//!
//! Nothing here is needed across a restart: a client starts each import at a tag, and each
//! export's blobs are in the stores before its manifest.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bkcache_core::{Backends, CacheStore, Digest, Env, ExportOptions};
use bytes::Bytes;

use crate::error::OciError;
use crate::log::Log;
use crate::names::StoreTemplate;
use crate::uploads::Sessions;
use crate::ServeOptions;

/// The tag a repository's blob requests open its stores with: blob requests carry no tag, and
/// a template may use `{tag}` only where it names the cache, never where blobs live.
pub const BLOB_TAG: &str = "latest";

/// At most this many stores stay open (then the oldest half is dropped).
const MAX_OPEN: usize = 512;

/// At most this many bytes of encoded documents are kept for reads by digest.
const MAX_DOC_BYTES: usize = 64 << 20;

/// How long a blob's size (or absence) seen in a store is trusted: a client HEADs a blob right
/// before it uploads it, and an import GETs the blobs the manifest read just listed, so one
/// store request serves both. A blob evicted within it costs a 404 on GET or an upload again;
/// a manifest PUT still checks every blob.
const SIZE_TTL: Duration = Duration::from_secs(60);

/// At most this many sizes are kept (then all are dropped).
const MAX_SIZES: usize = 200_000;

type SizeKey = (usize, String, Digest);

/// A store opened for one repository and tag, with the export options of its template.
#[derive(Debug)]
pub struct Opened {
    /// The store.
    pub store: Box<dyn CacheStore>,
    /// The template's export options (`mode`, `image-manifest`, `oci-mediatypes`).
    pub options: ExportOptions,
    /// Which `--store` (0-based) it came from.
    pub index: usize,
}

/// A document serve encoded or received: a manifest or a cache config.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Its bytes.
    pub bytes: Bytes,
    /// Its media type.
    pub media_type: String,
}

#[derive(Default)]
struct Docs {
    map: HashMap<(String, Digest), Doc>,
    order: VecDeque<(String, Digest)>,
    bytes: usize,
}

/// Orders the commits to one repository and tag.
pub type CommitLock = Arc<tokio::sync::Mutex<()>>;

/// The server's state, shared by every connection.
pub struct State {
    /// The `--store` templates, in order (reads try them in this order).
    pub templates: Vec<StoreTemplate>,
    /// The options serve was started with.
    pub options: ServeOptions,
    /// Upload sessions.
    pub uploads: Sessions,
    /// The log.
    pub log: Log,
    backends: Arc<Backends>,
    env: Env,
    opened: Mutex<HashMap<(usize, String, String), Arc<Opened>>>,
    docs: Mutex<Docs>,
    clean: Mutex<HashSet<Digest>>,
    sizes: Mutex<HashMap<SizeKey, (Option<u64>, Instant)>>,
    commit_locks: Mutex<HashMap<(String, String), CommitLock>>,
}

impl State {
    /// State over checked templates.
    pub fn new(templates: Vec<StoreTemplate>, options: ServeOptions, backends: Arc<Backends>, env: Env) -> Self {
        State {
            uploads: Sessions::new(&options.limits),
            log: Log::new(options.json_log),
            templates,
            options,
            backends,
            env,
            opened: Mutex::default(),
            docs: Mutex::default(),
            clean: Mutex::default(),
            sizes: Mutex::default(),
            commit_locks: Mutex::default(),
        }
    }

    /// The store of template `index` for a repository and tag, opened once and kept.
    pub fn open(&self, index: usize, repo: &str, tag: &str) -> Result<Arc<Opened>, OciError> {
        let template = &self.templates[index];
        let key = if template.one_cache {
            (index, String::new(), String::new())
        } else {
            (index, repo.to_owned(), tag.to_owned())
        };
        if let Some(o) = self.opened.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(o);
        }
        let spec = template.fill(repo, tag);
        let target = self.backends.open_target(&spec, &self.env).map_err(OciError::from)?;
        let opened = Arc::new(Opened {
            store: target.store,
            options: target.options,
            index,
        });
        if let Ok(mut m) = self.opened.lock() {
            if m.len() >= MAX_OPEN {
                let drop: Vec<_> = m.keys().take(MAX_OPEN / 2).cloned().collect();
                for k in drop {
                    m.remove(&k);
                }
            }
            m.insert(key, opened.clone());
        }
        Ok(opened)
    }

    /// Every store of a repository, for blob requests.
    pub fn blob_stores(&self, repo: &str) -> Result<Vec<Arc<Opened>>, OciError> {
        (0..self.templates.len())
            .map(|i| self.open(i, repo, BLOB_TAG))
            .collect()
    }

    /// Every store of a repository and tag, for manifest requests.
    pub fn tag_stores(&self, repo: &str, tag: &str) -> Result<Vec<Arc<Opened>>, OciError> {
        (0..self.templates.len()).map(|i| self.open(i, repo, tag)).collect()
    }

    /// Log a store's failure that another store may make up for; the error for the client when
    /// none does.
    pub fn store_failed(&self, opened: &Opened, e: bkcache_core::Error) -> OciError {
        let location = opened.store.location();
        self.log.event(
            "store-error",
            serde_json::json!({"store": location, "error": e.chain()}),
            &format!("{location}: {}", e.chain()),
        );
        OciError::from(e)
    }

    /// Keep a document for reads by digest (bounded: the oldest go first).
    pub fn put_doc(&self, repo: &str, digest: Digest, doc: Doc) {
        let Ok(mut docs) = self.docs.lock() else { return };
        let key = (repo.to_owned(), digest);
        if docs.map.contains_key(&key) {
            return;
        }
        docs.bytes += doc.bytes.len();
        docs.map.insert(key.clone(), doc);
        docs.order.push_back(key);
        while docs.bytes > MAX_DOC_BYTES && docs.order.len() > 1 {
            if let Some(old) = docs.order.pop_front() {
                if let Some(d) = docs.map.remove(&old) {
                    docs.bytes -= d.bytes.len();
                }
            }
        }
    }

    /// A document kept by [`State::put_doc`].
    pub fn doc(&self, repo: &str, digest: &Digest) -> Option<Doc> {
        self.docs
            .lock()
            .ok()?
            .map
            .get(&(repo.to_owned(), digest.clone()))
            .cloned()
    }

    /// A blob's size in a store (`None`: absent), from what serve saw within [`SIZE_TTL`] when
    /// it can (an absence only if `trust_absent`), else from the store.
    pub async fn blob_size(
        &self,
        opened: &Opened,
        repo: &str,
        digest: &Digest,
        trust_absent: bool,
    ) -> bkcache_core::Result<Option<u64>> {
        let key = (opened.index, repo.to_owned(), digest.clone());
        let seen = self.sizes.lock().ok().and_then(|m| m.get(&key).copied());
        match seen {
            Some((Some(size), at)) if at.elapsed() < SIZE_TTL => return Ok(Some(size)),
            Some((None, at)) if trust_absent && at.elapsed() < SIZE_TTL => return Ok(None),
            _ => {}
        }
        let size = opened.store.blob_size(digest).await?;
        self.note_sizes(opened, repo, [(digest.clone(), size)]);
        Ok(size)
    }

    /// Forget what serve saw of a blob in a store (it was just written: the store's own
    /// `blob_size` is asked next, which also waits for a put the store finishes in the
    /// background).
    pub fn forget_size(&self, opened: &Opened, repo: &str, digest: &Digest) {
        if let Ok(mut m) = self.sizes.lock() {
            m.remove(&(opened.index, repo.to_owned(), digest.clone()));
        }
    }

    /// Remember blob sizes (or absences) seen in a store.
    pub fn note_sizes(&self, opened: &Opened, repo: &str, sizes: impl IntoIterator<Item = (Digest, Option<u64>)>) {
        let Ok(mut m) = self.sizes.lock() else { return };
        if m.len() > MAX_SIZES {
            m.clear();
        }
        let now = Instant::now();
        for (d, s) in sizes {
            m.insert((opened.index, repo.to_owned(), d), (s, now));
        }
    }

    /// Whether `--scan` already found this layer clean.
    pub fn is_clean(&self, digest: &Digest) -> bool {
        self.clean.lock().is_ok_and(|c| c.contains(digest))
    }

    /// Remember layers `--scan` found clean.
    pub fn mark_clean(&self, digests: impl IntoIterator<Item = Digest>) {
        if let Ok(mut c) = self.clean.lock() {
            c.extend(digests);
        }
    }

    /// The lock that orders commits to one repository and tag.
    pub fn commit_lock(&self, repo: &str, tag: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.commit_locks.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if locks.len() > 4096 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry((repo.to_owned(), tag.to_owned())).or_default().clone()
    }
}
