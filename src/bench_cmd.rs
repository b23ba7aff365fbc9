//! `nines bench`: the pipeline on the embedded broker of this machine, stage by stage, each
//! beside its baseline measured in the same run (BENCHMARKS.md).
//!
//! Every role runs as its own process of this binary, so CPU seconds (the role's own
//! `process_cpu_seconds_total`) and peak RSS (`VmHWM`) are per role. Stages:
//!
//! 1. produce: the exact records ingest would write, sent by a bare producer with ingest's
//!    settings to a topic of their own on the same broker (the ingest ceiling);
//! 2. ingest: the same events pushed over gRPC by a retrying sender, acknowledged end to end;
//! 3. consume: a plain consumer reading the events topic (the aggregator ceiling);
//! 4. aggregate: an aggregator working off the backlog until every event is durable;
//! 5. freshness: load at a fixed rate with probe pushes; push acknowledged → visible in SQL;
//! 6. query: a 30-day availability question over `sli_1m` and over `requests`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comfy_table::{Table, presets::ASCII_MARKDOWN};
use futures::StreamExt;
use nines_bus::BusConfig;
use nines_bus::producer::AckProducer;
use nines_ingest::config::Limits;
use nines_ingest::records::cut;
use nines_ingest::validate::validate;
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
    /// Keep the data here instead of a temporary directory.
    #[arg(long)]
    keep: Option<PathBuf>,
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

struct Roles {
    dir: PathBuf,
    broker_port: u16,
    ingest_port: u16,
}

impl Roles {
    fn config(&self, name: &str) -> anyhow::Result<(PathBuf, u16)> {
        let admin = free_port();
        let text = format!(
            "data_dir = {data:?}\n[broker]\nport = {broker}\n\
             [ingest]\nlisten = \"127.0.0.1:{ingest}\"\nmax_event_age = \"40days\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n",
            data = self.dir.join("data").display().to_string(),
            broker = self.broker_port,
            ingest = self.ingest_port,
        );
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text)?;
        Ok((path, admin))
    }

    fn start(&self, name: &str, args: &[&str]) -> anyhow::Result<Process> {
        let (config, admin) = self.config(name)?;
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
}

fn cpu_seconds(p: &Process) -> f64 {
    metric(&p.metrics(), "process_cpu_seconds_total", "").unwrap_or(f64::NAN)
}

fn peak_mib(p: &Process) -> f64 {
    p.rss()
        .map_or(f64::NAN, |(_, peak)| peak as f64 / (1024.0 * 1024.0))
}

pub(crate) async fn run(mut args: BenchArgs) -> anyhow::Result<()> {
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
    };
    let history = Duration::from_secs(args.days * 86_400);
    let started = Instant::now();
    let mut rows = Vec::new();
    println!(
        "nines bench: {} events, {} per push, {} in flight, times over {} days, data in {}",
        args.events,
        args.batch,
        args.concurrency,
        args.days,
        temp.display()
    );

    let broker = roles.start("broker", &["broker"])?;
    let kafka = roles.kafka();

    // 1. The bare producer: ingest's own records, made here the way ingest makes them.
    let bus = BusConfig::default();
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

    // 4. Aggregate the backlog: Kafka → durable Parquet in both tables.
    let t = Instant::now();
    let aggregate = roles.start("aggregate", &["aggregate", "--kafka", &kafka])?;
    let agg_cpu0 = cpu_seconds(&aggregate);
    let ready_after = t.elapsed();
    let t = Instant::now();
    loop {
        let done = metric(&aggregate.metrics(), "nines_aggregate_events_total", "").unwrap_or(0.0);
        if done >= args.events as f64 {
            break;
        }
        if t.elapsed() > Duration::from_secs(1800) {
            bail!(
                "aggregation did not finish: {done} of {} events durable",
                args.events
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let agg_s = t.elapsed().as_secs_f64();
    let agg_cpu = cpu_seconds(&aggregate) - agg_cpu0;
    rows.push(Row {
        stage: "aggregate (Kafka → durable Parquet)",
        events_per_s: args.events as f64 / agg_s,
        cpu_per_m: Some(agg_cpu / args.events as f64 * 1e6),
        baseline: Some(("bare consumer", bare_consume)),
        note: format!(
            "started in {:.1}s (not counted); peak RSS {:.0} MiB",
            ready_after.as_secs_f64(),
            peak_mib(&aggregate)
        ),
    });

    // 5. Freshness at a fixed rate, default flush settings.
    let fresh = freshness(&roles, &args).await?;
    rows.push(fresh);

    // 6. The 30-day question, from rollups and from raw rows, once everything is durable (a
    // query during a flush can see a `requests` file before its `sli_1m` twin).
    let (ingest_peak, aggregate_peak) = (peak_mib(&ingest), peak_mib(&aggregate));
    let mut aggregate = aggregate;
    let mut ingest = ingest;
    tokio::task::block_in_place(|| {
        ingest.terminate();
        aggregate.terminate();
    });
    rows.push(query(&temp.join("data"), args.events).await?);

    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN).set_header([
        "stage",
        "events/s",
        "CPU s per M events",
        "ratio to baseline",
        "notes",
    ]);
    for r in &rows {
        table.add_row([
            r.stage.to_owned(),
            format!("{:.0}", r.events_per_s),
            r.cpu_per_m.map_or("-".into(), |c| format!("{c:.2}")),
            r.baseline.map_or("-".into(), |(name, b)| {
                format!("{:.2}× {name}", r.events_per_s / b)
            }),
            r.note.clone(),
        ]);
    }
    println!("{table}");
    println!(
        "peak RSS: broker {:.0} MiB, ingest {:.0} MiB, aggregate {:.0} MiB; total {:.0} s",
        peak_mib(&broker),
        ingest_peak,
        aggregate_peak,
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
        let key = format!("{}\u{0}{}", r.tenant, r.service).into_bytes();
        for record in cut(push, now, max_record)? {
            out.push((key.clone(), record));
        }
    }
    Ok(out)
}

async fn freshness(roles: &Roles, args: &BenchArgs) -> anyhow::Result<Row> {
    let store = nines_store::Store::open(roles.dir.join("data"))?;
    let engine = nines_query::QueryEngine::new(&store)?;
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
            next_probe += Duration::from_millis(500);
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = load.await?;
    let n = seen.len();
    Ok(Row {
        stage: "freshness (ack → visible in SQL)",
        events_per_s: report.ledger.events() as f64 / report.elapsed.as_secs_f64(),
        cpu_per_m: None,
        baseline: None,
        note: format!(
            "{n} probes at {} events/s: p50 {:.2} s, p99 {:.2} s (flush_interval 2 s)",
            args.fresh_rate,
            quantile(&seen, 0.5).as_secs_f64(),
            quantile(&seen, 0.99).as_secs_f64()
        ),
    })
}

async fn query(data: &Path, events: u64) -> anyhow::Result<Row> {
    let store = nines_store::Store::open(data)?;
    let engine = nines_query::QueryEngine::new(&store)?;
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
        let mut runs = Vec::new();
        let mut answer = String::new();
        for _ in 0..5 {
            let t = Instant::now();
            let (schema, batches) = engine.sql(sql).await?;
            runs.push(t.elapsed());
            answer = nines_query::format::render(schema, &batches, nines_query::OutputFormat::Csv)?;
        }
        timings.push(quantile(&runs, 0.5));
        answers.push(answer);
    }
    if answers[0] != answers[1] {
        bail!(
            "rollup and raw answers differ:\n{}\n{}",
            answers[0],
            answers[1]
        );
    }
    let (fast, slow) = (timings[0].as_secs_f64(), timings[1].as_secs_f64());
    Ok(Row {
        stage: "30-day availability from sli_1m",
        events_per_s: events as f64 / fast,
        cpu_per_m: None,
        baseline: Some(("same from requests", events as f64 / slow)),
        note: format!(
            "median of 5: sli_1m {:.1} ms, requests {:.1} ms; same answer",
            fast * 1e3,
            slow * 1e3
        ),
    })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
