//! Uploads: Put Blob up to one block, else blocks staged a few at a time within the store's
//! buffer budget, the block list committed only after the verified stream ended.

use super::*;

impl AzblobStore {
    /// `Put Blob` with `If-None-Match: *`; an existing blob of the right size is left alone,
    /// one of the wrong size (damaged) is replaced.
    pub(super) async fn put_small(
        &self,
        key: &str,
        path: &ObjectPath,
        desc: &Descriptor,
        payload: PutPayload,
    ) -> Result<()> {
        let op = format!("upload blob {key}");
        match self
            .store
            .put_opts(path, payload.clone(), PutOptions::from(PutMode::Create))
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                if self.blob_size(&desc.digest).await? == Some(desc.size) {
                    return Ok(());
                }
                tracing::warn!(%key, "replacing a blob of the wrong size");
                self.store
                    .put_opts(path, payload, PutOptions::from(PutMode::Overwrite))
                    .await
                    .map(|_| ())
                    .map_err(|e| self.store_err(&op, e))
            }
            Err(e) => Err(self.store_err(&op, e)),
        }
    }

    /// Room for `bytes` of upload buffer within [`BUFFER_BUDGET`], held until dropped.
    pub(super) async fn buffer(&self, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.buffers)
            .acquire_many_owned(budget_of(bytes))
            .await
            .map_err(|e| self.request_err("upload", format!("buffer limiter: {e}")))
    }

    /// Stage the blob in blocks ([`BLOCK_CONCURRENCY`] at once), reading the verified stream
    /// as the blocks go; commit the block list only after the stream ended verified. On any
    /// error the staged blocks are left uncommitted (Azure drops them after a week) and the
    /// blob never appears.
    pub(super) async fn put_blocks(
        &self,
        key: &str,
        path: &ObjectPath,
        desc: &Descriptor,
        mut data: VerifiedStream,
    ) -> Result<()> {
        let op = format!("upload blob {key}");
        let mut tasks: JoinSet<std::result::Result<(usize, PartId), object_store::Error>> = JoinSet::new();
        let mut parts: Vec<Option<PartId>> = Vec::new();
        let mut block: Vec<Bytes> = Vec::new();
        let mut block_len = 0usize;
        let mut finished = false;
        let mut room: Option<tokio::sync::OwnedSemaphorePermit> = None;
        while !finished {
            match data.next().await {
                Some(chunk) => {
                    let mut chunk = chunk?;
                    while !chunk.is_empty() {
                        let take = (BLOCK_SIZE - block_len).min(chunk.len());
                        if room.is_none() {
                            room = Some(self.buffer(BLOCK_SIZE as u64).await?);
                        }
                        block.push(chunk.split_to(take));
                        block_len += take;
                        if block_len == BLOCK_SIZE {
                            let block = std::mem::take(&mut block);
                            self.stage(&op, &mut tasks, &mut parts, path, block, room.take())
                                .await?;
                            block_len = 0;
                        }
                    }
                }
                None => finished = true,
            }
        }
        if block_len > 0 {
            self.stage(&op, &mut tasks, &mut parts, path, block, room.take())
                .await?;
        }
        while let Some(done) = tasks.join_next().await {
            self.record(&op, done, &mut parts)?;
        }
        let parts: Vec<PartId> = parts
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.request_err(&op, "a staged block went missing".into()))?;
        if self.put_block_list(key, &parts, false).await? {
            return Ok(());
        }
        // It existed already: keep it if it is whole, replace it if damaged.
        if self.blob_size(&desc.digest).await? == Some(desc.size) {
            return Ok(());
        }
        tracing::warn!(%key, "replacing a blob of the wrong size");
        self.put_block_list(key, &parts, true).await.map(|_| ())
    }

    pub(super) async fn stage(
        &self,
        op: &str,
        tasks: &mut JoinSet<std::result::Result<(usize, PartId), object_store::Error>>,
        parts: &mut Vec<Option<PartId>>,
        path: &ObjectPath,
        block: Vec<Bytes>,
        room: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<()> {
        while tasks.len() >= BLOCK_CONCURRENCY {
            if let Some(done) = tasks.join_next().await {
                self.record(op, done, parts)?;
            }
        }
        let idx = parts.len();
        parts.push(None);
        let store = Arc::clone(&self.store);
        let path = path.clone();
        let payload: PutPayload = block.into_iter().collect();
        tasks.spawn(async move {
            let id = String::new();
            let r = store.put_part(&path, &id, idx, payload).await.map(|p| (idx, p));
            drop(room);
            r
        });
        Ok(())
    }

    pub(super) fn record(
        &self,
        op: &str,
        done: std::result::Result<std::result::Result<(usize, PartId), object_store::Error>, tokio::task::JoinError>,
        parts: &mut [Option<PartId>],
    ) -> Result<()> {
        let (idx, part) = done
            .map_err(|e| self.request_err(op, format!("block upload task: {e}")))?
            .map_err(|e| self.store_err(op, e))?;
        if let Some(slot) = parts.get_mut(idx) {
            *slot = Some(part);
        }
        Ok(())
    }
}
