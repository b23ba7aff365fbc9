use std::path::PathBuf;

/// Store failures. All of them are internal (disk, corrupt state), none is the caller's input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parquet {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{op} Delta table {table}: {source}")]
    Delta {
        table: String,
        op: &'static str,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    #[error("object store, {path}: {source}")]
    ObjectStore {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// Another writer changed the table first (a racing compaction, an aggregator during
    /// `reset-offsets`): nothing was committed; try again.
    #[error("table {table}: {reason}")]
    Conflict { table: String, reason: String },
    #[error("storage location {location}: {reason}")]
    Location { location: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn io(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.to_owned(),
            source,
        })
    }
}
