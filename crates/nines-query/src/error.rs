/// Query failures. [`Error::code`] classifies them for callers (the HTTP error's `code`, the
/// gRPC status, the metrics' `reason`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL is wrong (parse or plan error): the user's to fix.
    #[error("{0}")]
    Sql(String),
    /// A statement that would change something (or read beyond the tables).
    #[error("{0} is refused: nines SQL is read-only (SELECT, WITH, EXPLAIN, SHOW and DESCRIBE)")]
    ReadOnly(String),
    #[error(
        "the query needs more memory than the {limit} bytes a query may use (query.limits.max_memory_bytes): {detail}"
    )]
    Memory { limit: usize, detail: String },
    #[error("the query ran longer than {0:?} (query.limits.timeout) and was cancelled")]
    Timeout(std::time::Duration),
    #[error(
        "the result has more than {0} rows (query.limits.max_result_rows): add a LIMIT or aggregate"
    )]
    TooManyRows(usize),
    #[error(
        "the result takes more than {0} bytes (query.limits.max_result_bytes): select fewer columns or rows"
    )]
    TooManyBytes(usize),
    #[error(
        "{0} queries are running, the most this node runs at once (query.limits.max_concurrent_queries): retry shortly"
    )]
    Busy(usize),
    /// A missing, unknown or forged credential or ticket.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("query failed: {0}")]
    Execution(#[from] datafusion::error::DataFusionError),
    #[error("opening table {0}: {1}")]
    Table(String, String),
    #[error("formatting result: {0}")]
    Format(#[from] arrow::error::ArrowError),
}

impl Error {
    /// A stable name of the failure's cause (docs/query.md lists them).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Sql(_) => "sql_error",
            Self::ReadOnly(_) => "read_only",
            Self::Memory { .. } => "memory_limit",
            Self::Timeout(_) => "timeout",
            Self::TooManyRows(_) => "row_limit",
            Self::TooManyBytes(_) => "byte_limit",
            Self::Busy(_) => "too_many_queries",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Execution(_) => "execution_error",
            Self::Table(..) | Self::Format(_) => "internal",
        }
    }

    /// Whether the caller's query (or credential) is at fault, rather than nines.
    pub fn is_callers(&self) -> bool {
        !matches!(self, Self::Table(..) | Self::Format(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
