//! Wiring roles together: which tasks run, in which order they start and stop.
//!
//! Shutdown order (SIGINT/SIGTERM): stop accepting pushes, flush the producer, flush and
//! commit the aggregator's buffers, then stop the embedded broker.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use nines_bus::producer::AckProducer;
use nines_ingest::{Auth, Pipeline};
use nines_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::admin::{self, Ready};
use crate::config::Config;

/// Makes the data directory absolute (the embedded broker changes the working directory).
fn prepare_data_dir(cfg: &mut Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    cfg.data_dir = std::fs::canonicalize(&cfg.data_dir)?;
    Ok(())
}

/// A token cancelled on SIGINT or SIGTERM. From then on the role has `limit` to finish its
/// graceful stop; past it the process exits with status 1 rather than hang.
fn shutdown_signal(limit: std::time::Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
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
    Ok(nines_bus::embedded::EmbeddedBroker::start(cfg.broker.port, token).await?)
}

#[cfg(not(feature = "embedded-broker"))]
async fn start_embedded(
    _: &Config,
    _: CancellationToken,
) -> anyhow::Result<std::convert::Infallible> {
    bail!("this build has no embedded broker (feature `embedded-broker`): pass --kafka")
}

fn brokers(cfg: &Config, kafka: Option<String>) -> Option<String> {
    kafka.or_else(|| (!cfg.bus.brokers.is_empty()).then(|| cfg.bus.brokers.clone()))
}

pub(crate) async fn up(mut cfg: Config, kafka: Option<String>) -> anyhow::Result<()> {
    prepare_data_dir(&mut cfg)?;
    let stop = shutdown_signal(cfg.shutdown_timeout);
    let ready = Ready::default();
    admin::serve(&cfg.admin.listen, ready.clone(), stop.clone()).await?;
    let broker_stop = CancellationToken::new();
    let (bootstrap, embedded) = match brokers(&cfg, kafka) {
        Some(b) => (b, None),
        None => {
            let b = start_embedded(&cfg, broker_stop.clone()).await?;
            (b.bootstrap.clone(), Some(b))
        }
    };
    nines_bus::admin::ensure_topics(&cfg.bus, &bootstrap, std::time::Duration::from_secs(60))
        .await
        .context("creating topics")?;
    let listener = bind_ingest(&cfg).await?;
    let ingest = tokio::spawn(run_ingest(
        cfg.clone(),
        bootstrap.clone(),
        listener,
        stop.clone(),
    ));
    let aggregate = tokio::spawn(crate::aggregate::run(
        cfg.clone(),
        bootstrap.clone(),
        stop.clone(),
    ));
    ready.set();
    info!(data_dir = %cfg.data_dir.display(), kafka = %bootstrap, ingest = %cfg.ingest.listen, "nines is up");
    let ingest_result = ingest.await.context("ingest task")?;
    let aggregate_result = aggregate.await.context("aggregate task")?;
    broker_stop.cancel();
    if let Some(b) = embedded {
        b.join().await;
    }
    ingest_result?;
    aggregate_result?;
    info!("stopped cleanly");
    Ok(())
}

pub(crate) async fn broker(mut cfg: Config) -> anyhow::Result<()> {
    prepare_data_dir(&mut cfg)?;
    let stop = shutdown_signal(cfg.shutdown_timeout);
    let ready = Ready::default();
    admin::serve(&cfg.admin.listen, ready.clone(), stop.clone()).await?;
    let b = start_embedded(&cfg, stop.clone()).await?;
    nines_bus::admin::ensure_topics(&cfg.bus, &b.bootstrap, std::time::Duration::from_secs(60))
        .await
        .context("creating topics")?;
    ready.set();
    info!(kafka = %b.bootstrap, "broker is up");
    b.join().await;
    Ok(())
}

pub(crate) async fn ingest(cfg: Config, kafka: Option<String>) -> anyhow::Result<()> {
    let Some(bootstrap) = brokers(&cfg, kafka) else {
        bail!("`nines ingest` needs a broker: pass --kafka or set bus.brokers");
    };
    let stop = shutdown_signal(cfg.shutdown_timeout);
    let ready = Ready::default();
    admin::serve(&cfg.admin.listen, ready.clone(), stop.clone()).await?;
    // Ready only once pushes can connect.
    let listener = bind_ingest(&cfg).await?;
    ready.set();
    run_ingest(cfg, bootstrap, listener, stop).await
}

pub(crate) async fn aggregate(mut cfg: Config, kafka: Option<String>) -> anyhow::Result<()> {
    let Some(bootstrap) = brokers(&cfg, kafka) else {
        bail!("`nines aggregate` needs a broker: pass --kafka or set bus.brokers");
    };
    prepare_data_dir(&mut cfg)?;
    let stop = shutdown_signal(cfg.shutdown_timeout);
    let ready = Ready::default();
    admin::serve(&cfg.admin.listen, ready.clone(), stop.clone()).await?;
    nines_bus::admin::ensure_topics(&cfg.bus, &bootstrap, std::time::Duration::from_secs(60))
        .await
        .context("creating topics")?;
    ready.set();
    crate::aggregate::run(cfg, bootstrap, stop).await
}

async fn bind_ingest(cfg: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = cfg
        .ingest
        .listen
        .parse()
        .with_context(|| format!("ingest.listen {:?}", cfg.ingest.listen))?;
    // Refuse before binding: keys malformed, or an open door beyond loopback.
    Auth::from_config(&cfg.ingest, addr).map_err(anyhow::Error::msg)?;
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

/// Opens the store under the data directory.
pub(crate) fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    Store::open(&cfg.data_dir).context("opening the store")
}
