//! `nines bench`: the pipeline on the embedded broker of this machine, stage by stage, each
//! beside its baseline measured in the same run (BENCHMARKS.md).
//!
//! Every role runs as its own process of this binary, so CPU seconds (the role's own
//! `process_cpu_seconds_total`) and peak RSS (`VmHWM`) are per role. Stages:
//!
//! 1. produce: the exact records ingest would write, sent by a bare producer with ingest's
//!    settings to a topic of their own on the same broker (the ingest ceiling);
//! 2. ingest: the same events pushed over gRPC by a retrying sender (pushes made before the
//!    clock starts, as the bare producer's records are), acknowledged end to end;
//!    then as many spans as OTLP trace exports to a second ingest writing a topic of its own;
//! 3. consume: a plain consumer reading the events topic (the aggregator ceiling);
//! 4. aggregate: an aggregator working off the backlog until every event is durable;
//!    then a new one with default settings for the freshness stage;
//! 5. freshness: load at a fixed rate with probe pushes; push acknowledged → visible in SQL;
//! 6. query: a 30-day availability question over `sli_1m` and over `requests`, and the same
//!    in DuckDB over the same files when its Python package is installed (`NINES_BENCH_PYTHON`
//!    or `python3`), and three more questions of `requests` beside DuckDB (top operations by
//!    errors, p99 per service per hour, errors per deploy over deploys the bench writes);
//!    each question from `requests` also in DataFusion alone over the same files, the engine
//!    without nines around it;
//!    then `nines compact` in a process of its own (its time and peak RSS), the files and
//!    bytes per event before and after it, and the same questions over the compacted tables.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nines_model::clock::now_ns;

use anyhow::{Context, bail};
use comfy_table::{Table, presets::ASCII_MARKDOWN};
use futures::StreamExt;
use nines_bus::BusConfig;
use nines_bus::config::Compression;
use nines_bus::producer::AckProducer;
use nines_ingest::config::Limits;
use nines_ingest::validate::validate;
use nines_record::cut;
use nines_testkit::config::RoleConfig;
use nines_testkit::process::{Process, free_port, metric};
use nines_testkit::sender::{Progress, SendPlan, quantile, send};
use nines_testkit::{Generator, WorkloadSpec};

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Events through each throughput stage.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// About a minute in all: 300,000 events, a 10 s freshness phase.
    #[arg(long)]
    quick: bool,
    /// Events per push.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Pushes in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Days the events' times spread over. The query stage always asks about the last 30
    /// days; how much faster rollups answer depends on events per minute and operation, so
    /// spreading a few million events over 30 days (two per minute and operation) understates
    /// what a real service's rollups save.
    #[arg(long, default_value_t = 1)]
    days: u64,
    /// Events per second during the freshness stage.
    #[arg(long, default_value_t = 100_000)]
    fresh_rate: u64,
    /// Seconds of the freshness stage.
    #[arg(long, default_value_t = 30)]
    fresh_secs: u64,
    /// `bus.compression` for every role and the bare producer (none, lz4, zstd, ...).
    #[arg(long, default_value_t = BusConfig::default().compression)]
    compression: Compression,
    /// Keep the data here instead of a temporary directory.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Only the SLO stage: `nines slo status` of 200 SLOs over 30 days of `sli_1m`, beside
    /// one GROUP BY computing the same SLIs (src/bench_slo.rs).
    #[arg(long)]
    slo: bool,
    /// Only the report stage: `nines report --format html` over 30 days of 50 services,
    /// beside the SQL it needs (src/bench_report.rs).
    #[arg(long)]
    report: bool,
}

const SEED: u64 = 5;
const SERVICES: usize = 6;

/// One row of the report.
struct Row {
    stage: &'static str,
    events_per_s: f64,
    cpu_per_m: Option<f64>,
    baseline: Option<(&'static str, f64)>,
    note: String,
}

/// The report's rows, each also printed as its stage ends (a failing later stage keeps them).
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn push(&mut self, row: Row) {
        eprintln!(
            "  {}: {:.0} events/s{}; {}",
            row.stage,
            row.events_per_s,
            row.cpu_per_m
                .map_or(String::new(), |c| format!(", {c:.2} CPU s per M")),
            row.note
        );
        self.rows.push(row);
    }
}

struct Roles {
    dir: PathBuf,
    broker_port: u16,
    ingest_port: u16,
    /// `bus.compression` of every role and of the bare producer.
    compression: Compression,
}

impl Roles {
    /// A role's config file: the shared data directory and broker, `ingest_port` for ingest,
    /// its own admin port, and `settings` (dotted keys) over those.
    fn config(
        &self,
        name: &str,
        ingest_port: u16,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<(PathBuf, u16)> {
        let admin = free_port();
        let mut cfg = RoleConfig::new(&self.dir.join("data"), self.broker_port, ingest_port, admin)
            .set("ingest.max_event_age", "40days")
            .set("bus.compression", self.compression.to_string());
        for (key, value) in settings {
            cfg = cfg.set(key, *value);
        }
        let path = self.dir.join(format!("{name}.toml"));
        cfg.write(&path)?;
        Ok((path, admin))
    }

    fn start(&self, name: &str, args: &[&str]) -> anyhow::Result<Process> {
        self.start_with(name, args, self.ingest_port, &[])
    }

    fn start_with(
        &self,
        name: &str,
        args: &[&str],
        ingest_port: u16,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Process> {
        let (config, admin) = self.config(name, ingest_port, settings)?;
        let log = self.dir.join(format!("{name}.log"));
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("--config")
            .arg(&config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        Ok(Process::start(
            name,
            cmd,
            admin,
            log,
            Duration::from_secs(120),
        ))
    }

    fn kafka(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// The `aggregate.flush_interval` a started role runs with, in seconds: its file under
    /// the environment (`NINES__AGGREGATE__FLUSH_INTERVAL` overrides it), as the role reads it.
    fn flush_interval_s(&self, name: &str) -> anyhow::Result<f64> {
        let file = self.dir.join(format!("{name}.toml"));
        let cfg = crate::config::Config::load(Some(&file))?;
        Ok(cfg.aggregate.flush_interval.as_secs_f64())
    }
}

fn cpu_seconds(p: &Process) -> f64 {
    metric(&p.metrics(), "process_cpu_seconds_total", "").unwrap_or(f64::NAN)
}

fn peak_mib(p: &Process) -> f64 {
    p.rss()
        .map_or(f64::NAN, |(_, peak)| peak as f64 / (1024.0 * 1024.0))
}

pub(crate) async fn run(mut args: BenchArgs) -> anyhow::Result<()> {
    if args.slo {
        return crate::bench_slo::run(args.keep.as_deref()).await;
    }
    if args.report {
        return crate::bench_report::run(args.keep.as_deref()).await;
    }
    if args.quick {
        args.events = 300_000;
        args.fresh_secs = 10;
        args.fresh_rate = args.fresh_rate.min(50_000);
    }
    let temp = tempfile_dir(args.keep.as_deref())?;
    let roles = Roles {
        dir: temp.clone(),
        broker_port: free_port(),
        ingest_port: free_port(),
        compression: args.compression,
    };
    let history = Duration::from_secs(args.days * 86_400);
    let started = Instant::now();
    let mut rows = Report::default();
    println!(
        "nines bench: {} events, {} per push, {} in flight, times over {} days, {} compression, data in {}",
        args.events,
        args.batch,
        args.concurrency,
        args.days,
        args.compression,
        temp.display()
    );

    let broker = roles.start("broker", &["broker"])?;
    let kafka = roles.kafka();

    // 1. The bare producer: ingest's own records, made here the way ingest makes them.
    let bus = BusConfig {
        compression: args.compression,
        ..BusConfig::default()
    };
    let records = records_like_ingest(&args, history)?;
    let bytes: usize = records.iter().map(|(_, r)| r.len()).sum();
    let baseline_topic = BusConfig {
        events_topic: "nines.bench-baseline".into(),
        dead_letter_topic: "nines.bench-baseline-dead".into(),
        ..bus.clone()
    };
    nines_bus::admin::ensure_topics(&baseline_topic, &kafka, Duration::from_secs(60)).await?;
    let broker_cpu0 = cpu_seconds(&broker);
    let producer = AckProducer::new(&bus, &kafka)?;
    let t = Instant::now();
    // As many records in flight as the sender has pushes in flight (a push of `batch`
    // events is one record): the same bytes, the same concurrency.
    let mut sends = futures::stream::iter(
        records
            .iter()
            .map(|(key, r)| producer.send("nines.bench-baseline", key, r)),
    )
    .buffer_unordered(args.concurrency.max(1));
    while let Some(r) = sends.next().await {
        r.context("bare producer")?;
    }
    drop(sends);
    let produce_s = t.elapsed().as_secs_f64();
    let bare_produce = args.events as f64 / produce_s;
    let broker_cpu_produce = cpu_seconds(&broker) - broker_cpu0;
    drop(producer);
    rows.push(Row {
        stage: "bare producer (baseline)",
        events_per_s: bare_produce,
        cpu_per_m: None,
        baseline: None,
        note: format!(
            "{} records, {:.1} MiB; broker {:.2} CPU s per M events",
            records.len(),
            bytes as f64 / 1048576.0,
            broker_cpu_produce / args.events as f64 * 1e6
        ),
    });

    // 2. Ingest: the same events over gRPC.
    let ingest = roles.start("ingest", &["ingest", "--kafka", &kafka])?;
    let (ingest_cpu0, broker_cpu0) = (cpu_seconds(&ingest), cpu_seconds(&broker));
    let report = send(
        format!("http://127.0.0.1:{}", roles.ingest_port),
        generator(),
        SendPlan {
            events: args.events,
            batch: args.batch,
            services: SERVICES,
            concurrency: args.concurrency,
            history,
            // Made before the clock starts, like the bare producer's records.
            pregenerate: true,
            ..SendPlan::default()
        },
        Progress::default(),
    )
    .await;
    if report.abandoned > 0 {
        bail!("{} pushes were never acknowledged", report.abandoned);
    }
    let ingest_rate = args.events as f64 / report.elapsed.as_secs_f64();
    let ingest_cpu = cpu_seconds(&ingest) - ingest_cpu0;
    let broker_cpu_ingest = cpu_seconds(&broker) - broker_cpu0;
    rows.push(Row {
        stage: "ingest (gRPC → acked in Kafka)",
        events_per_s: ingest_rate,
        cpu_per_m: Some(ingest_cpu / args.events as f64 * 1e6),
        baseline: Some(("bare producer", bare_produce)),
        note: format!(
            "ack p50 {:.1} ms p99 {:.1} ms; {} retries; broker {:.2} CPU s per M; ingest peak RSS {:.0} MiB",
            report.ack_latency(0.5).as_secs_f64() * 1e3,
            report.ack_latency(0.99).as_secs_f64() * 1e3,
            report.retries,
            broker_cpu_ingest / args.events as f64 * 1e6,
            peak_mib(&ingest)
        ),
    });

    // 2b. OTLP over gRPC, into a topic of its own so the aggregator stages never see it.
    otlp(&roles, &args, ingest_rate, &mut rows).await?;

    // 3. The bare consumer over the events topic.
    let kafka2 = kafka.clone();
    let drained = tokio::task::spawn_blocking(move || {
        nines_bus::drain::drain(
            &kafka2,
            &bus.events_topic,
            bus.partitions,
            Duration::from_secs(600),
        )
    })
    .await??;
    let bare_consume = args.events as f64 / drained.elapsed.as_secs_f64();
    rows.push(Row {
        stage: "bare consumer (baseline)",
        events_per_s: bare_consume,
        cpu_per_m: None,
        baseline: None,
        note: format!(
            "{} records, {:.1} MiB",
            drained.records,
            drained.bytes as f64 / 1048576.0
        ),
    });

    // 4. Aggregate the backlog: Kafka → durable Parquet in both tables. Full buffers flush at
    // flush_events either way; a short flush_interval (set here, whatever the default) only
    // keeps the last partial buffers from waiting out a longer one once the backlog is
    // consumed, which would measure the interval rather than the aggregator. Timed from its first record (the group join
    // before it is reported apart) to the last event durable.
    let t = Instant::now();
    let backlog = roles.start_with(
        "aggregate-backlog",
        &["aggregate", "--kafka", &kafka],
        roles.ingest_port,
        &[("aggregate.flush_interval", "500ms")],
    )?;
    let agg_cpu0 = cpu_seconds(&backlog);
    let ready_after = t.elapsed();
    let mut first_record: Option<Instant> = None;
    // When the last of the backlog's records was read: what is left after it is the last
    // buffers waiting out `flush_interval` and their flush, which the bare consumer does not
    // have.
    let mut last_record: Option<Instant> = None;
    loop {
        let text = backlog.metrics();
        let records = metric(&text, "nines_aggregate_records_total", "").unwrap_or(0.0);
        if first_record.is_none() && records > 0.0 {
            first_record = Some(Instant::now());
        }
        if last_record.is_none() && records >= drained.records as f64 {
            last_record = Some(Instant::now());
        }
        let done = metric(&text, "nines_aggregate_events_total", "").unwrap_or(0.0);
        if done >= args.events as f64 {
            break;
        }
        if t.elapsed() > Duration::from_secs(1800) {
            bail!(
                "aggregation did not finish: {done} of {} events durable",
                args.events
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let durable = Instant::now();
    let first_record = first_record.unwrap_or(t);
    let last_record = last_record.unwrap_or(durable);
    let agg_s = (durable - first_record).as_secs_f64();
    let read_s = (last_record - first_record).as_secs_f64().max(1e-3);
    let agg_cpu = cpu_seconds(&backlog) - agg_cpu0;
    rows.push(Row {
        stage: "aggregate (Kafka → durable Parquet)",
        events_per_s: args.events as f64 / agg_s,
        cpu_per_m: Some(agg_cpu / args.events as f64 * 1e6),
        baseline: Some(("bare consumer", bare_consume)),
        note: format!(
            "ready in {:.1} s, first record {:.1} s later (neither counted); last record read {:.2} s after the first ({:.2}× the bare consumer's reading), durable {:.2} s after it; flush_interval {} s; peak RSS {:.0} MiB",
            ready_after.as_secs_f64(),
            (first_record - t).as_secs_f64() - ready_after.as_secs_f64(),
            read_s,
            drained.elapsed.as_secs_f64() / read_s,
            (durable - last_record).as_secs_f64(),
            roles.flush_interval_s("aggregate-backlog")?,
            peak_mib(&backlog)
        ),
    });
    let backlog_aggregate_peak = peak_mib(&backlog);
    let mut backlog = backlog;
    tokio::task::block_in_place(|| backlog.terminate());

    // 5. Freshness at a fixed rate, default settings, with a new aggregator (the backlog is
    // durable, so it starts at the end). Peak RSS of this phase alone: the target is memory
    // at a steady rate, not after a backlog.
    let aggregate = roles.start("aggregate", &["aggregate", "--kafka", &kafka])?;
    let backlog_ingest_peak = peak_mib(&ingest);
    for p in [&broker, &ingest] {
        p.reset_peak_rss().context("resetting peak RSS")?;
    }
    let fresh_cpu0 = cpu_seconds(&aggregate);
    let mut fresh = freshness(&roles, &args).await?;
    // The steady-state cost of flushing this often: the aggregator's CPU over the phase
    // (its start excluded), per million events sent in it.
    let fresh_cpu = cpu_seconds(&aggregate) - fresh_cpu0;
    fresh.note.push_str(&format!(
        "; aggregate CPU in this phase {:.2} s per M events; peak RSS in this phase: broker {:.0} MiB, ingest {:.0} MiB, aggregate {:.0} MiB",
        fresh_cpu / (args.fresh_rate * args.fresh_secs) as f64 * 1e6,
        peak_mib(&broker),
        peak_mib(&ingest),
        peak_mib(&aggregate)
    ));
    rows.push(fresh);

    // 6. The 30-day question, from rollups and from raw rows, once everything is durable (a
    // query during a flush can see a `requests` file before its `sli_1m` twin).
    let mut aggregate = aggregate;
    let mut ingest = ingest;
    tokio::task::block_in_place(|| {
        ingest.terminate();
        aggregate.terminate();
    });
    let store = nines_store::Store::open_dir(temp.join("data")).await?;
    write_deploys(&store, history).await?;
    let before = files_per_event(&store, args.events).await?;
    for row in query(&store, args.events, false).await? {
        rows.push(row);
    }
    let (compact_s, peak) = tokio::task::block_in_place(|| compact(&roles))?;
    let after = files_per_event(&store, args.events).await?;
    rows.push(Row {
        stage: "compaction (all tables, default target 128 MiB)",
        events_per_s: args.events as f64 / compact_s,
        cpu_per_m: None,
        baseline: None,
        note: format!(
            "{compact_s:.1} s of `nines compact`, peak RSS {:.0} MiB; before: {before}; after: {after}",
            peak as f64 / (1024.0 * 1024.0)
        ),
    });
    for row in query(&store, args.events, true).await? {
        rows.push(row);
    }

    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN).set_header([
        "stage",
        "events/s",
        "CPU s per M events",
        "ratio to baseline",
        "notes",
    ]);
    for r in &rows.rows {
        table.add_row([
            r.stage.to_owned(),
            if r.events_per_s.is_nan() {
                "-".into()
            } else {
                format!("{:.0}", r.events_per_s)
            },
            r.cpu_per_m.map_or("-".into(), |c| format!("{c:.2}")),
            r.baseline.map_or("-".into(), |(name, b)| {
                format!("{:.2}× {name}", r.events_per_s / b)
            }),
            r.note.clone(),
        ]);
    }
    println!("{table}");
    println!(
        "peak RSS up to the freshness phase: ingest {backlog_ingest_peak:.0} MiB, aggregate {backlog_aggregate_peak:.0} MiB; total {:.0} s",
        started.elapsed().as_secs_f64()
    );
    drop((aggregate, ingest, broker));
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    Ok(())
}

fn tempfile_dir(keep: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match keep {
        Some(d) => d.to_owned(),
        None => std::env::temp_dir().join(format!("nines-bench-{}", std::process::id())),
    };
    if dir.exists() {
        bail!("{} exists; choose an empty directory", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn generator() -> Generator {
    Generator::new(WorkloadSpec {
        services: SERVICES,
        seed: SEED,
        ..WorkloadSpec::default()
    })
}

/// The records ingest writes for the bench's events: same generator, validation and cutting.
fn records_like_ingest(
    args: &BenchArgs,
    history: Duration,
) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut generator = generator();
    let limits = Limits {
        max_event_age: Duration::from_secs(40 * 86_400),
        ..Limits::default()
    };
    let max_record = BusConfig::default().max_record_bytes;
    let now = now_ns();
    let (mut sent, mut service, mut out) = (0_u64, 0_usize, Vec::new());
    while sent < args.events {
        let n = args.batch.min((args.events - sent) as usize);
        let back = history.mul_f64(1.0 - sent as f64 / args.events as f64);
        let mut push = generator.push(service % SERVICES, n, now - back.as_nanos() as i64);
        service += 1;
        sent += n as u64;
        validate(&mut push, &limits, now)?;
        let r = push.resource.as_ref().expect("validated");
        let key = nines_record::key(&r.tenant, &r.service);
        for record in cut(push, now, max_record)? {
            out.push((key.clone(), record));
        }
    }
    Ok(out)
}

/// Spans per OTLP export in the OTLP stage (the size the hot-path bench uses).
const SPANS_PER_EXPORT: usize = 512;

/// OTLP trace exports over gRPC to a second ingest writing its own topic: spans/s, ingest
/// CPU s per M spans, against native ingest of the same number of events in this run. Then
/// the same spans' events, mapped once here, sent to the same ingest as native pushes: what
/// taking those events costs without OTLP, so the OTLP door's own share shows.
async fn otlp(
    roles: &Roles,
    args: &BenchArgs,
    native_rate: f64,
    rows: &mut Report,
) -> anyhow::Result<()> {
    use nines_ingest::otlp_wire::map_trace_export;
    use nines_proto::v1::PushResponse;
    use nines_testkit::otlp::trace_export;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use prost::Message;

    let bus = BusConfig {
        events_topic: "nines.bench-otlp".into(),
        dead_letter_topic: "nines.bench-otlp-dead".into(),
        ..BusConfig::default()
    };
    nines_bus::admin::ensure_topics(&bus, &roles.kafka(), Duration::from_secs(60)).await?;
    let port = free_port();
    let ingest = roles.start_with(
        "ingest-otlp",
        &["ingest", "--kafka", &roles.kafka()],
        port,
        &[
            ("bus.events_topic", &bus.events_topic),
            ("bus.dead_letter_topic", &bus.dead_letter_topic),
        ],
    )?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await?;
    let grpc = tonic::client::Grpc::new(channel);
    let end = now_ns() as u64 - 1_000_000_000;
    // A few distinct exports, encoded once and reused, as the native stage's pushes are: the
    // sender's CPU stays small next to ingest's.
    let exports: Vec<bytes::Bytes> = (0..16_u128)
        .map(|i| {
            let service = format!("otlp-{}", i % SERVICES as u128);
            let export = trace_export(
                &service,
                SPANS_PER_EXPORT,
                end - i as u64 * 1_000_000,
                i << 32,
            );
            export.encode_to_vec().into()
        })
        .collect();
    let n = args.events.div_ceil(SPANS_PER_EXPORT as u64) as usize;
    let spans = (n * SPANS_PER_EXPORT) as f64;
    let cpu0 = cpu_seconds(&ingest);
    let t = Instant::now();
    let path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    let answers = raw_calls(&grpc, path, &exports, n, args.concurrency);
    futures::pin_mut!(answers);
    while let Some(answer) = answers.next().await {
        let answer = ExportTraceServiceResponse::decode(answer.context("OTLP export")?)
            .context("OTLP export: the answer")?;
        if let Some(p) = answer.partial_success.filter(|p| p.rejected_spans > 0) {
            bail!(
                "ingest rejected {} spans: {}",
                p.rejected_spans,
                p.error_message
            );
        }
    }
    let rate = spans / t.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&ingest) - cpu0;
    let peak = peak_mib(&ingest);
    rows.push(Row {
        stage: "ingest OTLP traces (gRPC → acked in Kafka)",
        events_per_s: rate,
        cpu_per_m: Some(cpu / spans * 1e6),
        baseline: Some(("native ingest", native_rate)),
        note: format!(
            "{n} exports of {SPANS_PER_EXPORT} SERVER spans, {} in flight; {:.0} spans/s per ingest core; peak RSS {peak:.0} MiB",
            args.concurrency,
            spans / cpu
        ),
    });

    // The same events as native pushes (one per export, mapped before the clock starts).
    let limits = Limits::default();
    let pushes = exports
        .iter()
        .map(|e| {
            let mapped = map_trace_export(e, &limits, now_ns())?.to_pushes();
            let [push] = mapped.pushes.as_slice() else {
                bail!("an export of one resource maps to one push");
            };
            Ok(bytes::Bytes::from(push.encode_to_vec()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cpu0 = cpu_seconds(&ingest);
    let t = Instant::now();
    let answers = raw_calls(
        &grpc,
        "/nines.v1.IngestService/Push",
        &pushes,
        n,
        args.concurrency,
    );
    futures::pin_mut!(answers);
    while let Some(answer) = answers.next().await {
        let answer = PushResponse::decode(answer.context("native push of the OTLP events")?)
            .context("native push: the answer")?;
        if answer.accepted_requests != SPANS_PER_EXPORT as u64 {
            bail!("a native push of the OTLP events was not taken whole: {answer:?}");
        }
    }
    let native_same = spans / t.elapsed().as_secs_f64();
    let native_cpu = cpu_seconds(&ingest) - cpu0;
    let mut ingest = ingest;
    tokio::task::block_in_place(|| ingest.terminate());
    rows.push(Row {
        stage: "ingest of the OTLP spans' events, native (gRPC → acked in Kafka)",
        events_per_s: native_same,
        cpu_per_m: Some(native_cpu / spans * 1e6),
        baseline: None,
        note: format!(
            "{n} pushes of the {SPANS_PER_EXPORT} events the OTLP stage's exports map to; {:.0} events/s per ingest core; the OTLP door takes {:.2}× its CPU per event",
            spans / native_cpu,
            cpu / native_cpu
        ),
    });
    Ok(())
}

/// `n` unary calls to `path`, cycling over `bodies` (encoded already), `concurrency` in
/// flight: the answers' bytes, as they come.
fn raw_calls<'a>(
    grpc: &'a tonic::client::Grpc<tonic::transport::Channel>,
    path: &'static str,
    bodies: &'a [bytes::Bytes],
    n: usize,
    concurrency: usize,
) -> impl futures::Stream<Item = Result<bytes::Bytes, tonic::Status>> + 'a {
    use nines_testkit::retry::RawCodec;
    use tonic::codegen::http::uri::PathAndQuery;
    futures::stream::iter((0..n).map(move |i| {
        let mut grpc = grpc.clone();
        let request = tonic::Request::new(bodies[i % bodies.len()].clone());
        async move {
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unknown(e.to_string()))?;
            grpc.unary(request, PathAndQuery::from_static(path), RawCodec)
                .await
                .map(tonic::Response::into_inner)
        }
    }))
    .buffer_unordered(concurrency.max(1))
}

/// A probe push every 100 ms: ~300 over the default 30 s, so the p99 is not simply the
/// slowest probe (with one every 0.5 s, 60 probes, it was).
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Pause between two polls of `requests` for the probes (each poll takes ~10 ms here).
const POLL_EVERY: Duration = Duration::from_millis(50);

async fn freshness(roles: &Roles, args: &BenchArgs) -> anyhow::Result<Row> {
    let store = nines_store::Store::open_dir(roles.dir.join("data")).await?;
    let engine = nines_query::QueryEngine::new(&store).await?;
    let endpoint = format!("http://127.0.0.1:{}", roles.ingest_port);
    let events = args.fresh_rate * args.fresh_secs;
    let load = tokio::spawn(send(
        endpoint.clone(),
        Generator::new(WorkloadSpec {
            services: SERVICES,
            seed: SEED + 1,
            ..WorkloadSpec::default()
        }),
        SendPlan {
            events,
            batch: args.batch,
            services: SERVICES,
            concurrency: args.concurrency,
            rate: Some(args.fresh_rate),
            ..SendPlan::default()
        },
        Progress::default(),
    ));
    let mut client =
        nines_proto::v1::ingest_service_client::IngestServiceClient::connect(endpoint).await?;
    let mut acked: Vec<(String, Instant)> = Vec::new();
    let mut seen: Vec<Duration> = Vec::new();
    let t = Instant::now();
    let mut probe = 0_u64;
    let mut next_probe = Instant::now();
    while t.elapsed() < Duration::from_secs(args.fresh_secs) || seen.len() < acked.len() {
        if t.elapsed() > Duration::from_secs(args.fresh_secs + 60) {
            bail!(
                "probes not visible 60 s after the load: {} of {}",
                seen.len(),
                acked.len()
            );
        }
        if Instant::now() >= next_probe && t.elapsed() < Duration::from_secs(args.fresh_secs) {
            let name = format!("probe-{probe}");
            probe += 1;
            let mut push = generator().push(0, 1, now_ns());
            push.resource.as_mut().expect("resource").service = name.clone();
            push.batch_id = format!("bench-{name}");
            client.push(push).await.context("probe push")?;
            acked.push((name, Instant::now()));
            next_probe += PROBE_EVERY;
        }
        let (schema, batches) = engine
            .sql("SELECT DISTINCT service FROM requests WHERE service LIKE 'probe-%'")
            .await?;
        let csv = nines_query::format::render(schema, &batches, nines_query::OutputFormat::Csv)?;
        let visible: std::collections::HashSet<String> =
            csv.lines().skip(1).map(str::to_owned).collect();
        let now = Instant::now();
        acked.retain(|(name, at)| {
            if visible.contains(name) {
                seen.push(now - *at);
                false
            } else {
                true
            }
        });
        if acked.is_empty() && t.elapsed() >= Duration::from_secs(args.fresh_secs) {
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    let report = load.await?;
    let n = seen.len();
    Ok(Row {
        stage: "freshness (ack → visible in SQL)",
        events_per_s: report.ledger.events() as f64 / report.elapsed.as_secs_f64(),
        cpu_per_m: None,
        baseline: None,
        note: format!(
            "{n} probes at {} events/s: p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s (flush_interval {} s)",
            args.fresh_rate,
            quantile(&seen, 0.5).as_secs_f64(),
            quantile(&seen, 0.9).as_secs_f64(),
            quantile(&seen, 0.99).as_secs_f64(),
            quantile(&seen, 1.0).as_secs_f64(),
            roles.flush_interval_s("aggregate")?
        ),
    })
}

/// "N files, B bytes per event" over the data tables (`requests`, `sli_1m`), as their
/// snapshots list them.
async fn files_per_event(store: &nines_store::Store, events: u64) -> anyhow::Result<String> {
    let mut out = Vec::new();
    for table in ["requests", "sli_1m"] {
        let files = store.data_files(table).await?;
        let bytes: u64 = files.iter().map(|(_, b)| b).sum();
        out.push(format!(
            "{table} {} files, {:.1} B/event",
            files.len(),
            bytes as f64 / events as f64
        ));
    }
    Ok(out.join(", "))
}

/// Runs `sql` 5 times in process: the median seconds, and the answer as CSV.
async fn median_of_5(
    engine: &nines_query::QueryEngine,
    sql: &str,
) -> anyhow::Result<(f64, String)> {
    let mut runs = Vec::new();
    let mut answer = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (schema, batches) = engine.sql(sql).await?;
        runs.push(t.elapsed());
        answer = nines_query::format::render(schema, &batches, nines_query::OutputFormat::Csv)?;
    }
    Ok((quantile(&runs, 0.5).as_secs_f64(), answer))
}

async fn query(
    store: &nines_store::Store,
    events: u64,
    compacted: bool,
) -> anyhow::Result<Vec<Row>> {
    let engine = nines_query::QueryEngine::new(store).await?;
    let rollup = "SELECT service, sum(total) AS total, sum(errors) AS errors FROM sli_1m \
                  WHERE window_start >= date_trunc('minute', now() - INTERVAL '30 days') \
                  GROUP BY service ORDER BY service";
    let raw = "SELECT service, count(*) AS total, \
               sum(CASE WHEN error THEN 1 ELSE 0 END) AS errors FROM requests \
               WHERE time >= date_trunc('minute', now() - INTERVAL '30 days') \
               GROUP BY service ORDER BY service";
    let mut timings = Vec::new();
    let mut answers = Vec::new();
    for sql in [rollup, raw] {
        let (median, answer) = median_of_5(&engine, sql).await?;
        timings.push(median);
        answers.push(answer);
    }
    if answers[0] != answers[1] {
        bail!(
            "rollup and raw answers differ:\n{}\n{}",
            answers[0],
            answers[1]
        );
    }
    // DuckDB and DataFusion alone read the files each table's snapshot lists: after a
    // compaction the old files stay on disk until vacuum, and a glob would count them twice.
    let mut live = Vec::new();
    for table in ["requests", "sli_1m", "deploys"] {
        let dir = store
            .table_dir(table)
            .context("a local store for DuckDB and DataFusion alone")?;
        let files: Vec<String> = store
            .data_files(table)
            .await?
            .into_iter()
            .map(|(path, _)| dir.join(path).display().to_string())
            .collect();
        live.push(files.join("\n"));
    }
    let (fast, slow) = (timings[0], timings[1]);
    let alone = datafusion_times(&live, &[(raw, &answers[1])]).await?[0];
    let mut rows = vec![Row {
        stage: if compacted {
            "30-day availability from sli_1m, compacted"
        } else {
            "30-day availability from sli_1m"
        },
        events_per_s: events as f64 / fast,
        cpu_per_m: None,
        baseline: Some(("same from requests", events as f64 / slow)),
        note: format!(
            "median of 5: sli_1m {:.1} ms, requests {:.1} ms (DataFusion alone over its files {:.1} ms); same answer",
            fast * 1e3,
            slow * 1e3,
            alone * 1e3
        ),
    }];
    let duck_stage = if compacted {
        "30-day availability from requests, DuckDB, compacted"
    } else {
        "30-day availability from requests, DuckDB"
    };
    if compacted {
        rows.extend(doors(&engine, (raw, &answers[1]), events, slow).await?);
    }
    rows.push(match duckdb(&live, &answers[1])? {
        Some((raw, rollup)) => Row {
            stage: duck_stage,
            events_per_s: events as f64 / raw,
            cpu_per_m: None,
            baseline: Some(("nines from requests", events as f64 / slow)),
            note: format!(
                "median of 5 in DuckDB over the same files: requests {:.1} ms, sli_1m {:.1} ms; same answer",
                raw * 1e3,
                rollup * 1e3
            ),
        },
        None => Row {
            stage: duck_stage,
            events_per_s: f64::NAN,
            cpu_per_m: None,
            baseline: None,
            note: "skipped: `python3 -c 'import duckdb'` failed (pip install duckdb)".into(),
        },
    });
    rows.extend(analyst_questions(&engine, &live, events, compacted).await?);
    Ok(rows)
}

/// Compacts every table as an aggregator's maintenance does, in a `nines compact` process of
/// its own (default storage settings, but retention keeping every day the bench wrote):
/// answers its seconds and its peak RSS (`VmHWM`, read every 5 ms until it exits).
fn compact(roles: &Roles) -> anyhow::Result<(f64, u64)> {
    let keep_all = "36500days";
    let (config, _) = roles.config(
        "compact",
        roles.ingest_port,
        &[
            ("storage.retention.requests", keep_all),
            ("storage.retention.sli_1m", keep_all),
        ],
    )?;
    let log = roles.dir.join("compact.log");
    let t = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--config")
        .arg(&config)
        .arg("compact")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut peak = 0;
    let status = loop {
        if let Some((_, hwm)) = nines_testkit::process::rss_of(child.id()) {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !status.success() {
        bail!("nines compact: {status}; see {}", log.display());
    }
    Ok((t.elapsed().as_secs_f64(), peak))
}

/// More questions an analyst asks of `requests` (issue 16), in nines' SQL and in DuckDB's,
/// over the same files, with the same answer: nines' median of 5 beside DuckDB's. The p99 is
/// in whole milliseconds: the two engines interpolate `percentile_cont` a few nanoseconds
/// apart.
/// One of them: its row's name (before and after compaction), its SQL in nines and in
/// DuckDB.
struct Question {
    stage: [&'static str; 2],
    nines: &'static str,
    duckdb: &'static str,
}

const ANALYST_QUESTIONS: [Question; 3] = [
    Question {
        stage: [
            "top 10 operations by errors, 30 days, from requests",
            "top 10 operations by errors, 30 days, from requests, compacted",
        ],
        nines: "SELECT service, operation, sum(CASE WHEN error THEN 1 ELSE 0 END) AS errors \
         FROM requests WHERE time >= date_trunc('minute', now() - INTERVAL '30 days') \
         GROUP BY service, operation ORDER BY errors DESC, service, operation LIMIT 10",
        duckdb: "SELECT service, operation, sum(CASE WHEN error THEN 1 ELSE 0 END) AS errors \
         FROM {requests} WHERE time >= date_trunc('minute', now() - INTERVAL 30 DAY) \
         GROUP BY service, operation ORDER BY errors DESC, service, operation LIMIT 10",
    },
    Question {
        stage: [
            "p99 latency per service per hour, from requests",
            "p99 latency per service per hour, from requests, compacted",
        ],
        nines: "SELECT service, CAST(time AS BIGINT) / 3600000000 AS hour_bucket, \
         CAST(round(percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) / 1e6) AS BIGINT) AS p99_ms \
         FROM requests GROUP BY service, CAST(time AS BIGINT) / 3600000000 \
         ORDER BY service, hour_bucket",
        duckdb: "SELECT service, epoch_us(time) // 3600000000 AS hour_bucket, \
         CAST(round(quantile_cont(duration_ns, 0.99) / 1e6) AS BIGINT) AS p99_ms \
         FROM {requests} GROUP BY service, epoch_us(time) // 3600000000 \
         ORDER BY service, hour_bucket",
    },
    Question {
        stage: [
            "errors per deploy (until the next one), from requests and deploys",
            "errors per deploy (until the next one), from requests and deploys, compacted",
        ],
        nines: "WITH d AS (SELECT service, time, \
         lead(time) OVER (PARTITION BY service ORDER BY time) AS next_time FROM deploys) \
         SELECT d.service, CAST(d.time AS BIGINT) AS deploy_us, count(*) AS total, \
         sum(CASE WHEN r.error THEN 1 ELSE 0 END) AS errors \
         FROM d JOIN requests r ON r.service = d.service AND r.time >= d.time \
         AND (d.next_time IS NULL OR r.time < d.next_time) \
         GROUP BY d.service, d.time ORDER BY d.service, deploy_us",
        duckdb: "WITH d AS (SELECT service, time, \
         lead(time) OVER (PARTITION BY service ORDER BY time) AS next_time FROM {deploys}) \
         SELECT d.service, epoch_us(d.time) AS deploy_us, count(*) AS total, \
         sum(CASE WHEN r.error THEN 1 ELSE 0 END) AS errors \
         FROM d JOIN {requests} r ON r.service = d.service AND r.time >= d.time \
         AND (d.next_time IS NULL OR r.time < d.next_time) \
         GROUP BY d.service, d.time ORDER BY d.service, deploy_us",
    },
];

/// Deploys per bench service for the errors-per-deploy question: four, evenly over the
/// events' history (the first at its start), written to the `deploys` table.
async fn write_deploys(store: &nines_store::Store, history: Duration) -> anyhow::Result<u64> {
    use nines_proto::v1::{DeployEvent, DeployOutcome, Resource};
    let start = now_ns() - history.as_nanos() as i64;
    let step = history.as_nanos() as i64 / 4;
    let per_service = (0..SERVICES).map(|s| {
        let deploys = (0..4)
            .map(|k| DeployEvent {
                time_unix_nano: start + k * step,
                version: format!("v{k}"),
                outcome: DeployOutcome::Succeeded.into(),
                ..Default::default()
            })
            .collect();
        let resource = Resource {
            service: Generator::service_name(s),
            environment: "production".into(),
            ..Default::default()
        };
        (resource, deploys)
    });
    crate::bench_report::commit_deploys(store, "nines.bench-deploys", per_service).await
}

async fn analyst_questions(
    engine: &nines_query::QueryEngine,
    live: &[String],
    events: u64,
    compacted: bool,
) -> anyhow::Result<Vec<Row>> {
    let mut timings = Vec::new();
    let mut answers = Vec::new();
    for Question { nines: sql, .. } in ANALYST_QUESTIONS {
        let (median, answer) = median_of_5(engine, sql).await?;
        timings.push(median);
        answers.push(answer);
    }
    let duck: Vec<(&str, &str)> = ANALYST_QUESTIONS
        .iter()
        .zip(&answers)
        .map(|(q, answer)| (q.duckdb, answer.as_str()))
        .collect();
    let duck = duckdb_times(live, &duck)?;
    let alone: Vec<(&str, &str)> = ANALYST_QUESTIONS
        .iter()
        .zip(&answers)
        .map(|(q, answer)| (q.nines, answer.as_str()))
        .collect();
    let alone = datafusion_times(live, &alone).await?;
    Ok(ANALYST_QUESTIONS
        .iter()
        .enumerate()
        .map(|(i, q)| Row {
            stage: q.stage[usize::from(compacted)],
            events_per_s: events as f64 / timings[i],
            cpu_per_m: None,
            baseline: duck
                .as_ref()
                .map(|d| ("DuckDB, same files", events as f64 / d[i])),
            note: format!(
                "median of 5: nines {:.1} ms, DataFusion alone {:.1} ms, {}; same answer ({} rows)",
                timings[i] * 1e3,
                alone[i] * 1e3,
                match &duck {
                    Some(d) => format!("DuckDB {:.1} ms", d[i] * 1e3),
                    None => "DuckDB skipped (pip install duckdb)".into(),
                },
                answers[i].lines().count().saturating_sub(1)
            ),
        })
        .collect())
}

/// The query server's doors (docs/query.md), served in this process over the same tables:
/// the 30-day question from `requests` through `POST /v1/sql` and through Flight SQL with
/// ADBC's driver, beside the same in this process (`slow` seconds); then `SELECT 1` through
/// each door beside in-process, the latency a door adds. Answers checked against `expected`.
async fn doors(
    engine: &nines_query::QueryEngine,
    (sql, expected): (&str, &str),
    events: u64,
    slow: f64,
) -> anyhow::Result<Vec<Row>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cfg = nines_query::QueryConfig::default();
    let callers =
        nines_query::auth::Callers::from_config(&cfg, addr).map_err(anyhow::Error::msg)?;
    let runner = nines_query::Runner::new(engine.clone(), cfg.limits.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    tokio::spawn(nines_query::serve(
        listener,
        runner.clone(),
        callers,
        stop.cancelled_owned(),
    ));
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/sql");
    let post = |sql: &str| {
        http.post(&url)
            .body(serde_json::json!({"sql": sql, "format": "csv"}).to_string())
            .send()
    };
    // 30-day question over HTTP.
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let text = post(sql).await?.text().await?;
        runs.push(t.elapsed());
        if text != expected {
            bail!("HTTP's answer differs:\n{text}\n{expected}");
        }
    }
    let http_s = quantile(&runs, 0.5).as_secs_f64();
    // SELECT 1: in this process, over HTTP.
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        runner
            .run("bench", &nines_query::Scope::All, "SELECT 1 AS one")
            .await?;
        local.push(t.elapsed());
        let t = Instant::now();
        post("SELECT 1 AS one").await?.text().await?;
        remote.push(t.elapsed());
    }
    let (local_s, http_small) = (
        quantile(&local, 0.5).as_secs_f64(),
        quantile(&remote, 0.5).as_secs_f64(),
    );
    let mut rows = vec![
        Row {
            stage: "30-day availability from requests, POST /v1/sql (csv)",
            events_per_s: events as f64 / http_s,
            cpu_per_m: None,
            baseline: Some(("same in process", events as f64 / slow)),
            note: format!("median of 5: {:.1} ms; same answer", http_s * 1e3),
        },
        Row {
            stage: "SELECT 1, POST /v1/sql",
            events_per_s: f64::NAN,
            cpu_per_m: None,
            baseline: None,
            note: format!(
                "median of 21: {:.2} ms; in process {:.2} ms: the door adds {:.2} ms",
                http_small * 1e3,
                local_s * 1e3,
                (http_small - local_s) * 1e3
            ),
        },
    ];
    rows.extend(adbc(addr, (sql, expected), events, slow, local_s)?);
    Ok(rows)
}

/// The Flight SQL rows of [`doors`], timed in Python by ADBC's driver (if importable).
fn adbc(
    addr: std::net::SocketAddr,
    (sql, expected): (&str, &str),
    events: u64,
    slow: f64,
    local_s: f64,
) -> anyhow::Result<Vec<Row>> {
    const SCRIPT: &str = r#"
import statistics, sys, time
import adbc_driver_flightsql.dbapi as flight_sql
conn = flight_sql.connect(sys.argv[1])
def run(q):
    cur = conn.cursor()
    cur.execute(q)
    t = cur.fetch_arrow_table()
    cur.close()
    return t
def median(q, n):
    runs, table = [], None
    for _ in range(n):
        t = time.perf_counter()
        table = run(q)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), table
s, table = median(sys.argv[2], 5)
print(s)
print("|".join(",".join(str(v) for v in r.values()) for r in table.to_pylist()))
print(median("SELECT 1 AS one", 21)[0])
"#;
    let python = std::env::var("NINES_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import adbc_driver_flightsql.dbapi"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Ok(vec![Row {
            stage: "30-day availability from requests, Flight SQL (ADBC)",
            events_per_s: f64::NAN,
            cpu_per_m: None,
            baseline: None,
            note:
                "skipped: `import adbc_driver_flightsql` failed (pip install adbc-driver-flightsql)"
                    .into(),
        }]);
    }
    let out = Command::new(&python)
        .args(["-c", SCRIPT, &format!("grpc://{addr}"), sql])
        .output()
        .context("running ADBC")?;
    if !out.status.success() {
        bail!("ADBC failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = text.lines().collect();
    let [big_s, answer, small_s] = lines[..] else {
        bail!("unexpected ADBC output: {text}");
    };
    let want: Vec<&str> = expected.trim().lines().skip(1).collect();
    if answer != want.join("|") {
        bail!(
            "ADBC's answer differs from nines':\n{answer}\n{}",
            want.join("|")
        );
    }
    let (big, small): (f64, f64) = (big_s.parse()?, small_s.parse()?);
    Ok(vec![
        Row {
            stage: "30-day availability from requests, Flight SQL (ADBC)",
            events_per_s: events as f64 / big,
            cpu_per_m: None,
            baseline: Some(("same in process", events as f64 / slow)),
            note: format!(
                "median of 5 (prepared statement, DoGet, to Arrow): {:.1} ms; same answer",
                big * 1e3
            ),
        },
        Row {
            stage: "SELECT 1, Flight SQL (ADBC)",
            events_per_s: f64::NAN,
            cpu_per_m: None,
            baseline: None,
            note: format!(
                "median of 21: {:.2} ms; in process {:.2} ms: the door adds {:.2} ms",
                small * 1e3,
                local_s * 1e3,
                (small - local_s) * 1e3
            ),
        },
    ])
}

/// The 30-day question in DuckDB (Python package, if installed) over the same Parquet files
/// (`files`: the absolute paths the snapshots of `requests`, `sli_1m` and `deploys` list):
/// median seconds over `requests` and over `sli_1m`, after checking DuckDB's answer against
/// nines' (`expected`, CSV). `None` when DuckDB is not importable.
fn duckdb(files: &[String], expected: &str) -> anyhow::Result<Option<(f64, f64)>> {
    let raw = "SELECT service, count(*) AS total, sum(CASE WHEN error THEN 1 ELSE 0 END) AS errors \
               FROM {requests} WHERE time >= date_trunc('minute', now() - INTERVAL 30 DAY) \
               GROUP BY service ORDER BY service";
    let rollup = "SELECT service, sum(total) AS total, sum(errors) AS errors \
                  FROM {sli_1m} WHERE window_start >= date_trunc('minute', now() - INTERVAL 30 DAY) \
                  GROUP BY service ORDER BY service";
    Ok(duckdb_times(files, &[(raw, expected), (rollup, expected)])?.map(|t| (t[0], t[1])))
}

/// The same questions in DataFusion alone, the engine nines answers with, over the same
/// files (`files`, as for [`duckdb_times`]): a session with DataFusion's defaults (but the
/// time zone, UTC as nines'), each table a `ListingTable` of the files its snapshot lists, no
/// Delta log and nothing of nines' between the engine and the files. The median seconds of
/// 5 runs of each, after checking its answer against nines' (CSV with a header). What
/// nines takes beyond this is nines' own; what this takes beyond DuckDB is the engines'.
async fn datafusion_times(files: &[String], queries: &[(&str, &str)]) -> anyhow::Result<Vec<f64>> {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::{
        ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
    };
    use datafusion::prelude::{SessionConfig, SessionContext};
    use std::sync::Arc;
    let ctx = SessionContext::new_with_config(
        SessionConfig::new().set_str("datafusion.execution.time_zone", "UTC"),
    );
    for (table, files) in ["requests", "sli_1m", "deploys"].into_iter().zip(files) {
        let urls = files
            .lines()
            .map(ListingTableUrl::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            continue;
        }
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(ListingOptions::new(Arc::new(ParquetFormat::default())))
            .infer_schema(&ctx.state())
            .await?;
        ctx.register_table(table, Arc::new(ListingTable::try_new(config)?))?;
    }
    let mut times = Vec::new();
    for (sql, expected) in queries {
        let mut runs = Vec::new();
        let mut answer = String::new();
        for _ in 0..5 {
            let t = Instant::now();
            let frame = ctx.sql(sql).await?;
            let schema = frame.schema().inner().clone();
            let batches = frame.collect().await?;
            runs.push(t.elapsed());
            answer = nines_query::format::render(schema, &batches, nines_query::OutputFormat::Csv)?;
        }
        if answer != *expected {
            bail!("DataFusion's answer to {sql} differs from nines':\n{answer}\n{expected}");
        }
        times.push(quantile(&runs, 0.5).as_secs_f64());
    }
    Ok(times)
}

/// Queries in DuckDB (Python package, if installed) over the same Parquet files (`files`:
/// the absolute paths the snapshots of `requests`, `sli_1m` and `deploys` list, one per
/// line; the SQL names them `{requests}`, `{sli_1m}` and `{deploys}`): the median seconds of 5 runs of each, after
/// checking its answer against nines' (CSV with a header). `None` when DuckDB is not
/// importable.
fn duckdb_times(files: &[String], queries: &[(&str, &str)]) -> anyhow::Result<Option<Vec<f64>>> {
    const SCRIPT: &str = r#"
import statistics, sys, time
import duckdb
names = ["requests", "sli_1m", "deploys"]
live = dict(zip(names, (files.split("\n") for files in sys.argv[1:4])))
tables = {t: f"read_parquet({files!r}, hive_partitioning = true)" for t, files in live.items()}
con = duckdb.connect()
con.execute("SET threads TO 2")
for q in sys.argv[4:]:
    sql = q.format(**tables)
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        cursor = con.execute(sql)
        rows = cursor.fetchall()
        runs.append(time.perf_counter() - t)
    columns = [d[0] for d in cursor.description]
    print(statistics.median(runs))
    print("|".join([",".join(columns)] + [",".join(str(v) for v in row) for row in rows]))
"#;
    let python = std::env::var("NINES_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import duckdb"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Ok(None);
    }
    let out = Command::new(&python)
        .args(["-c", SCRIPT])
        .args(files)
        .args(queries.iter().map(|(sql, _)| sql))
        .output()
        .context("running DuckDB")?;
    if !out.status.success() {
        bail!("DuckDB failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != 2 * queries.len() {
        bail!("unexpected DuckDB output: {text}");
    }
    let mut times = Vec::new();
    for (pair, (sql, expected)) in lines.chunks(2).zip(queries) {
        let want = expected.trim().replace('\n', "|");
        if pair[1] != want {
            bail!(
                "DuckDB's answer to {sql} differs from nines':\n{}\n{want}",
                pair[1]
            );
        }
        times.push(pair[0].parse()?);
    }
    Ok(Some(times))
}
