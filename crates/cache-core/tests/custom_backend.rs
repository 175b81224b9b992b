//! A new backend written against bkcache-core's public API only: an in-memory store (`type=mem`)
//! registered in [`Backends`] next to nothing else, which imports BuildKit's real `local-max`
//! cache and re-exports it byte for byte. If this compiles and passes, a third party can add a
//! backend without touching bkcache (the same code, abridged, is in the crate docs).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bkcache_core::factory::{Applies, OpenedTarget};
use bkcache_core::manifest::{Index, TopLevel};
use bkcache_core::store::{write_manifest_blobs, BlobStream, Committed};
use bkcache_core::transfer::{self, CopyOptions, NoProgress, Source, Target};
use bkcache_core::{
    inspect, AbstractCache, AttributeDoc, BackendFactory, Backends, CacheFormat, CacheSpec, CacheStore, Descriptor,
    Digest, Direction, Env, Error, ExportOptions, Family, LoadedCache, Result, VerifiedStream,
};
use bytes::Bytes;
use futures::StreamExt;

/// One named in-memory location: blobs by digest and tags pointing at top-level manifests.
#[derive(Debug, Default)]
struct Location {
    blobs: HashMap<Digest, Bytes>,
    tags: BTreeMap<String, Descriptor>,
}

/// Every location the factory made, shared by the stores it opens (`name=` picks one).
type Locations = Arc<Mutex<HashMap<String, Location>>>;

#[derive(Debug)]
struct MemStore {
    name: String,
    tag: String,
    locations: Locations,
}

impl MemStore {
    fn with<T>(&self, f: impl FnOnce(&mut Location) -> T) -> T {
        let mut all = self.locations.lock().unwrap();
        f(all.entry(self.name.clone()).or_default())
    }

    fn bytes(&self, digest: &Digest) -> Result<Bytes> {
        self.with(|l| l.blobs.get(digest).cloned())
            .ok_or_else(|| Error::BlobNotFound {
                digest: digest.clone(),
                location: self.location(),
            })
    }
}

#[async_trait]
impl CacheStore for MemStore {
    fn location(&self) -> String {
        format!("mem:{}:{}", self.name, self.tag)
    }

    async fn load(&self) -> Result<Option<LoadedCache>> {
        let Some(entry) = self.with(|l| l.tags.get(&self.tag).cloned()) else {
            return Ok(None);
        };
        // Every byte is checked against its descriptor before it is trusted.
        let what = format!("manifest {}", entry.digest);
        let bytes = bkcache_core::store::read_small_blob(self, &entry, 4 << 20, &what).await?;
        let top = TopLevel::detect(&bytes, &what)?;
        let cm = top.cache_manifest().ok_or_else(|| Error::InvalidManifest {
            what,
            reason: "not a cache manifest".into(),
        })?;
        let config = bkcache_core::store::read_small_blob(self, &cm.config, 4 << 20, "cache config").await?;
        let (cache, warnings) = cm.decode(&config)?;
        Ok(Some(LoadedCache {
            cache,
            format: CacheFormat::Manifest(cm.wrapper),
            manifest: entry,
            config: Some(cm.config),
            warnings,
            parts: Vec::new(),
        }))
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.with(|l| l.blobs.get(digest).map(|b| b.len() as u64)))
    }

    async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
        let bytes = self.bytes(&desc.digest)?;
        let start = (offset as usize).min(bytes.len());
        Ok(Box::pin(futures::stream::iter([Ok(bytes.slice(start..))])))
    }

    async fn put_blob(&self, desc: &Descriptor, mut data: VerifiedStream) -> Result<()> {
        let mut buf = Vec::with_capacity(desc.size as usize);
        while let Some(chunk) = data.next().await {
            // An error (including a digest mismatch at the end) means: make nothing visible.
            buf.extend_from_slice(&chunk?);
        }
        self.with(|l| l.blobs.insert(desc.digest.clone(), Bytes::from(buf)));
        Ok(())
    }

    async fn commit(&self, cache: &AbstractCache, options: &ExportOptions) -> Result<Committed> {
        // Config and manifest blobs through put_blob, then the tag: last.
        let encoded = write_manifest_blobs(self, cache, options).await?;
        self.with(|l| l.tags.insert(self.tag.clone(), encoded.manifest.clone()));
        Ok(Committed {
            manifest: Some(encoded.manifest),
            ..Committed::default()
        })
    }
}

#[derive(Default)]
struct MemFactory {
    locations: Locations,
}

const MEM_ATTRIBUTES: &[AttributeDoc] = &[
    AttributeDoc {
        name: "name",
        applies: Applies::Both,
        default: "required",
        meaning: "which in-memory location",
        secret: false,
    },
    AttributeDoc {
        name: "tag",
        applies: Applies::Both,
        default: "latest",
        meaning: "the tag to load or commit",
        secret: false,
    },
];

impl BackendFactory for MemFactory {
    fn type_name(&self) -> &'static str {
        "mem"
    }
    fn summary(&self) -> &'static str {
        "in-memory cache (a test backend)"
    }
    fn family(&self) -> Family {
        Family::Manifest
    }
    fn attributes(&self) -> &'static [AttributeDoc] {
        MEM_ATTRIBUTES
    }
    fn open(&self, spec: &CacheSpec, direction: Direction, _env: &Env) -> Result<Box<dyn CacheStore>> {
        let name = bkcache_core::factory::required_attr(spec, "name", direction, "e.g. name=main")?;
        Ok(Box::new(MemStore {
            name: name.to_owned(),
            tag: spec.get("tag").unwrap_or("latest").to_owned(),
            locations: self.locations.clone(),
        }))
    }
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/buildkit-v0.32.2/local-max/cache")
}

/// Put BuildKit's `local-max` cache (its blobs and its `latest` tag) into location `name`.
fn seed_from_fixture(locations: &Locations, name: &str) -> Descriptor {
    let index = Index::from_slice(&std::fs::read(fixture().join("index.json")).unwrap(), "index.json").unwrap();
    let mut location = Location::default();
    for entry in std::fs::read_dir(fixture().join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let digest = Digest::parse(&format!("sha256:{}", path.file_name().unwrap().to_string_lossy())).unwrap();
        location
            .blobs
            .insert(digest, Bytes::from(std::fs::read(&path).unwrap()));
    }
    let manifest = index.manifests[0].clone();
    location.tags.insert("latest".into(), manifest.clone());
    locations.lock().unwrap().insert(name.into(), location);
    manifest
}

fn spec(s: &str) -> CacheSpec {
    CacheSpec::parse(s).unwrap().remove(0)
}

async fn copy(backends: &Backends, from: &str, to: &str) -> transfer::CopyReport {
    let env = Env::empty("/");
    let from = spec(from);
    let to = spec(to);
    let sources = vec![Source {
        label: from.to_string(),
        store: backends.open_source(&from, &env).unwrap(),
    }];
    let OpenedTarget { store, options, .. } = backends.open_target(&to, &env).unwrap();
    let targets = vec![Target {
        label: to.to_string(),
        store,
        options,
    }];
    transfer::copy(&sources, &targets, &CopyOptions::default(), Arc::new(NoProgress))
        .await
        .unwrap()
}

#[test]
fn an_in_memory_backend_copies_buildkits_cache_byte_for_byte() {
    let factory = MemFactory::default();
    let locations = factory.locations.clone();
    let buildkit = seed_from_fixture(&locations, "buildkit");
    let backends = Backends::new().with(factory);

    let report = futures::executor::block_on(copy(&backends, "type=mem,name=buildkit", "type=mem,name=copy,mode=max"));
    assert!(!report.failed(), "{report:?}");
    let t = &report.targets[0];
    // Same manifest digest as BuildKit wrote: every byte re-encoded exactly.
    assert_eq!(t.manifest.as_ref().unwrap().digest, buildkit.digest);
    assert!(t.blobs_copied > 0);

    let all = locations.lock().unwrap();
    let (src, dst) = (&all["buildkit"], &all["copy"]);
    assert_eq!(dst.tags["latest"].digest, buildkit.digest);
    for (digest, bytes) in &dst.blobs {
        assert_eq!(src.blobs.get(digest), Some(bytes), "{digest}");
    }
    drop(all);

    // Core's verify and a second copy (nothing left to move) work on it as on any backend.
    let store = backends
        .open_source(&spec("type=mem,name=copy"), &Env::empty("/"))
        .unwrap();
    futures::executor::block_on(async {
        let loaded = store.load().await.unwrap().unwrap();
        let verified = inspect::verify(store.as_ref(), &loaded, 4).await;
        assert!(verified.problems.is_empty(), "{:?}", verified.problems);
        let again = copy(&backends, "type=mem,name=buildkit", "type=mem,name=copy,mode=max").await;
        assert_eq!(again.targets[0].blobs_copied, 0);
    });
}

#[test]
fn the_registry_checks_a_custom_backends_attributes() {
    let backends = Backends::new().with(MemFactory::default());
    let env = Env::empty("/");
    let e = backends
        .open_source(&spec("type=mem,name=a,bogus=1"), &env)
        .unwrap_err();
    assert!(matches!(e, Error::UnknownAttribute { .. }), "{e}");
    let e = backends.open_source(&spec("type=mem"), &env).unwrap_err();
    assert!(matches!(e, Error::MissingAttribute { .. }), "{e}");
    // The common export options come with the manifest family.
    let t = backends
        .open_target(&spec("type=mem,name=a,mode=min,oci-mediatypes=false"), &env)
        .unwrap();
    assert!(!t.options.oci_mediatypes);
    assert_eq!(t.store.location(), "mem:a:latest");
    // A missing cache is `None`: every source absent is a first run, not a failure.
    let e = futures::executor::block_on(async {
        let sources = vec![Source {
            label: "empty".into(),
            store: backends.open_source(&spec("type=mem,name=empty"), &env).unwrap(),
        }];
        transfer::copy(&sources, &[], &CopyOptions::default(), Arc::new(NoProgress)).await
    })
    .unwrap_err();
    assert!(matches!(e, Error::NoSourceCache { .. }), "{e}");
}
