//! Compaction's merge: the row groups of a day's small files, each sorted by the table's
//! natural key (the writer sorts every part it writes, and a row group never spans two
//! parts), merged into one sorted stream a slice at a time.
//!
//! Each row group is read in batches of [`RUN_BATCH_ROWS`] from its file: a page at a time
//! on a local disk, and on object storage fetched (its column chunks, in ranged GETs) when
//! its run reaches it. So what the merge holds is a batch and a page (or a fetched row
//! group) of each input, not the inputs whole. Decoding a day's small files whole,
//! concatenating and sorting them took `nines compact` to 1.3 GB of RSS for the bench's
//! 125 MB of `requests` (BENCHMARKS.md, twentieth part), in every aggregator, every
//! `storage.interval`; fetching a bin's files whole before reading them held up to
//! `target_file_bytes` more on object storage (twenty-first part).
//!
//! The order is the one the writer's sort gives the concatenation of the inputs: rows by
//! the key, equal keys in input order (input by input, row group by row group), so a merged
//! file is the one sorting the whole day would have written.

use std::cmp::Ordering;
use std::fs::File;
use std::path::PathBuf;

use arrow::array::ArrayRef;
use arrow::compute::{concat_batches, interleave_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::error::IoContext;
use crate::{Error, Result};

/// Rows read from each input row group at a time.
pub(crate) const RUN_BATCH_ROWS: usize = 2048;

/// Rows of each merged slice handed to the writer (as many as the writer's own sorted
/// slices, so a merged file's row groups fall where sorting the whole day put them).
pub(crate) const MERGED_SLICE_ROWS: usize = 16 * 1024;

/// Runs merged into one file at most. Each holds a batch, and a page and (for a compressed
/// column) a ZSTD context per column, until it is used up: ~3 MB for `requests`, so
/// `nines compact` of the bench's day peaked at 132 MiB of RSS with 16, 183 with 32 and 268
/// with 64 (BENCHMARKS.md, twentieth part). A day with more runs than this is compacted
/// into several files, and those again at the next compaction.
pub(crate) const MAX_RUNS_PER_MERGE: usize = 16;

/// One input file of a merge: on the local disk, or in object storage.
pub(crate) enum Input {
    Local(PathBuf),
    /// A file in `store` (rooted where the table's paths start) of `size` bytes: its footer
    /// is fetched first, then each row group when its run reaches it.
    Remote {
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        path: object_store::path::Path,
        size: u64,
    },
}

/// Bytes fetched from the end of a file in object storage for its footer: the metadata of
/// a nines file fits, so it takes one GET, not two.
const FOOTER_HINT: usize = 64 * 1024;

/// A file in object storage as the Parquet reader asks for it: in ranged GETs (the
/// `parquet` crate's own `ParquetObjectReader` is deprecated in favour of this).
#[derive(Clone)]
struct ObjectFile {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    size: u64,
}

fn object_err(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectFile {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            object_store::ObjectStoreExt::get_range(&self.store, &self.path, range)
                .await
                .map_err(object_err)
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(object_err)
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<'a, parquet::errors::Result<std::sync::Arc<ParquetMetaData>>>
    {
        Box::pin(async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_HINT))
                .load_and_finish(self, size)
                .await?;
            Ok(std::sync::Arc::new(metadata))
        })
    }
}

/// The row groups of a run in object storage not fetched yet, and the runtime that fetches
/// them.
type Remote = (ParquetRecordBatchStream<ObjectFile>, tokio::runtime::Handle);

/// One sorted run: a row group of an input (or all of a compacted file's), its current
/// batch and that batch's key rows.
pub(crate) struct Run {
    /// The input's name, for errors.
    name: std::sync::Arc<str>,
    /// The row group being read: on a local disk, all of the run's.
    reader: Option<ParquetRecordBatchReader>,
    /// In object storage: the run's row groups after `reader`'s.
    remote: Option<Remote>,
    /// Where the run's current batch is in [`Merge::held`].
    held: usize,
    rows: Option<Rows>,
    position: usize,
    len: usize,
}

impl Run {
    /// The run's next batch, if any; in object storage, fetching the run's next row group
    /// when one is used up, blocking on the run's runtime (the caller is the merge thread,
    /// [`on_merge_thread`], not one of the runtime's own).
    fn read(&mut self) -> Result<Option<RecordBatch>> {
        let parquet_err = |source| Error::Parquet {
            path: self.name.as_ref().into(),
            source,
        };
        loop {
            if let Some(reader) = &mut self.reader {
                match reader.next().transpose() {
                    Ok(Some(batch)) => return Ok(Some(batch)),
                    Ok(None) => self.reader = None,
                    Err(e) => {
                        return Err(parquet_err(parquet::errors::ParquetError::External(
                            Box::new(e),
                        )));
                    }
                }
            }
            let Some((stream, runtime)) = &mut self.remote else {
                return Ok(None);
            };
            match runtime.block_on(stream.next_row_group()) {
                Ok(Some(reader)) => self.reader = Some(reader),
                Ok(None) => {
                    self.remote = None;
                    return Ok(None);
                }
                Err(e) => return Err(parquet_err(e)),
            }
        }
    }
}

/// The merged rows of several sorted runs, in slices of at most [`MERGED_SLICE_ROWS`].
pub(crate) struct Merge {
    schema: SchemaRef,
    key: Vec<usize>,
    converter: Option<RowConverter>,
    runs: Vec<Run>,
    /// A min-heap of the runs with rows left, by (current row's key, run).
    heap: Vec<usize>,
    /// The batches the slice being built takes rows from.
    held: Vec<RecordBatch>,
    /// The slice being built: (held batch, first row, rows), in order.
    ranges: Vec<(usize, usize, usize)>,
}

impl Merge {
    /// Merges `runs` (in input order: equal keys keep it) by `key`, the table's sort key
    /// (empty: the runs are concatenated). `None` when they hold no row.
    pub(crate) fn open(candidates: Vec<Run>, key: &[&str]) -> Result<Option<Self>> {
        let mut runs = Vec::with_capacity(candidates.len());
        let mut held = Vec::new();
        let mut schema: Option<SchemaRef> = None;
        for mut run in candidates {
            let Some(batch) = run.read()? else {
                continue;
            };
            match &schema {
                None => schema = Some(batch.schema()),
                Some(s) if !same_columns(s, batch.schema_ref()) => {
                    return Err(arrow::error::ArrowError::SchemaError(format!(
                        "{}: its schema is not the first input's; files of two schemas are \
                         not merged",
                        run.name
                    ))
                    .into());
                }
                Some(_) => {}
            }
            run.held = held.len();
            run.len = batch.num_rows();
            held.push(batch);
            runs.push(run);
        }
        let Some(schema) = schema else {
            return Ok(None);
        };
        let key = key
            .iter()
            .map(|name| {
                schema.index_of(name).map_err(|_| {
                    arrow::error::ArrowError::SchemaError(format!("no sort column {name}")).into()
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let converter = if key.is_empty() {
            None
        } else {
            Some(RowConverter::new(
                key.iter()
                    .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                    .collect(),
            )?)
        };
        let mut merge = Merge {
            schema,
            key,
            converter,
            heap: Vec::with_capacity(runs.len()),
            runs,
            held,
            ranges: Vec::new(),
        };
        for r in 0..merge.runs.len() {
            merge.runs[r].rows = merge.key_rows(&merge.held[merge.runs[r].held])?;
            merge.push(r);
        }
        Ok(Some(merge))
    }

    /// The schema of every merged slice: the inputs'.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn key_rows(&self, batch: &RecordBatch) -> Result<Option<Rows>> {
        let Some(converter) = &self.converter else {
            return Ok(None);
        };
        let columns: Vec<ArrayRef> = self.key.iter().map(|&i| batch.column(i).clone()).collect();
        Ok(Some(converter.convert_columns(&columns)?))
    }

    /// Whether run `a`'s current row comes before run `b`'s: by key, then by run.
    fn before(&self, a: usize, b: usize) -> bool {
        let (ra, rb) = (&self.runs[a], &self.runs[b]);
        let by_key = match (&ra.rows, &rb.rows) {
            (Some(x), Some(y)) => x.row(ra.position).cmp(&y.row(rb.position)),
            _ => Ordering::Equal,
        };
        by_key.then(a.cmp(&b)) == Ordering::Less
    }

    fn push(&mut self, run: usize) {
        self.heap.push(run);
        let mut i = self.heap.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.before(self.heap[i], self.heap[parent]) {
                break;
            }
            self.heap.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self) {
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < self.heap.len() && self.before(self.heap[l], self.heap[least]) {
                least = l;
            }
            if r < self.heap.len() && self.before(self.heap[r], self.heap[least]) {
                least = r;
            }
            if least == i {
                return;
            }
            self.heap.swap(i, least);
            i = least;
        }
    }

    /// Takes the first row of the run on top of the heap into the slice being built, and
    /// reads the run's next batch when that was its batch's last row.
    fn take_top(&mut self) -> Result<()> {
        let r = self.heap[0];
        let run = &mut self.runs[r];
        match self.ranges.last_mut() {
            Some((held, first, n)) if *held == run.held && *first + *n == run.position => *n += 1,
            _ => self.ranges.push((run.held, run.position, 1)),
        }
        run.position += 1;
        if run.position < run.len {
            self.sift_down();
            return Ok(());
        }
        match run.read()? {
            Some(batch) => {
                let rows = self.key_rows(&batch)?;
                let run = &mut self.runs[r];
                run.rows = rows;
                run.position = 0;
                run.len = batch.num_rows();
                run.held = self.held.len();
                self.held.push(batch);
                self.sift_down();
            }
            None => {
                self.runs[r].rows = None;
                let last = self.heap.pop().expect("the run taken from");
                if !self.heap.is_empty() {
                    self.heap[0] = last;
                    self.sift_down();
                }
            }
        }
        Ok(())
    }

    /// The slice built so far, as one batch; the batches it no longer needs are let go.
    fn cut(&mut self) -> Result<RecordBatch> {
        let rows: usize = self.ranges.iter().map(|r| r.2).sum();
        // Long runs of one input (the usual shape: each small file's rows of a key are a
        // stretch of time) are copied as slices; rows interleaved finely, one by one.
        let slice = if self.ranges.len() * 8 <= rows {
            let parts: Vec<RecordBatch> = self
                .ranges
                .iter()
                .map(|&(held, first, n)| self.held[held].slice(first, n))
                .collect();
            concat_batches(&self.schema, &parts)?
        } else {
            let batches: Vec<&RecordBatch> = self.held.iter().collect();
            let indices: Vec<(usize, usize)> = self
                .ranges
                .iter()
                .flat_map(|&(held, first, n)| (first..first + n).map(move |row| (held, row)))
                .collect();
            let taken = interleave_record_batch(&batches, &indices)?;
            RecordBatch::try_new(self.schema.clone(), taken.columns().to_vec())?
        };
        self.ranges.clear();
        let live: Vec<usize> = self.heap.clone();
        let mut kept = Vec::with_capacity(live.len());
        for r in live {
            let run = &mut self.runs[r];
            kept.push(self.held[run.held].clone());
            run.held = kept.len() - 1;
        }
        self.held = kept;
        Ok(slice)
    }
}

impl Iterator for Merge {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut rows = 0;
        while rows < MERGED_SLICE_ROWS && !self.heap.is_empty() {
            if let Err(e) = self.take_top() {
                return Some(Err(e));
            }
            rows += 1;
        }
        (rows > 0).then(|| self.cut())
    }
}

/// Runs `merge` (a compaction's merge and the write of its file) on the one thread every
/// merge of the process runs on, with the caller's runtime entered (a run in object
/// storage fetches its row groups on it, and the upload goes through it), and answers
/// what it returns; a panic in it is the caller's again.
///
/// One thread, because glibc's allocator gives each thread an arena and keeps what was
/// freed in it for that arena's next allocations: merges run wherever
/// `block_in_place` found them (any of the runtime's threads, round after round) left a
/// merge's worth of freed memory in each arena they touched. An aggregator compacting
/// every 2 s while it took 100 k events/s grew to 410–422 MiB of RSS that way, against
/// 172 MiB with `MALLOC_ARENA_MAX=2` (BENCHMARKS.md, twenty-first part). On one thread,
/// every merge reuses what the last one freed. Merges wait for each other; each holds
/// the memory `MAX_RUNS_PER_MERGE` bounds.
pub(crate) async fn on_merge_thread<R: Send + 'static>(
    merge: impl FnOnce() -> R + Send + 'static,
) -> R {
    type Job = Box<dyn FnOnce() + Send>;
    static THREAD: std::sync::OnceLock<std::sync::mpsc::Sender<Job>> = std::sync::OnceLock::new();
    let jobs = THREAD.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("nines-merge".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })
            .expect("starting the merge thread");
        jobs
    });
    let runtime = tokio::runtime::Handle::current();
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _entered = runtime.enter();
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(merge));
        let _ = answer.send(got);
    });
    jobs.send(job)
        .expect("the merge thread takes jobs as long as the process runs");
    match answered
        .await
        .expect("the merge thread answers every job it takes")
    {
        Ok(got) => got,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Whether two inputs' schemas have the same columns: names and types (their nullability
/// and metadata may differ between nines versions; every slice is given the first's).
fn same_columns(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

/// The sorted runs of the input file `name`, in order, none read yet. A file in object
/// storage has its footer fetched here, on the current runtime (the caller is on one of
/// its blocking threads, `tokio::task::block_in_place`), and nothing else yet.
pub(crate) fn runs_of(name: &str, input: Input) -> Result<Vec<Run>> {
    let parquet_err = |source| Error::Parquet {
        path: name.into(),
        source,
    };
    let shared: std::sync::Arc<str> = name.into();
    let run = |reader, remote| Run {
        name: shared.clone(),
        reader,
        remote,
        held: 0,
        rows: None,
        position: 0,
        len: 0,
    };
    match input {
        Input::Local(path) => {
            let file = File::open(&path).io("opening", &path)?;
            let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
                .map_err(parquet_err)?;
            run_row_groups(&metadata)
                .into_iter()
                .map(|row_groups| {
                    let file = file.try_clone().io("opening", &path)?;
                    let reader =
                        ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata.clone())
                            .with_row_groups(row_groups)
                            .with_batch_size(RUN_BATCH_ROWS)
                            .build()
                            .map_err(parquet_err)?;
                    Ok(run(Some(reader), None))
                })
                .collect()
        }
        Input::Remote { store, path, size } => {
            let runtime = tokio::runtime::Handle::current();
            let mut file = ObjectFile { store, path, size };
            let metadata = runtime
                .block_on(ArrowReaderMetadata::load_async(
                    &mut file,
                    ArrowReaderOptions::default(),
                ))
                .map_err(parquet_err)?;
            run_row_groups(&metadata)
                .into_iter()
                .map(|row_groups| {
                    let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
                        file.clone(),
                        metadata.clone(),
                    )
                    .with_row_groups(row_groups)
                    .with_batch_size(RUN_BATCH_ROWS)
                    .build()
                    .map_err(parquet_err)?;
                    Ok(run(None, Some((stream, runtime.clone()))))
                })
                .collect()
        }
    }
}

/// The `nines.topic` of the files compaction writes: each is sorted whole, across its row
/// groups, so it is one run.
pub(crate) const COMPACTED_TOPIC: &str = "compaction";

/// The row groups of each sorted run of a Parquet file, in order: all of them when
/// compaction wrote it (sorted whole: a merge, or before the merge a sort of the whole
/// day), else each row group apart (a file of several partitions' large parts sorts each
/// part apart).
fn run_row_groups(metadata: &ArrowReaderMetadata) -> Vec<Vec<usize>> {
    let row_groups = metadata.metadata().num_row_groups();
    let compacted = metadata
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .any(|kv| kv.key == "nines.topic" && kv.value.as_deref() == Some(COMPACTED_TOPIC));
    if compacted {
        vec![(0..row_groups).collect()]
    } else {
        (0..row_groups).map(|rg| vec![rg]).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, StringArray, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimestampNanosecondType};

    use super::*;
    use crate::writer::Provenance;
    use nines_model::schema::{REQUESTS, sort_key};

    /// A row as the test sees it: `requests`' sort key, then where it came from (input
    /// order across every file).
    type Row = (String, String, String, String, i64, i64);

    fn batch(rows: &[Row]) -> RecordBatch {
        let strings = |f: fn(&Row) -> &String| {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as ArrayRef
        };
        RecordBatch::try_new(
            crate::writer::sort_key_schema("seq"),
            vec![
                strings(|r| &r.0),
                strings(|r| &r.1),
                strings(|r| &r.2),
                strings(|r| &r.3),
                Arc::new(
                    TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.4))
                        .with_timezone("+00:00"),
                ),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.5))),
            ],
        )
        .unwrap()
    }

    fn rows_of(b: &RecordBatch) -> Vec<Row> {
        let s = |i: usize| b.column(i).as_string::<i32>();
        let time = b.column(4).as_primitive::<TimestampNanosecondType>();
        let seq = b.column(5).as_primitive::<Int64Type>();
        (0..b.num_rows())
            .map(|i| {
                (
                    s(0).value(i).to_owned(),
                    s(1).value(i).to_owned(),
                    s(2).value(i).to_owned(),
                    s(3).value(i).to_owned(),
                    time.value(i),
                    seq.value(i),
                )
            })
            .collect()
    }

    /// A Parquet file of `groups`, one row group each, as bytes.
    fn file(groups: &[Vec<Row>]) -> bytes::Bytes {
        file_of(groups, "nines.events")
    }

    /// [`file`], with `nines.topic` set to `topic`.
    fn file_of(groups: &[Vec<Row>], topic: &str) -> bytes::Bytes {
        let batches: Vec<RecordBatch> = groups.iter().map(|g| batch(g)).collect();
        let p = Provenance {
            topic,
            ..Provenance::of_test(REQUESTS)
        };
        crate::writer::encode_row_groups(&batches, &p).into()
    }

    /// `n` rows sorted by key, from a seeded LCG: a few tenants, services and operations,
    /// times from `t0` spread over `span` with many equal, so keys tie within and across runs.
    fn run(n: usize, seed: u64, t0: i64, span: u64, seq: &mut i64) -> Vec<Row> {
        let mut next = crate::writer::lcg(seed);
        let mut rows: Vec<Row> = (0..n)
            .map(|_| {
                (
                    format!("t{}", next(2)),
                    ["cart", "checkout", "auth-é"][next(3) as usize].to_owned(),
                    "production".to_owned(),
                    format!("GET /{}", next(3)),
                    t0 + next(span) as i64,
                    0,
                )
            })
            .collect();
        // Sorted by key, ties in the order generated: what the writer's sort leaves.
        rows.sort_by(|a, b| (&a.0, &a.1, &a.2, &a.3, a.4).cmp(&(&b.0, &b.1, &b.2, &b.3, b.4)));
        for r in &mut rows {
            r.5 = *seq;
            *seq += 1;
        }
        rows
    }

    /// The runtime the runs of [`remote`] inputs fetch on (each keeps its handle).
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap()
    });

    /// `bytes` as a file in object storage (an in-memory store, counting its GETs).
    fn remote(bytes: bytes::Bytes) -> Input {
        remote_in(Arc::new(Counted::default()), bytes)
    }

    fn remote_in(store: Arc<Counted>, bytes: bytes::Bytes) -> Input {
        let path = object_store::path::Path::from("table/f.parquet");
        let size = bytes.len() as u64;
        RUNTIME
            .block_on(object_store::ObjectStoreExt::put(
                &store.inner,
                &path,
                bytes.into(),
            ))
            .unwrap();
        Input::Remote { store, path, size }
    }

    /// An in-memory object store that notes the bytes each GET answered.
    #[derive(Debug, Default)]
    struct Counted {
        inner: object_store::memory::InMemory,
        gets: std::sync::Mutex<Vec<u64>>,
    }

    impl std::fmt::Display for Counted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Counted({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for Counted {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            let got = self.inner.get_opts(location, options).await?;
            self.gets
                .lock()
                .unwrap()
                .push(got.range.end - got.range.start);
            Ok(got)
        }

        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<
                'static,
                object_store::Result<object_store::path::Path>,
            >,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
        {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// [`Merge::open`] of every run of `inputs`.
    fn open(inputs: Vec<(String, Input)>, key: &[&str]) -> Result<Option<Merge>> {
        let _entered = RUNTIME.enter();
        let mut runs = Vec::new();
        for (name, input) in inputs {
            runs.extend(runs_of(&name, input)?);
        }
        Merge::open(runs, key)
    }

    fn merged(inputs: Vec<(String, Input)>, key: &[&str]) -> (Vec<Row>, Vec<usize>) {
        let merge = open(inputs, key).unwrap().expect("rows to merge");
        let mut rows = Vec::new();
        let mut slices = Vec::new();
        for slice in merge {
            let slice = slice.unwrap();
            slices.push(slice.num_rows());
            rows.extend(rows_of(&slice));
        }
        (rows, slices)
    }

    /// Every row group of every input is a sorted run; the merge gives what a stable sort of
    /// all the rows in input order gives (worked out here with the standard library's sort),
    /// across batch and slice boundaries, from local files and object storage alike.
    #[test]
    fn the_merge_is_a_stable_sort_of_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let mut seq = 0;
        // Fine interleaving (every run over the same times) and long stretches (runs of
        // their own times) both; the second file's two row groups overlap each other.
        let files = [
            vec![run(9_000, 1, 0, 50, &mut seq)],
            vec![
                run(5_000, 2, 0, 50, &mut seq),
                run(7_000, 3, 0, 50, &mut seq),
            ],
            vec![run(1, 4, 25, 1, &mut seq)],
            vec![run(12_000, 5, 1_000, 20_000, &mut seq)],
            vec![run(10_000, 6, 30_000, 20_000, &mut seq)],
        ];
        let mut expected: Vec<Row> = files.iter().flatten().flatten().cloned().collect();
        assert_eq!(expected.len(), 43_001);
        expected.sort_by(|a, b| (&a.0, &a.1, &a.2, &a.3, a.4).cmp(&(&b.0, &b.1, &b.2, &b.3, b.4)));
        let inputs = files
            .iter()
            .enumerate()
            .map(|(i, groups)| {
                let bytes = file(groups);
                let input = if i % 2 == 0 {
                    let path = dir.path().join(format!("{i}.parquet"));
                    std::fs::write(&path, &bytes).unwrap();
                    Input::Local(path)
                } else {
                    remote(bytes)
                };
                (format!("{i}.parquet"), input)
            })
            .collect();
        let (got, slices) = merged(inputs, sort_key(REQUESTS));
        assert_eq!(got.len(), expected.len());
        assert!(
            got == expected,
            "the merge's order differs from a stable sort"
        );
        assert_eq!(slices, [16_384, 16_384, 10_233]);
    }

    /// A file compaction wrote is sorted whole: its row groups are one run, read in order,
    /// where another file's row groups are a run each.
    #[test]
    fn a_compacted_file_is_one_run() {
        let mut seq = 0;
        let mut whole = run(6_000, 11, 0, 99, &mut seq);
        let tail = whole.split_off(2_500);
        let other = run(100, 12, 0, 99, &mut seq);
        let mut expected = [whole.clone(), tail.clone(), other.clone()].concat();
        expected.sort_by(|a, b| (&a.0, &a.1, &a.2, &a.3, a.4).cmp(&(&b.0, &b.1, &b.2, &b.3, b.4)));
        let inputs = |topic: &str| {
            vec![
                (
                    "compacted".to_owned(),
                    remote(file_of(&[whole.clone(), tail.clone()], topic)),
                ),
                (
                    "flushed".to_owned(),
                    remote(file(std::slice::from_ref(&other))),
                ),
            ]
        };
        let merge = open(inputs(COMPACTED_TOPIC), sort_key(REQUESTS))
            .unwrap()
            .unwrap();
        assert_eq!(merge.runs.len(), 2);
        let got: Vec<Row> = merge.flat_map(|b| rows_of(&b.unwrap())).collect();
        assert!(got == expected);
        let merge = open(inputs("nines.events"), sort_key(REQUESTS))
            .unwrap()
            .unwrap();
        assert_eq!(merge.runs.len(), 3);
    }

    /// Files whose columns differ only in nullability (another nines version's) merge, in
    /// the first file's schema.
    #[test]
    fn inputs_differing_only_in_nullability_are_merged() {
        let mut seq = 0;
        let (a, b) = (run(300, 21, 0, 9, &mut seq), run(200, 22, 0, 9, &mut seq));
        let nullable: Vec<Field> = crate::writer::sort_key_schema("seq")
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let loose = batch(&b)
            .with_schema(Arc::new(Schema::new(nullable)))
            .unwrap();
        let p = Provenance::of_test(REQUESTS);
        let inputs = vec![
            ("strict".to_owned(), remote(file(std::slice::from_ref(&a)))),
            (
                "loose".to_owned(),
                remote(crate::writer::encode_row_groups(&[loose], &p).into()),
            ),
        ];
        let mut expected = [a, b].concat();
        expected.sort_by(|x, y| (&x.0, &x.1, &x.2, &x.3, x.4).cmp(&(&y.0, &y.1, &y.2, &y.3, y.4)));
        let merge = open(inputs, sort_key(REQUESTS)).unwrap().unwrap();
        assert!(!merge.schema().field(0).is_nullable());
        let got: Vec<Row> = merge.flat_map(|b| rows_of(&b.unwrap())).collect();
        assert!(got == expected);
    }

    /// A table without a sort key: the inputs' rows one after the other, in order.
    #[test]
    fn without_a_key_the_runs_are_concatenated() {
        let mut seq = 0;
        let (a, b) = (run(5_000, 7, 0, 9, &mut seq), run(3, 8, 0, 9, &mut seq));
        let c = run(4_500, 9, 0, 9, &mut seq);
        let inputs = vec![
            ("a".to_owned(), remote(file(&[a.clone(), b.clone()]))),
            ("c".to_owned(), remote(file(std::slice::from_ref(&c)))),
        ];
        let (got, _) = merged(inputs, &[]);
        assert_eq!(got, [a, b, c].concat());
    }

    /// Inputs of two schemas are refused, naming the file.
    #[test]
    fn inputs_of_another_schema_are_refused() {
        let mut seq = 0;
        let other = Arc::new(Schema::new(vec![Field::new("seq", DataType::Int64, false)]));
        let odd =
            RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![1_i64]))]).unwrap();
        let out = crate::writer::encode_row_groups(&[odd], &Provenance::of_test(REQUESTS));
        let inputs = vec![
            (
                "good".to_owned(),
                remote(file(&[run(10, 1, 0, 5, &mut seq)])),
            ),
            ("odd.parquet".to_owned(), remote(out.into())),
        ];
        let err = open(inputs, sort_key(REQUESTS)).err().expect("refused");
        assert!(err.to_string().contains("odd.parquet"), "{err}");
    }

    /// A file in object storage is read a row group at a time: its footer in one GET, then
    /// each row group's column chunks when its run reaches it, never the file whole.
    #[test]
    fn object_storage_is_read_a_row_group_at_a_time() {
        let mut seq = 0;
        let groups: Vec<Vec<Row>> = (0..6)
            .map(|g| run(4_000, 30 + g, 0, 500, &mut seq))
            .collect();
        let bytes = file(&groups);
        let metadata = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::default()).unwrap();
        let row_group_bytes: Vec<u64> = metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.compressed_size() as u64)
            .collect();
        assert_eq!(row_group_bytes.len(), 6);
        let largest = *row_group_bytes.iter().max().unwrap();
        assert!(
            largest * 4 < bytes.len() as u64,
            "row groups a fraction of the file"
        );
        let store = Arc::new(Counted::default());
        let input = remote_in(store.clone(), bytes.clone());
        let merge = open(vec![("f".to_owned(), input)], sort_key(REQUESTS))
            .unwrap()
            .unwrap();
        // Opened: the footer, and each run's first row group.
        let got: Vec<Row> = merge.flat_map(|b| rows_of(&b.unwrap())).collect();
        let mut expected: Vec<Row> = groups.concat();
        expected.sort_by(|a, b| (&a.0, &a.1, &a.2, &a.3, a.4).cmp(&(&b.0, &b.1, &b.2, &b.3, b.4)));
        assert!(got == expected);
        let gets = store.gets.lock().unwrap().clone();
        assert_eq!(gets[0], FOOTER_HINT.min(bytes.len()) as u64, "{gets:?}");
        assert!(
            gets[1..].iter().all(|&n| n <= largest),
            "a GET larger than a row group ({largest} bytes): {gets:?}"
        );
        let fetched: u64 = gets[1..].iter().sum();
        assert_eq!(fetched, row_group_bytes.iter().sum::<u64>(), "{gets:?}");
    }

    /// Every merge runs on the one merge thread, whichever task asks, with the caller's
    /// runtime entered; a merge's panic is its caller's, and the thread goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn merges_run_on_one_thread_with_the_runtime_entered() {
        let asked: Vec<_> = (0..8)
            .map(|i| {
                tokio::spawn(on_merge_thread(move || {
                    let fetched = tokio::runtime::Handle::current().block_on(async move { i * 2 });
                    let me = std::thread::current();
                    (me.id(), me.name().map(str::to_owned), fetched)
                }))
            })
            .collect();
        let mut threads = std::collections::BTreeSet::new();
        for (i, task) in asked.into_iter().enumerate() {
            let (id, name, fetched) = task.await.unwrap();
            assert_eq!(name.as_deref(), Some("nines-merge"));
            assert_eq!(fetched, i * 2);
            threads.insert(format!("{id:?}"));
        }
        assert_eq!(threads.len(), 1, "{threads:?}");
        let failed = tokio::spawn(on_merge_thread(|| panic!("a merge failed"))).await;
        assert!(failed.unwrap_err().is_panic());
        let after = on_merge_thread(|| format!("{:?}", std::thread::current().id())).await;
        assert!(threads.contains(&after), "{after} not in {threads:?}");
    }
}
