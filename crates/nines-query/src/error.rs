/// Query failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL is wrong (parse or plan error): the user's to fix.
    #[error("{0}")]
    Sql(String),
    #[error("query failed: {0}")]
    Execution(#[from] datafusion::error::DataFusionError),
    #[error("opening table {0}: {1}")]
    Table(String, String),
    #[error("formatting result: {0}")]
    Format(#[from] arrow::error::ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
