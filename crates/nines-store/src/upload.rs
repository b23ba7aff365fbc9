//! A file written to object storage as it is encoded: held in memory up to one part, and
//! put whole if it ends there (a flush's file, usually); a larger one (compaction's) goes up
//! in a multipart upload, a part at a time, so no copy of it is held whole.

use std::io::Write;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};
use tokio::runtime::Handle;

use crate::{Error, Result};

/// Bytes of each part of a multipart upload (S3's least but for the last part is 5 MiB).
pub(crate) const PART_BYTES: usize = 5 * 1024 * 1024;

/// Parts uploading at once: what the sink holds beyond the part it fills.
const PARTS_IN_FLIGHT: usize = 2;

/// The `Write` a file on object storage is encoded into, on a thread that may block (in
/// `tokio::task::block_in_place`): uploads run on the runtime of `handle`. The file exists
/// only once [`Upload::finish`] answered; [`Upload::abort`] drops what was uploaded.
pub(crate) struct Upload {
    store: Arc<dyn ObjectStore>,
    path: Path,
    handle: Handle,
    buffer: Vec<u8>,
    multipart: Option<WriteMultipart>,
}

impl Upload {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, path: Path, handle: Handle) -> Self {
        Upload {
            store,
            path,
            handle,
            buffer: Vec::new(),
            multipart: None,
        }
    }

    fn error(&self, source: object_store::Error) -> Error {
        Error::ObjectStore {
            path: self.path.to_string(),
            source,
        }
    }

    /// Stores what was written: one put, or the multipart upload's last part and its
    /// completion.
    pub(crate) fn finish(mut self) -> Result<()> {
        let done = match self.multipart.take() {
            Some(multipart) => self.handle.block_on(multipart.finish()).map(drop),
            None => {
                let bytes = std::mem::take(&mut self.buffer);
                self.handle
                    .block_on(self.store.put(&self.path, PutPayload::from(bytes)))
                    .map(drop)
            }
        };
        done.map_err(|e| self.error(e))
    }

    /// Gives up the file: the parts uploaded so far are removed, best effort (an upload
    /// neither completed nor aborted is no object; S3 bills its parts until a lifecycle
    /// rule removes them).
    pub(crate) fn abort(mut self) {
        if let Some(multipart) = self.multipart.take() {
            let _ = self.handle.block_on(multipart.abort());
        }
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(multipart) = &mut self.multipart {
            self.handle
                .block_on(multipart.wait_for_capacity(PARTS_IN_FLIGHT))
                .map_err(std::io::Error::other)?;
            multipart.write(buf);
            return Ok(buf.len());
        }
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= PART_BYTES {
            let upload = self
                .handle
                .block_on(self.store.put_multipart(&self.path))
                .map_err(std::io::Error::other)?;
            let mut multipart = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            multipart.write(&std::mem::take(&mut self.buffer));
            self.multipart = Some(multipart);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    /// `n` bytes of a pattern that does not repeat at part boundaries.
    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    async fn stored(store: &InMemory, path: &Path) -> Option<Vec<u8>> {
        let got = store.get(path).await.ok()?;
        Some(got.bytes().await.unwrap().to_vec())
    }

    /// A file smaller than a part is one put; a larger one, written in uneven pieces, goes
    /// up in parts; both read back byte for byte, and neither exists before `finish`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_reads_back_whole_whether_put_or_uploaded_in_parts() {
        let store = Arc::new(InMemory::new());
        for (name, n) in [("small", 1_000), ("large", 2 * PART_BYTES + 12_345)] {
            let path = Path::from(name);
            let data = bytes(n);
            let upload = tokio::task::block_in_place(|| {
                let mut upload = Upload::new(store.clone(), path.clone(), Handle::current());
                for piece in data.chunks(777_777) {
                    upload.write_all(piece).unwrap();
                }
                upload
            });
            assert_eq!(upload.multipart.is_some(), n > PART_BYTES, "{name}");
            assert_eq!(stored(&store, &path).await, None, "{name} before finish");
            tokio::task::block_in_place(|| upload.finish()).unwrap();
            assert_eq!(stored(&store, &path).await, Some(data), "{name}");
        }
    }

    /// An upload given up leaves no file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_upload_leaves_no_file() {
        let store = Arc::new(InMemory::new());
        let path = Path::from("given-up");
        tokio::task::block_in_place(|| {
            let mut upload = Upload::new(store.clone(), path.clone(), Handle::current());
            upload.write_all(&bytes(PART_BYTES + 1)).unwrap();
            upload.abort();
        });
        assert_eq!(stored(&store, &path).await, None);
    }
}
