//! The groups of the conformance suite, each on fresh locations of the fixture.

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;

use super::{Capabilities, Fixture};
use crate::cache::{AbstractCache, LayerChain, Record};
use crate::descriptor::{Descriptor, ANNOTATION_UNCOMPRESSED};
use crate::digest::{Digest, Hasher};
use crate::error::Error;
use crate::gojson::GoTime;
use crate::media_type::MediaType;
use crate::spec::ExportOptions;
use crate::{CacheStore, VerifiedStream};

type Outcome = Result<(), String>;
type Run = for<'a> fn(&'a dyn Fixture) -> BoxFuture<'a, Outcome>;

/// A capability a group needs: whether the fixture claims it, and, when it does not, a check
/// that the store indeed says so (an honest `Unsupported`, not a silent wrong answer).
pub(super) struct Need {
    pub has: fn(&Capabilities) -> bool,
    pub why: &'static str,
    pub refused: for<'a> fn(&'a dyn CacheStore) -> BoxFuture<'a, bool>,
}

pub(super) struct Group {
    pub name: &'static str,
    pub needs: Option<Need>,
    pub run: Run,
}

const TAGS: Need = Need {
    has: |c| c.tags,
    why: "the store cannot list or remove tags (tag_store() is None)",
    refused: |s| Box::pin(async move { s.tag_store().is_none() }),
};
const GC: Need = Need {
    has: |c| c.blob_gc,
    why: "the store cannot list manifests or blobs, or delete blobs (blob_gc() is None)",
    refused: |s| Box::pin(async move { s.blob_gc().is_none() }),
};
const CLOCK: Need = Need {
    has: |c| c.write_time,
    why: "the store cannot tell when a tag was written (tag_entries() gives no time)",
    refused: |s| {
        Box::pin(async move {
            match s.blob_gc() {
                None => true,
                Some(gc) => gc
                    .tag_entries()
                    .await
                    .is_ok_and(|e| e.iter().all(|e| e.written.is_none())),
            }
        })
    },
};

pub(super) const ALL: &[Group] = &[
    Group {
        name: "blob_round_trip",
        needs: None,
        run: blob_round_trip,
    },
    Group {
        name: "empty_blob",
        needs: None,
        run: empty_blob,
    },
    Group {
        name: "large_blob_streamed",
        needs: None,
        run: large_blob_streamed,
    },
    Group {
        name: "wrong_digest_refused_and_invisible",
        needs: None,
        run: wrong_digest_refused,
    },
    Group {
        name: "blob_sizes_of_a_mix",
        needs: None,
        run: blob_sizes_of_a_mix,
    },
    Group {
        name: "absent_location_is_no_cache",
        needs: None,
        run: absent_is_no_cache,
    },
    Group {
        name: "commit_then_load",
        needs: None,
        run: commit_then_load,
    },
    Group {
        name: "second_commit_replaces",
        needs: None,
        run: second_commit_replaces,
    },
    Group {
        name: "concurrent_commits_never_mix",
        needs: None,
        run: concurrent_commits,
    },
    Group {
        name: "unchanged_only_for_the_committed_cache",
        needs: None,
        run: unchanged_only_for_the_committed,
    },
    Group {
        name: "tags_listed_and_removed",
        needs: Some(TAGS),
        run: tags_listed_and_removed,
    },
    Group {
        name: "references_and_blob_gc",
        needs: Some(GC),
        run: references_and_gc,
    },
    Group {
        name: "write_time_is_the_commit",
        needs: Some(CLOCK),
        run: write_time,
    },
    Group {
        name: "transient_errors_classified",
        needs: None,
        run: transient_classified,
    },
    Group {
        name: "no_secret_in_debug_or_errors",
        needs: None,
        run: no_secrets,
    },
    Group {
        name: "server_side_copy_between_locations",
        needs: None,
        run: server_side_copy,
    },
];

/// `Err(message)` unless `cond`.
macro_rules! check {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err(format!($($msg)*));
        }
    };
}

fn err(what: &str) -> impl Fn(Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn fresh(f: &dyn Fixture, tag: &str) -> Result<(String, Box<dyn CacheStore>), String> {
    let location = f.new_location().await.map_err(err("new location"))?;
    let store = f.open(&location, tag).map_err(err("open"))?;
    Ok((location, store))
}

/// Bytes that do not compress (xorshift), `seed` picks them.
fn bytes_of(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn layer(seed: u64, len: usize) -> (Descriptor, Bytes) {
    let bytes = bytes_of(seed, len);
    let mut desc = Descriptor::of_bytes(MediaType::OciLayerGzip, &bytes);
    let diff = Digest::of_bytes(format!("diff of {}", desc.digest).as_bytes());
    desc.annotations
        .insert(ANNOTATION_UNCOMPRESSED.into(), diff.to_string());
    (desc, bytes)
}

async fn put(store: &dyn CacheStore, desc: &Descriptor, bytes: &Bytes) -> Outcome {
    store
        .put_blob(desc, VerifiedStream::from_bytes(desc, bytes.clone()))
        .await
        .map_err(err(&format!("put_blob {}", desc.digest)))
}

async fn read_all(store: &dyn CacheStore, desc: &Descriptor, offset: u64) -> Result<Vec<u8>, String> {
    let mut s = store.open_blob(desc, offset).await.map_err(err("open_blob"))?;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.map_err(err("reading a blob"))?);
    }
    Ok(out)
}

/// A cache of one record per layer, record `i` holding the chain of layers `0..=i`.
fn cache_of(label: &str, layers: &[Descriptor]) -> AbstractCache {
    let mut cache = AbstractCache::default();
    for (i, d) in layers.iter().enumerate() {
        cache.blobs.insert(d.digest.clone(), d.clone());
        cache.records.push(Record {
            digest: Digest::of_bytes(format!("{label} record {i}").as_bytes()),
            inputs: Vec::new(),
            results: vec![LayerChain {
                blobs: layers[..=i].iter().map(|l| l.digest.clone()).collect(),
                created_at: GoTime::from_unix(1_767_225_600 + i as i64, 0),
            }],
        });
    }
    cache
}

/// Put `n` layers of `seed` and commit them as one cache.
async fn commit_layers(store: &dyn CacheStore, label: &str, seed: u64, n: usize) -> Result<AbstractCache, String> {
    let mut layers = Vec::new();
    for i in 0..n {
        let (d, b) = layer(seed * 100 + i as u64, 1000 + i * 10);
        put(store, &d, &b).await?;
        layers.push(d);
    }
    let cache = cache_of(label, &layers);
    let committed = store
        .commit(&cache, &ExportOptions::default())
        .await
        .map_err(err("commit"))?;
    check!(
        committed.manifest.is_some() && !committed.skipped,
        "commit wrote no manifest: {committed:?}"
    );
    Ok(cache)
}

/// What identifies a cache's content: (record, chain) pairs.
fn shape(cache: &AbstractCache) -> BTreeSet<(Digest, Vec<Digest>)> {
    cache
        .records
        .iter()
        .flat_map(|r| r.results.iter().map(move |c| (r.digest.clone(), c.blobs.clone())))
        .collect()
}

async fn load_shape(store: &dyn CacheStore) -> Result<Option<BTreeSet<(Digest, Vec<Digest>)>>, String> {
    match store.load().await {
        Ok(Some(l)) => Ok(Some(shape(&l.cache))),
        Ok(None) | Err(Error::CacheNotFound { .. }) => Ok(None),
        Err(e) => Err(format!("load: {e}")),
    }
}

fn blob_round_trip(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "blobs").await?;
        let (d, b) = layer(1, 70_000);
        put(store.as_ref(), &d, &b).await?;
        let size = store.blob_size(&d.digest).await.map_err(err("blob_size"))?;
        check!(size == Some(d.size), "blob_size after put: {size:?}, want {}", d.size);
        check!(
            read_all(store.as_ref(), &d, 0).await? == b,
            "the blob read back differs"
        );
        check!(
            read_all(store.as_ref(), &d, 65_536).await? == b[65_536..],
            "a read from an offset differs"
        );
        // A second put of the same blob is harmless.
        put(store.as_ref(), &d, &b).await
    })
}

fn empty_blob(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "empty").await?;
        let d = Descriptor::of_bytes(MediaType::OciLayerGzip, b"");
        put(store.as_ref(), &d, &Bytes::new()).await?;
        let size = store.blob_size(&d.digest).await.map_err(err("blob_size"))?;
        check!(size == Some(0), "empty blob size {size:?}");
        check!(
            read_all(store.as_ref(), &d, 0).await?.is_empty(),
            "empty blob read back non-empty"
        );
        Ok(())
    })
}

/// A stream of `len` bytes of `seed` in 1 MiB chunks (never the whole blob in memory).
fn chunks(seed: u64, len: u64) -> impl futures::Stream<Item = crate::Result<Bytes>> + Send {
    const CHUNK: u64 = 1 << 20;
    futures::stream::iter(0..len.div_ceil(CHUNK)).map(move |i| {
        let n = CHUNK.min(len - i * CHUNK) as usize;
        Ok(bytes_of(seed + i, n))
    })
}

fn large_blob_streamed(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "large").await?;
        let len = f.large_blob_size();
        let mut hasher = Hasher::new();
        let mut stream = Box::pin(chunks(7, len));
        while let Some(c) = stream.next().await {
            hasher.update(&c.map_err(err("generate"))?);
        }
        let desc = Descriptor::new(MediaType::OciLayerGzip, hasher.finish().0, len);
        let data = VerifiedStream::new(&desc, Box::pin(chunks(7, len)));
        store.put_blob(&desc, data).await.map_err(err("put_blob (large)"))?;
        let size = store.blob_size(&desc.digest).await.map_err(err("blob_size"))?;
        check!(size == Some(len), "large blob size {size:?}, want {len}");
        let mut back = store.open_blob(&desc, 0).await.map_err(err("open_blob"))?;
        let (mut h, mut n) = (Hasher::new(), 0u64);
        while let Some(c) = back.next().await {
            let c = c.map_err(err("reading the large blob"))?;
            n += c.len() as u64;
            h.update(&c);
        }
        check!(
            n == len && h.finish().0 == desc.digest,
            "the large blob read back differs ({n} bytes)"
        );
        Ok(())
    })
}

fn wrong_digest_refused(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "wrong").await?;
        let (claimed, _) = layer(3, 5000);
        let other = bytes_of(4, 5000);
        let data = VerifiedStream::new(&claimed, Box::pin(futures::stream::iter([Ok(other)])));
        let put = store.put_blob(&claimed, data).await;
        check!(put.is_err(), "a blob whose bytes do not match its digest was accepted");
        let size = store.blob_size(&claimed.digest).await.map_err(err("blob_size"))?;
        check!(size.is_none(), "a refused blob is visible (size {size:?})");
        Ok(())
    })
}

fn blob_sizes_of_a_mix(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "sizes").await?;
        let (a, ab) = layer(10, 100);
        let (b, _) = layer(11, 200);
        let (c, cb) = layer(12, 300);
        let (d, _) = layer(13, 400);
        put(store.as_ref(), &a, &ab).await?;
        put(store.as_ref(), &c, &cb).await?;
        let asked = [a.digest, b.digest, c.digest, d.digest];
        let sizes = store.blob_sizes(&asked, 2).await.map_err(err("blob_sizes"))?;
        check!(
            sizes == [Some(100), None, Some(300), None],
            "blob_sizes in the order asked: {sizes:?}"
        );
        Ok(())
    })
}

fn absent_is_no_cache(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "absent").await?;
        check!(
            load_shape(store.as_ref()).await?.is_none(),
            "a fresh location holds a cache"
        );
        Ok(())
    })
}

fn commit_then_load(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "commit").await?;
        let cache = commit_layers(store.as_ref(), "commit", 20, 3).await?;
        let loaded = store
            .load()
            .await
            .map_err(err("load"))?
            .ok_or("no cache after commit")?;
        check!(
            shape(&loaded.cache) == shape(&cache),
            "the loaded cache differs from the committed one"
        );
        for d in cache.blobs.values() {
            let size = store.blob_size(&d.digest).await.map_err(err("blob_size"))?;
            check!(
                size == Some(d.size),
                "blob {} named by the manifest has size {size:?}",
                d.digest
            );
        }
        Ok(())
    })
}

fn second_commit_replaces(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "replace").await?;
        commit_layers(store.as_ref(), "first", 30, 2).await?;
        let second = commit_layers(store.as_ref(), "second", 31, 3).await?;
        let got = load_shape(store.as_ref()).await?;
        check!(
            got == Some(shape(&second)),
            "after two commits the load is not the second cache"
        );
        Ok(())
    })
}

fn concurrent_commits(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (location, one) = fresh(f, "race").await?;
        let two = f.open(&location, "race").map_err(err("open"))?;
        let (a, b) = futures::join!(
            commit_layers(one.as_ref(), "racer a", 40, 3),
            commit_layers(two.as_ref(), "racer b", 41, 3)
        );
        let (a, b) = (shape(&a?), shape(&b?));
        let got = load_shape(one.as_ref()).await?.ok_or("no cache after two commits")?;
        check!(got == a || got == b, "two concurrent commits left a mix of both caches");
        Ok(())
    })
}

/// `unchanged` (a no-change re-export's shortcut) may say yes only for exactly the cache the
/// location holds, with that manifest: never for another cache, never for an absent location.
fn unchanged_only_for_the_committed(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let options = ExportOptions::default();
        let (_, store) = fresh(f, "same").await?;
        let (d, _) = layer(60, 1000);
        let never = cache_of("never committed", &[d]);
        let absent = store.unchanged(&never, &options).await.map_err(err("unchanged"))?;
        check!(absent.is_none(), "unchanged on an absent location: {absent:?}");
        let cache = commit_layers(store.as_ref(), "same", 61, 2).await?;
        let committed = store.commit(&cache, &options).await.map_err(err("commit again"))?;
        let manifest = committed.manifest.ok_or("commit wrote no manifest")?;
        if let Some(said) = store.unchanged(&cache, &options).await.map_err(err("unchanged"))? {
            check!(
                said.digest == manifest.digest,
                "unchanged names {} but the commit wrote {}",
                said.digest,
                manifest.digest
            );
        }
        let other = store.unchanged(&never, &options).await.map_err(err("unchanged"))?;
        check!(
            other.is_none(),
            "unchanged for a cache that was never committed: {other:?}"
        );
        Ok(())
    })
}

fn tags_listed_and_removed(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (location, t1) = fresh(f, "one").await?;
        let t2 = f.open(&location, "two").map_err(err("open"))?;
        commit_layers(t1.as_ref(), "one", 50, 2).await?;
        let kept = commit_layers(t2.as_ref(), "two", 51, 2).await?;
        let tag_store = t1
            .tag_store()
            .ok_or("the fixture claims tags, but tag_store() is None")?;
        let tags = tag_store.tags().await.map_err(err("tags"))?;
        check!(
            tags.contains(&"one".into()) && tags.contains(&"two".into()),
            "tags: {tags:?}"
        );
        tag_store.remove_tag("one").await.map_err(err("remove_tag"))?;
        let tags = tag_store.tags().await.map_err(err("tags"))?;
        check!(
            !tags.contains(&"one".into()) && tags.contains(&"two".into()),
            "tags after removing one: {tags:?}"
        );
        check!(load_shape(t1.as_ref()).await?.is_none(), "a removed tag still loads");
        check!(
            load_shape(t2.as_ref()).await? == Some(shape(&kept)),
            "removing one tag changed another"
        );
        Ok(())
    })
}

fn references_and_gc(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "gc").await?;
        let cache = commit_layers(store.as_ref(), "gc", 60, 2).await?;
        let (orphan, ob) = layer(69, 900);
        put(store.as_ref(), &orphan, &ob).await?;
        let gc = store
            .blob_gc()
            .ok_or("the fixture claims blob GC, but blob_gc() is None")?;
        let referenced = gc.referenced_blobs().await.map_err(err("referenced_blobs"))?;
        check!(
            cache.blobs.keys().all(|d| referenced.contains(d)),
            "a committed layer is not referenced"
        );
        check!(
            !referenced.contains(&orphan.digest),
            "an unreferenced blob is reported as referenced"
        );
        let entries = gc.tag_entries().await.map_err(err("tag_entries"))?;
        let entry = entries
            .iter()
            .find(|e| e.tag.as_deref() == Some("gc"))
            .ok_or("tag_entries lacks the tag")?;
        check!(
            cache.blobs.keys().all(|d| entry.blobs.contains(d)),
            "the tag's entry lacks a layer"
        );
        let listed: HashSet<(Digest, u64)> = gc
            .list_blobs()
            .await
            .map_err(err("list_blobs"))?
            .into_iter()
            .map(|b| (b.digest, b.size))
            .collect();
        for d in cache.blobs.values().chain([&orphan]) {
            check!(
                listed.contains(&(d.digest.clone(), d.size)),
                "list_blobs lacks {} ({} bytes)",
                d.digest,
                d.size
            );
        }
        gc.delete_blob(&orphan.digest).await.map_err(err("delete_blob"))?;
        let size = store.blob_size(&orphan.digest).await.map_err(err("blob_size"))?;
        check!(size.is_none(), "a deleted blob is still there");
        gc.delete_blob(&orphan.digest)
            .await
            .map_err(err("deleting an absent blob"))?;
        check!(
            load_shape(store.as_ref()).await? == Some(shape(&cache)),
            "deleting an orphan broke the cache"
        );
        Ok(())
    })
}

fn write_time(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "clock").await?;
        let before = GoTime::now().unix_nanos();
        commit_layers(store.as_ref(), "clock", 70, 1).await?;
        let after = GoTime::now().unix_nanos();
        let gc = store
            .blob_gc()
            .ok_or("the fixture claims a write time, but blob_gc() is None")?;
        let entries = gc.tag_entries().await.map_err(err("tag_entries"))?;
        let written = entries
            .iter()
            .find(|e| e.tag.as_deref() == Some("clock"))
            .and_then(|e| e.written)
            .ok_or("no write time for the tag")?;
        // Servers keep whole seconds; allow a little skew.
        let slack = 5_000_000_000;
        let w = written.unix_nanos();
        check!(
            w >= before - slack && w <= after + slack,
            "written {written} is not the commit's time"
        );
        Ok(())
    })
}

fn transient_classified(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "transient").await?;
        let reset = Error::io(
            "blob",
            "read",
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"),
        );
        check!(store.is_transient(&reset), "a connection reset is not transient");
        let d = Digest::of_bytes(b"x");
        let wrong = Error::DigestMismatch {
            digest: d.clone(),
            expected_size: 1,
            actual: "(stopped early)".into(),
            actual_size: 2,
        };
        check!(!store.is_transient(&wrong), "a digest mismatch is transient");
        let missing = Error::BlobNotFound {
            digest: d,
            location: store.location(),
        };
        check!(!store.is_transient(&missing), "a missing blob is transient");
        Ok(())
    })
}

fn no_secrets(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, store) = fresh(f, "secrets").await?;
        let (absent, _) = layer(80, 10);
        let mut shown = vec![format!("{store:?}"), store.location()];
        if let Err(e) = store.open_blob(&absent, 0).await {
            shown.push(e.chain());
        }
        if let Err(e) = store.load().await {
            shown.push(e.chain());
        }
        for secret in f.secrets().iter().filter(|s| !s.is_empty()) {
            for text in &shown {
                check!(
                    !text.contains(secret.as_str()),
                    "a secret appears in: {}",
                    text.replace(secret.as_str(), "<SECRET>")
                );
            }
        }
        Ok(())
    })
}

/// A store that says where it lives may be asked to copy a blob from another location of the
/// same service: it either copies it (then it reads back whole) or says no (then nothing is
/// visible). An origin of another service, and a blob the origin lacks, are a plain no or a
/// clear error, never a visible blob.
fn server_side_copy(f: &dyn Fixture) -> BoxFuture<'_, Outcome> {
    Box::pin(async move {
        let (_, origin) = fresh(f, "origin").await?;
        let (_, target) = fresh(f, "target").await?;
        let (d, b) = layer(42, 150_000);
        let foreign = crate::store::ServerSide {
            service: "conformance-suite:nowhere".into(),
            namespace: "none".into(),
        };
        let copied = target
            .copy_from(&d, &foreign)
            .await
            .map_err(err("copy_from another service"))?;
        check!(!copied, "copy_from an origin of another service said it copied");
        let Some(from) = origin.server_side() else {
            return Ok(()); // no server-side copies: the engine streams every blob
        };
        let (absent, _) = layer(43, 1000);
        if let Ok(true) = target.copy_from(&absent, &from).await {
            return Err("copy_from said it copied a blob the origin does not have".into());
        }
        let size = target.blob_size(&absent.digest).await.map_err(err("blob_size"))?;
        check!(
            size.is_none(),
            "a blob the origin lacks is visible after copy_from: {size:?}"
        );
        put(origin.as_ref(), &d, &b).await?;
        let copied = target.copy_from(&d, &from).await.map_err(err("copy_from"))?;
        let size = target.blob_size(&d.digest).await.map_err(err("blob_size"))?;
        if !copied {
            check!(size.is_none(), "copy_from said no, yet the blob is visible: {size:?}");
            return Ok(());
        }
        check!(
            size == Some(d.size),
            "blob_size after copy_from: {size:?}, want {}",
            d.size
        );
        check!(
            read_all(target.as_ref(), &d, 0).await? == b,
            "the blob copied server-side reads back different"
        );
        Ok(())
    })
}
