//! A file written to object storage as it is encoded, through object_store's `BufWriter`:
//! held in memory up to one part and put whole if it ends there (a flush's file, usually);
//! a larger one (compaction's) goes up in a multipart upload, a part at a time, so no copy
//! of it is held whole.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use tokio_util::io::SyncIoBridge;

use crate::writer::Sink;
use crate::{Error, Result};

/// Bytes of each part of a multipart upload (S3's least but for the last part is 5 MiB),
/// and what is held before the upload starts.
const PART_BYTES: usize = 5 * 1024 * 1024;

/// Parts uploading at once: what the writer holds beyond the part it fills.
const PARTS_IN_FLIGHT: usize = 2;

/// Stores at `path` what `encode` writes, on a thread that may block (in
/// `tokio::task::block_in_place`, the uploads running on the current runtime). The object
/// exists only once `encode` succeeded and the upload completed; if `encode` fails, what
/// was uploaded is aborted (best effort: S3 keeps an aborted upload's parts until a
/// lifecycle rule removes them, and no object is made).
pub(crate) fn upload<T>(
    store: Arc<dyn ObjectStore>,
    path: Path,
    encode: impl FnOnce(Sink<'_>) -> Result<T>,
) -> Result<T> {
    let error = |source: std::io::Error| Error::ObjectStore {
        path: path.to_string(),
        source: object_store::Error::Generic {
            store: "upload",
            source: Box::new(source),
        },
    };
    let writer = BufWriter::with_capacity(store, path.clone(), PART_BYTES)
        .with_max_concurrency(PARTS_IN_FLIGHT);
    let mut sink = SyncIoBridge::new(writer);
    match encode(&mut sink) {
        Ok(done) => {
            sink.shutdown().map_err(error)?;
            Ok(done)
        }
        Err(e) => {
            let mut writer = sink.into_inner();
            let _ = tokio::runtime::Handle::current().block_on(writer.abort());
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt as _;
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

    /// A file smaller than a part (one put) and one of several parts, written in uneven
    /// pieces, both read back byte for byte; neither exists while it is being written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_reads_back_whole_whether_put_or_uploaded_in_parts() {
        let store = Arc::new(InMemory::new());
        for (name, n) in [("small", 1_000), ("large", 2 * PART_BYTES + 12_345)] {
            let path = Path::from(name);
            let data = bytes(n);
            tokio::task::block_in_place(|| {
                upload(store.clone(), path.clone(), |sink| {
                    for piece in data.chunks(777_777) {
                        sink.write_all(piece).unwrap();
                    }
                    let during = tokio::runtime::Handle::current().block_on(stored(&store, &path));
                    assert_eq!(during, None, "{name} while written");
                    Ok(())
                })
            })
            .unwrap();
            assert_eq!(stored(&store, &path).await, Some(data), "{name}");
        }
    }

    /// An upload whose encoder failed leaves no file, and answers the encoder's error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_encode_leaves_no_file() {
        let store = Arc::new(InMemory::new());
        for (name, n) in [("small", 1_000), ("large", PART_BYTES + 1)] {
            let path = Path::from(name);
            let got = tokio::task::block_in_place(|| {
                upload(store.clone(), path.clone(), |sink| -> Result<()> {
                    sink.write_all(&bytes(n)).unwrap();
                    Err(Error::Conflict {
                        table: "t".into(),
                        reason: "encoding failed".into(),
                    })
                })
            });
            assert!(got.unwrap_err().to_string().contains("encoding failed"));
            assert_eq!(stored(&store, &path).await, None, "{name}");
        }
    }
}
