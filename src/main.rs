//! `nines`: one binary, every role. See README.md for the two commands and ARCHITECTURE.md for
//! the map.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

mod admin;
mod bench_cmd;
mod bench_report;
mod bench_slo;
mod config;
mod dora_cmd;
mod gen_cmd;
mod metrics;
mod release_cmd;
mod report_cmd;
mod report_html;
mod roles;
mod rows;
mod sla_cmd;
mod slo_cmd;
mod slo_live;
mod sql_cmd;

use config::Config;

/// tansu's and delta-rs's own INFO lines are per request and per commit (delta-rs's include
/// a dump of the whole snapshot): warnings only.
const DEFAULT_LOG: &str = "info,tansu_broker=warn,tansu_storage=warn,tansu_sans_io=warn,\
     tansu_schema=warn,buoyant_kernel=warn,deltalake_core=warn";

#[derive(Debug, Parser)]
#[command(
    name = "nines",
    version,
    about = "SLIs, SLOs, error budgets and DORA from one stream of facts"
)]
struct Cli {
    /// Configuration file (TOML); environment variables NINES__SECTION__KEY override it.
    #[arg(long, global = true, env = "NINES_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `nines=debug` (the embedded broker logs at `warn` unless
    /// its `tansu_*` targets are named).
    #[arg(long, global = true, env = "NINES_LOG", default_value = DEFAULT_LOG)]
    log: String,
    /// Data directory (tables, checkpoints, embedded broker); overrides `data_dir`.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct KafkaArg {
    /// External Kafka (`host:port`); without it the embedded broker is used.
    #[arg(long)]
    kafka: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every role in one process: embedded broker (unless --kafka), ingest, aggregate, and
    /// the query server (unless `query.listen` is empty).
    Up {
        #[command(flatten)]
        kafka: KafkaArg,
    },
    /// Only the embedded Kafka-protocol broker.
    Broker,
    /// Only the gRPC ingest front door.
    Ingest {
        #[command(flatten)]
        kafka: KafkaArg,
    },
    /// Only the aggregator (consume, roll up, write Parquet, commit).
    Aggregate {
        #[command(flatten)]
        kafka: KafkaArg,
    },
    /// Only the query server: Flight SQL and `POST /v1/sql` on `query.listen`, over the
    /// tables in `storage` (docs/query.md).
    Query,
    /// Run SQL over the tables: one statement, or `;`-terminated statements from stdin.
    Sql {
        /// The statement, e.g. "SELECT service, sum(total) FROM sli_1m GROUP BY service".
        /// Without it, statements are read from standard input.
        query: Option<String>,
        /// `json` is one array of objects; `jsonl` one object per line; `arrow` an Arrow
        /// IPC stream.
        #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
        format: SqlFormat,
    },
    /// Send generated traffic over the native API and print exactly what was sent.
    Gen(gen_cmd::GenArgs),
    /// Measure every stage on the embedded broker beside its baseline (BENCHMARKS.md).
    Bench(bench_cmd::BenchArgs),
    /// Compact every table (small files of a day into files of `storage.target_file_bytes`),
    /// expire the days `storage.retention` no longer keeps, and vacuum unreferenced files:
    /// what the aggregator does every `storage.interval`, now.
    Compact,
    /// Move a partition's position in every table (its Delta `txn`) to `--to`: the answer
    /// to a partition stalled because its log went backwards (docs/delivery.md). Stop the
    /// aggregators first; no row is removed.
    ResetOffsets {
        /// The partition of the events topic.
        #[arg(long)]
        partition: i32,
        /// The next offset to read (records from it on will be written).
        #[arg(long)]
        to: i64,
    },
    /// The configuration (file < NINES__ environment) and what a role makes of it.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// SLOs from OpenSLO v1 definitions, evaluated over the tables (docs/slo.md).
    #[command(subcommand)]
    Slo(SloCommand),
    /// The DORA metrics over `[--from, --to)` from the deploys and incidents tables, per
    /// service and environment and overall, and the failed deployments with their signals
    /// (docs/dora.md).
    Dora {
        #[command(flatten)]
        deploys: dora_cmd::Selection,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The error budget each deployment in `[--from, --to)` burned, per SLO of its service
    /// (the SLOs under `slo.dir`), flagged deploys first (docs/slo.md).
    Deploys {
        #[command(flatten)]
        deploys: dora_cmd::Selection,
        /// Flag a deploy whose excess burn is above this share of the period's budget
        /// (the Workbook's 6-hour page row spends 5 %).
        #[arg(long, default_value_t = 0.05)]
        flag_above: f64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// A report of a range: every service's SLOs at its end with the alerts that fired, the
    /// budget each deployment burned, and the DORA metrics (docs/report.md).
    Report {
        #[command(flatten)]
        deploys: dora_cmd::Selection,
        /// Flag a deploy whose excess burn is above this share of the period's budget.
        #[arg(long, default_value_t = 0.05)]
        flag_above: f64,
        #[arg(long, value_enum, default_value_t = report_cmd::ReportFormat::Md)]
        format: report_cmd::ReportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// SLAs per customer: definitions under `sla.dir`, and monthly statements (docs/sla.md).
    #[command(subcommand)]
    Sla(SlaCommand),
    /// May this deploy go out? The error-budget policy (`[[gate.policy]]`) applied to the
    /// service's SLOs now: exits 0 (allow) or 1 (deny) with the reasons, 2 if it cannot
    /// tell (docs/release.md).
    Gate {
        #[arg(long)]
        service: String,
        #[arg(long, default_value = "default")]
        environment: String,
        /// The deploy's labels, comma-separated (`hotfix`, `security` pass by default).
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// RFC 3339 instant, or `now`.
        #[arg(long, default_value = "now")]
        at: String,
        /// The version asking to go out (recorded with the decision).
        #[arg(long)]
        version: Option<String>,
        /// Who asks: a pipeline or a person (recorded with the decision).
        #[arg(long)]
        requester: Option<String>,
        /// Do not record this decision in `gate_decisions` (a dry run).
        #[arg(long)]
        no_record: bool,
        /// Ask a running nines (its admin URL, e.g. http://127.0.0.1:9464) instead.
        #[arg(long)]
        server: Option<String>,
        #[arg(long, value_enum, default_value_t = AnswerFormat::Text)]
        format: AnswerFormat,
    },
    /// A candidate version against its baseline over the minutes both served: pass, fail
    /// or inconclusive (exit 0, 1 or 3; 2 if it cannot tell), from errors and latency
    /// sketches (docs/release.md).
    Verdict {
        #[arg(long)]
        service: String,
        #[arg(long)]
        environment: Option<String>,
        #[arg(long)]
        candidate: String,
        #[arg(long)]
        baseline: String,
        /// Start: a duration back from `--to` (`1h`) or an RFC 3339 instant.
        #[arg(long, default_value = "1h")]
        since: String,
        /// End: RFC 3339 instant, or `now`.
        #[arg(long, default_value = "now")]
        to: String,
        /// Ask a running nines (its admin URL, e.g. http://127.0.0.1:9464) instead.
        #[arg(long)]
        server: Option<String>,
        #[arg(long, value_enum, default_value_t = AnswerFormat::Text)]
        format: AnswerFormat,
    },
}

/// How `nines gate` and `nines verdict` print their answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AnswerFormat {
    /// One line: the answer and why.
    Text,
    /// The JSON the HTTP endpoint answers.
    Json,
}

#[derive(Debug, Subcommand)]
enum SloCommand {
    /// Validate definitions: every refusal names the file, document, field and reason.
    /// Exits 1 on any error.
    Check {
        /// Files or directories (default: `slo.dir`).
        paths: Vec<PathBuf>,
    },
    /// Every SLO and objective at an instant: SLI, target, budget remaining, status, burn
    /// rates and firing alerts.
    Status {
        /// RFC 3339 instant, or `now`.
        #[arg(long, default_value = "now")]
        at: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Files or directories (default: `slo.dir`).
        paths: Vec<PathBuf>,
    },
    /// One SLO over a past range: budget and burn rates every `--step`, and the alert
    /// intervals.
    History {
        /// The SLO's `metadata.name`.
        name: String,
        /// RFC 3339 instant.
        #[arg(long)]
        from: String,
        /// RFC 3339 instant, or `now`.
        #[arg(long, default_value = "now")]
        to: String,
        #[arg(long, default_value = "1h")]
        step: humantime::Duration,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Files or directories (default: `slo.dir`).
        #[arg(long)]
        dir: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum SlaCommand {
    /// Validate SLA definitions (and that the SLO each names exists): every refusal names
    /// the file, document, field and reason. Exits 1 on any error.
    Check {
        /// Files or directories (default: `sla.dir`).
        paths: Vec<PathBuf>,
    },
    /// Per customer, for a calendar month in each SLA's time zone: attainment, downtime
    /// against the allowance, the credit tier reached, and the evidence.
    Statement {
        /// The month, `YYYY-MM`.
        #[arg(long)]
        month: String,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t = sla_cmd::SlaFormat::Md)]
        format: sla_cmd::SlaFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Run every check a role runs at start (keys, listen addresses, broker), without
    /// binding or connecting: prints `ok` and a summary, or the error naming the key and
    /// exits 1. Warnings go to stderr.
    Check {
        /// The role to check for, as it would be started (`nines <role>`).
        #[arg(long, value_enum, default_value_t = roles::Role::Up)]
        role: roles::Role,
        #[command(flatten)]
        kafka: KafkaArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

/// `nines sql --format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum SqlFormat {
    Table,
    Csv,
    Json,
    Jsonl,
    Arrow,
}

/// Ends the process with an answer's exit status, or 2 after printing why there is none.
fn exit_with(answer: anyhow::Result<i32>) -> ! {
    match answer {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(release_cmd::EXIT_ERROR);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log).context("--log")?)
        .with_writer(std::io::stderr)
        .init();
    // Crash points for the fault tests (nines_store::faults); inert without FAILPOINTS.
    let _failpoints = fail::FailScenario::setup();
    if let Command::Config(ConfigCommand::Check { role, kafka }) = cli.command {
        let ok = config::check(cli.config.as_deref(), cli.data_dir, role, kafka.kafka);
        std::process::exit(if ok { 0 } else { 1 });
    }
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(d) = cli.data_dir {
        cfg.data_dir = d;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up { kafka } => roles::up(cfg, kafka.kafka).await,
            Command::Broker => roles::broker(cfg).await,
            Command::Ingest { kafka } => roles::ingest(cfg, kafka.kafka).await,
            Command::Aggregate { kafka } => roles::aggregate(cfg, kafka.kafka).await,
            Command::Query => roles::query(cfg).await,
            Command::Sql { query, format } => {
                let format = match format {
                    SqlFormat::Table => nines_query::OutputFormat::Table,
                    SqlFormat::Csv => nines_query::OutputFormat::Csv,
                    SqlFormat::Json => nines_query::OutputFormat::Json,
                    SqlFormat::Jsonl => nines_query::OutputFormat::Jsonl,
                    SqlFormat::Arrow => nines_query::OutputFormat::Arrow,
                };
                sql_cmd::run(&cfg, query.as_deref(), format).await
            }
            Command::Gen(args) => gen_cmd::run(args).await,
            Command::Bench(args) => bench_cmd::run(args).await,
            Command::Compact => {
                let store = roles::open_store(&cfg).await?;
                for (table, r) in nines_pipeline::maintain_once(&store, &cfg.storage).await? {
                    println!(
                        "{table}: {} files; {} small files ({} bytes) rewritten as {} ({} bytes) in {} day(s)",
                        r.files_before,
                        r.files_removed,
                        r.bytes_removed,
                        r.files_added,
                        r.bytes_added,
                        r.partitions
                    );
                }
                Ok(())
            }
            Command::ResetOffsets { partition, to } => {
                let store = roles::open_store(&cfg).await?;
                let topic = &cfg.bus.events_topic;
                let (before, after) = store.reset_partition(topic, partition, to).await?;
                for (table, v) in &before.by_table {
                    println!(
                        "{table}: partition {partition} held up to {}, now up to {}",
                        v.map_or("nothing".into(), |v| v.to_string()),
                        after.by_table[table].map_or("nothing".into(), |v| v.to_string()),
                    );
                }
                Ok(())
            }
            Command::Slo(SloCommand::Check { paths }) => {
                let paths = slo_cmd::paths_or_dir(paths, &cfg.slo.dir);
                if !slo_cmd::check(&paths)? {
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::Slo(SloCommand::Status { at, format, paths }) => {
                let paths = slo_cmd::paths_or_dir(paths, &cfg.slo.dir);
                slo_cmd::status(&cfg, &paths, slo_cmd::parse_instant(&at)?, format).await
            }
            Command::Slo(SloCommand::History {
                name,
                from,
                to,
                step,
                format,
                dir,
            }) => {
                let paths = slo_cmd::paths_or_dir(dir, &cfg.slo.dir);
                let range = (
                    slo_cmd::parse_instant(&from)?,
                    slo_cmd::parse_instant(&to)?,
                    i64::try_from(step.as_secs()).unwrap_or(3_600),
                );
                slo_cmd::history(&cfg, &paths, &name, range, format).await
            }
            Command::Dora { deploys, format } => dora_cmd::run(&cfg, &deploys, format).await,
            Command::Deploys {
                deploys,
                flag_above,
                format,
            } => dora_cmd::deploys(&cfg, &deploys, flag_above, format).await,
            Command::Report {
                deploys,
                flag_above,
                format,
                out,
            } => report_cmd::run(&cfg, &deploys, flag_above, format, out).await,
            Command::Sla(SlaCommand::Check { paths }) => {
                let paths = slo_cmd::paths_or_dir(paths, &cfg.sla.dir);
                if !sla_cmd::check(&cfg, &paths)? {
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::Sla(SlaCommand::Statement {
                month,
                tenant,
                format,
                out,
            }) => sla_cmd::run(&cfg, &month, tenant.as_deref(), format, out.as_deref()).await,
            Command::Gate {
                service,
                environment,
                labels,
                at,
                version,
                requester,
                no_record,
                server,
                format,
            } => {
                let decided = async {
                    let ask = release_cmd::GateAsk {
                        service,
                        environment,
                        labels: labels
                            .into_iter()
                            .map(|l| l.trim().to_owned())
                            .filter(|l| !l.is_empty())
                            .collect(),
                        at: slo_cmd::parse_instant(&at)?,
                        version,
                        requester,
                        record: !no_record,
                    };
                    release_cmd::gate(&cfg, &ask, server.as_deref(), format == AnswerFormat::Json)
                        .await
                };
                exit_with(decided.await)
            }
            Command::Verdict {
                service,
                environment,
                candidate,
                baseline,
                since,
                to,
                server,
                format,
            } => {
                let judged = async {
                    let to = slo_cmd::parse_instant(&to)?;
                    let ask = release_cmd::VerdictAsk {
                        service,
                        environment,
                        candidate,
                        baseline,
                        from: release_cmd::parse_since(&since, to)?,
                        to,
                    };
                    release_cmd::verdict(&cfg, &ask, server.as_deref(), format == AnswerFormat::Json)
                        .await
                };
                exit_with(judged.await)
            }
            Command::Config(_) => unreachable!("handled before the configuration is loaded"),
        }
    })
}
