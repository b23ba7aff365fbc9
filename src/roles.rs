//! Wiring roles together: which tasks run, in which order they start and stop.
//!
//! Every role first makes its [`Plan`] from the configuration alone (the checks `nines config
//! check` runs), then binds and connects. Shutdown order (SIGINT/SIGTERM): stop accepting
//! pushes, flush the producer, flush and commit the aggregator's buffers, then stop the
//! embedded broker. In `nines up`, a role that ends by itself (an error, a panic, the embedded
//! broker stopping) is a failure: `/readyz` says which role and why, the others stop in that
//! same order, and the process exits non-zero.

use std::net::SocketAddr;

use anyhow::{Context, anyhow, bail};
use axum::Router;
use nines_bus::producer::AckProducer;
use nines_ingest::{Auth, Pipeline};
use nines_store::Store;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::{self, Ready};
use crate::config::Config;

/// The role a process runs (`nines config check --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Role {
    Up,
    Broker,
    Ingest,
    Aggregate,
    Query,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Broker => "broker",
            Self::Ingest => "ingest",
            Self::Aggregate => "aggregate",
            Self::Query => "query",
        })
    }
}

/// What a role will do, decided from its configuration alone: nothing bound, no broker
/// contacted. Every role makes its plan first and refuses to start on an error;
/// `nines config check` makes the same plan and stops there.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) role: Role,
    /// The external Kafka (`--kafka`, else `bus.brokers`); `None`: the embedded broker.
    pub(crate) kafka: Option<String>,
    /// Where ingest listens and who may push (the roles that serve ingest).
    pub(crate) ingest: Option<(SocketAddr, Auth)>,
    /// Where the query server listens and who may query (`nines query`, and `nines up`
    /// unless `query.listen` is empty).
    pub(crate) query: Option<(SocketAddr, nines_query::auth::Callers)>,
    /// Settings that work but put acknowledged events at risk; logged at start.
    pub(crate) warnings: Vec<String>,
}

/// Every check a role runs before binding or connecting.
pub(crate) fn plan(cfg: &Config, role: Role, kafka: Option<String>) -> anyhow::Result<Plan> {
    let kafka = match role {
        // `nines broker` is the embedded broker, whatever bus.brokers says.
        Role::Broker => None,
        _ => kafka.or_else(|| (!cfg.bus.brokers.is_empty()).then(|| cfg.bus.brokers.clone())),
    };
    match (role, &kafka) {
        (Role::Ingest | Role::Aggregate, None) => {
            bail!("`nines {role}` needs a broker: pass --kafka or set bus.brokers")
        }
        (Role::Up | Role::Broker, None) if !cfg!(feature = "embedded-broker") => bail!(
            "this build has no embedded broker (feature `embedded-broker`): pass --kafka or \
             set bus.brokers"
        ),
        _ => {}
    }
    let ingest = match role {
        Role::Up | Role::Ingest => {
            let addr: SocketAddr = cfg.ingest.listen.parse().map_err(|e| {
                anyhow!(
                    "ingest.listen {:?}: not an address such as 127.0.0.1:4317 ({e})",
                    cfg.ingest.listen
                )
            })?;
            // Keys malformed, or an open door beyond loopback.
            let auth = Auth::from_config(&cfg.ingest, addr).map_err(anyhow::Error::msg)?;
            Some((addr, auth))
        }
        Role::Broker | Role::Aggregate | Role::Query => None,
    };
    let query = match role {
        Role::Up if cfg.query.listen.is_empty() => None,
        Role::Up | Role::Query => {
            let addr: SocketAddr = cfg.query.listen.parse().map_err(|e| {
                anyhow!(
                    "query.listen {:?}: not an address such as 127.0.0.1:50051 ({e})",
                    cfg.query.listen
                )
            })?;
            let callers = nines_query::auth::Callers::from_config(&cfg.query, addr)
                .map_err(anyhow::Error::msg)?;
            Some((addr, callers))
        }
        Role::Broker | Role::Ingest | Role::Aggregate => None,
    };
    let listen = &cfg.admin.listen;
    if !listen.is_empty()
        && listen
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        bail!("admin.listen {listen:?}: not host:port (empty disables the admin server)");
    }
    let warnings = cfg
        .bus
        .replication_warning(kafka.is_some())
        .into_iter()
        .collect();
    Ok(Plan {
        role,
        kafka,
        ingest,
        query,
        warnings,
    })
}

impl Plan {
    fn warn(&self) {
        for w in &self.warnings {
            warn!("{w}");
        }
    }
}

/// Makes the data directory absolute (the embedded broker changes the working directory).
fn prepare_data_dir(cfg: &mut Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    cfg.data_dir = std::fs::canonicalize(&cfg.data_dir)?;
    // Relative to where nines was started, not to the data directory.
    cfg.slo.dir = std::path::absolute(&cfg.slo.dir)?;
    cfg.report.dir = std::path::absolute(&cfg.report.dir)?;
    Ok(())
}

/// A token cancelled on SIGINT or SIGTERM, or by the role itself (a failed part in `nines
/// up`). From then on the role has `limit` to finish its graceful stop; past it the process
/// exits with status 1 rather than hang.
fn shutdown_signal(limit: std::time::Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
            () = t.cancelled() => {},
        }
        info!(?limit, "shutting down");
        t.cancel();
        // A plain thread: it must fire even if the runtime is wedged.
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            tracing::error!(?limit, "graceful stop took too long; exiting");
            std::process::exit(1);
        });
    });
    token
}

#[cfg(feature = "embedded-broker")]
async fn start_embedded(
    cfg: &Config,
    token: CancellationToken,
) -> anyhow::Result<nines_bus::embedded::EmbeddedBroker> {
    std::env::set_current_dir(&cfg.data_dir).context("entering the data directory")?;
    let retention = nines_bus::retention::LogRetention {
        age: cfg.broker.log_retention,
        interval: cfg.broker.maintenance_interval,
        guarded_topics: vec![cfg.bus.events_topic.clone()],
    };
    Ok(nines_bus::embedded::EmbeddedBroker::start(cfg.broker.port, retention, token).await?)
}

#[cfg(not(feature = "embedded-broker"))]
async fn start_embedded(
    _: &Config,
    _: CancellationToken,
) -> anyhow::Result<std::convert::Infallible> {
    bail!("this build has no embedded broker (feature `embedded-broker`): pass --kafka")
}

/// Waits for the embedded broker, if there is one, to end.
#[cfg(feature = "embedded-broker")]
async fn join_embedded(
    embedded: Option<nines_bus::embedded::EmbeddedBroker>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match embedded {
        Some(b) => Ok(b.join().await?),
        None => {
            stop.cancelled().await;
            Ok(())
        }
    }
}

#[cfg(not(feature = "embedded-broker"))]
async fn join_embedded(
    _: Option<std::convert::Infallible>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    stop.cancelled().await;
    Ok(())
}

/// How a role's task ended, as its result: its own error, its panic, or `Ok` (with
/// `asked_to_stop`; without, ending at all is the failure).
fn outcome(
    joined: Result<anyhow::Result<()>, JoinError>,
    asked_to_stop: bool,
) -> anyhow::Result<()> {
    match joined {
        Ok(Ok(())) if asked_to_stop => Ok(()),
        Ok(Ok(())) => Err(anyhow!("stopped without being asked to")),
        Ok(Err(e)) => Err(e),
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".into());
            Err(anyhow!("panicked: {message}"))
        }
        Err(e) => Err(anyhow!("task ended: {e}")),
    }
}

pub(crate) async fn up(mut cfg: Config, kafka: Option<String>) -> anyhow::Result<()> {
    let plan = plan(&cfg, Role::Up, kafka)?;
    plan.warn();
    prepare_data_dir(&mut cfg)?;
    let stop = shutdown_signal(cfg.shutdown_timeout);
    let ready = Ready::default();
    // The admin server outlives the roles, so that `/readyz` says why they are stopping.
    let admin_stop = CancellationToken::new();
    let _admin_stop = admin_stop.clone().drop_guard();
    let served = crate::release_cmd::Served::default();
    let release = crate::release_cmd::routes(served.clone());
    admin::serve(&cfg.admin.listen, ready.clone(), admin_stop, release).await?;
    crate::metrics::register(&plan);
    let broker_stop = CancellationToken::new();
    let (bootstrap, embedded) = match plan.kafka {
        Some(b) => (b, None),
        None => {
            let b = start_embedded(&cfg, broker_stop.clone()).await?;
            (b.bootstrap.clone(), Some(b))
        }
    };
    let mut broker: JoinHandle<anyhow::Result<()>> =
        tokio::spawn(join_embedded(embedded, broker_stop.clone()));
    nines_bus::admin::ensure_topics(&cfg.bus, &bootstrap, std::time::Duration::from_secs(60))
        .await
        .context("creating topics")?;
    let listener = bind_ingest(plan.ingest.as_ref()).await?;
    let mut ingest = tokio::spawn(run_ingest(
        cfg.clone(),
        bootstrap.clone(),
        listener,
        stop.clone(),
    ));
    let store = open_store(&cfg).await?;
    tokio::spawn(nines_pipeline::maintain(
        store.clone(),
        cfg.storage.clone(),
        stop.clone(),
    ));
    let recorder = match cfg.gate.record {
        true => Some(crate::release_cmd::Recorder::new(&cfg, &bootstrap)?),
        false => None,
    };
    let engine = nines_query::QueryEngine::new(&store).await?;
    served.set(cfg.clone(), engine.clone(), recorder);
    if let Some(planned) = plan.query {
        start_query(&cfg, planned, engine, stop.clone()).await?;
    }
    // Live SLO evaluation: its failure is logged, never a reason to stop the pipeline.
    let slo_store = store.clone();
    let slo_cfg = cfg.slo.clone();
    let slo_stop = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::slo_live::run(slo_cfg, slo_store, slo_stop).await {
            error!(error = format!("{e:#}"), "live SLO evaluation stopped");
        }
    });
    if let Some(every) = cfg.report.every {
        tokio::spawn(crate::report_cmd::schedule(
            cfg.clone(),
            every,
            stop.clone(),
        ));
    }
    let mut aggregate = tokio::spawn(nines_pipeline::run(
        pipeline_settings(&cfg, &ready),
        store,
        bootstrap.clone(),
        stop.clone(),
    ));
    ready.set();
    info!(data_dir = %cfg.data_dir.display(), kafka = %bootstrap, ingest = %cfg.ingest.listen, "nines is up");

    // Until a signal, every role runs; one that ends first has failed.
    let failed = tokio::select! {
        biased;
        () = stop.cancelled() => None,
        r = &mut ingest => Some(("ingest", outcome(r, false))),
        r = &mut aggregate => Some(("aggregate", outcome(r, false))),
        r = &mut broker => Some(("embedded broker", outcome(r, false))),
    };
    let failed = failed.map(|(role, r)| (role, r.err().unwrap_or_else(|| anyhow!("ended"))));
    if let Some((role, e)) = &failed {
        error!(
            role,
            error = format!("{e:#}"),
            "role failed; stopping the others"
        );
        ready.fail(format!("{role}: {e:#}"));
    }
    ready.stopping();
    // The same order as a graceful stop: ingest stops accepting and flushes its producer,
    // the aggregator flushes and commits, then the broker stops.
    stop.cancel();
    let done = failed.as_ref().map(|f| f.0);
    let mut results = Vec::new();
    if done != Some("ingest") {
        results.push(("ingest", outcome(ingest.await, true)));
    }
    if done != Some("aggregate") {
        results.push(("aggregate", outcome(aggregate.await, true)));
    }
    broker_stop.cancel();
    if done != Some("embedded broker") {
        results.push(("embedded broker", outcome(broker.await, true)));
    }
    if let Some((role, e)) = failed {
        for (other, r) in results {
            if let Err(e) = r {
                error!(
                    role = other,
                    error = format!("{e:#}"),
                    "stopping after a failure"
                );
            }
        }
        return Err(e.context(format!("the {role} role failed")));
    }
    for (role, r) in results {
        r.with_context(|| format!("the {role} role"))?;
    }
    info!("stopped cleanly");
    Ok(())
}

pub(crate) async fn broker(mut cfg: Config) -> anyhow::Result<()> {
    plan(&cfg, Role::Broker, None)?.warn();
    prepare_data_dir(&mut cfg)?;
    let (stop, ready) = role_admin(&cfg).await?;
    let b = start_embedded(&cfg, stop.clone()).await?;
    nines_bus::admin::ensure_topics(&cfg.bus, &b.bootstrap, std::time::Duration::from_secs(60))
        .await
        .context("creating topics")?;
    ready.set();
    info!(kafka = %b.bootstrap, "broker is up");
    b.join().await?;
    Ok(())
}

pub(crate) async fn ingest(cfg: Config, kafka: Option<String>) -> anyhow::Result<()> {
    let plan = plan(&cfg, Role::Ingest, kafka)?;
    plan.warn();
    let bootstrap = plan.kafka.clone().context("ingest without a broker")?;
    let (stop, ready) = role_admin(&cfg).await?;
    crate::metrics::register(&plan);
    // Ready only once pushes can connect.
    let listener = bind_ingest(plan.ingest.as_ref()).await?;
    ready.set();
    run_ingest(cfg, bootstrap, listener, stop).await
}

pub(crate) async fn aggregate(mut cfg: Config, kafka: Option<String>) -> anyhow::Result<()> {
    let plan = plan(&cfg, Role::Aggregate, kafka)?;
    plan.warn();
    let bootstrap = plan.kafka.clone().context("aggregate without a broker")?;
    prepare_data_dir(&mut cfg)?;
    let (stop, ready) = role_admin(&cfg).await?;
    crate::metrics::register(&plan);
    nines_bus::admin::ensure_topics(&cfg.bus, &bootstrap, std::time::Duration::from_secs(60))
        .await
        .context("creating topics")?;
    let store = open_store(&cfg).await?;
    tokio::spawn(nines_pipeline::maintain(
        store.clone(),
        cfg.storage.clone(),
        stop.clone(),
    ));
    ready.set();
    nines_pipeline::run(pipeline_settings(&cfg, &ready), store, bootstrap, stop).await
}

/// The shutdown token and readiness of a role run alone, with its admin server up.
async fn role_admin(cfg: &Config) -> anyhow::Result<(CancellationToken, Ready)> {
    let stop = shutdown_signal(cfg.shutdown_timeout);
    let ready = Ready::default();
    admin::serve(
        &cfg.admin.listen,
        ready.clone(),
        stop.clone(),
        Router::new(),
    )
    .await?;
    Ok((stop, ready))
}

/// `nines query`: the query server alone, over the tables in `storage` (a query node).
pub(crate) async fn query(mut cfg: Config) -> anyhow::Result<()> {
    let plan = plan(&cfg, Role::Query, None)?;
    prepare_data_dir(&mut cfg)?;
    let (stop, ready) = role_admin(&cfg).await?;
    crate::metrics::register(&plan);
    let store = open_store(&cfg).await?;
    let engine = nines_query::QueryEngine::new(&store).await?;
    let planned = plan.query.context("a query role without a query plan")?;
    let server = start_query(&cfg, planned, engine, stop.clone()).await?;
    ready.set();
    server.await.context("query server task")?
}

/// Binds the query server (a failure to bind is the role's) and serves it until `stop`.
async fn start_query(
    cfg: &Config,
    (addr, callers): (SocketAddr, nines_query::auth::Callers),
    engine: nines_query::QueryEngine,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding query listener {addr}"))?;
    info!(%addr, "query server listening (Flight SQL and POST /v1/sql)");
    let runner = nines_query::Runner::new(engine, cfg.query.limits.clone());
    Ok(tokio::spawn(async move {
        nines_query::serve(listener, runner, callers, stop.cancelled_owned())
            .await
            .context("query server")
    }))
}

/// What the aggregator reads of the configuration.
fn pipeline_settings(cfg: &Config, ready: &admin::Ready) -> nines_pipeline::Settings {
    let ready = ready.clone();
    nines_pipeline::Settings {
        bus: cfg.bus.clone(),
        aggregate: cfg.aggregate.clone(),
        on_stall: nines_pipeline::StallReport(std::sync::Arc::new(move |stall| {
            ready.degraded(stall)
        })),
    }
}

/// Binds the planned ingest address.
async fn bind_ingest(
    planned: Option<&(SocketAddr, Auth)>,
) -> anyhow::Result<tokio::net::TcpListener> {
    let (addr, _) = planned.context("a role without ingest binding it")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding ingest listener {addr}"))?;
    info!(%addr, "ingest listening");
    Ok(listener)
}

async fn run_ingest(
    cfg: Config,
    bootstrap: String,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let producer = AckProducer::new(&cfg.bus, &bootstrap)?;
    let auth =
        Auth::from_config(&cfg.ingest, listener.local_addr()?).map_err(anyhow::Error::msg)?;
    let pipeline = Pipeline::new(
        producer.clone(),
        cfg.bus.events_topic.clone(),
        cfg.ingest.limits.clone(),
        cfg.bus.max_record_bytes,
        cfg.bus.delivery_timeout,
    );
    nines_ingest::door::serve(listener, pipeline, auth, &cfg.ingest, stop.cancelled())
        .await
        .context("ingest server")?;
    producer.flush(cfg.bus.delivery_timeout)?;
    info!("ingest stopped");
    Ok(())
}

/// Opens the store where `storage.url` says (the data directory by default).
pub(crate) async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let location = cfg.storage.location(&cfg.data_dir)?;
    Store::open(location).await.context("opening the store")
}
