//! The embedded Kafka-protocol broker (tansu) that `nines up` and `nines broker` run when no
//! external Kafka is configured. Storage is tansu's SQLite engine under the data directory,
//! so produced records and committed group offsets survive a restart.
//!
//! tansu 0.6 resolves `sqlite://` paths against the process's working directory and offers
//! no stop token of its own: the caller must have changed into the data directory (see
//! `docs/decisions/0002-embedded-broker.md`), and the broker stops when `shutdown` fires.

use std::path::Path;

use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use url::Url;

use crate::retention::{self, LogRetention};
use crate::{Error, Result};

/// The cluster id of the embedded broker (tansu keys its tables by it).
const CLUSTER: &str = "nines";

/// Relative path, from the working directory, of the broker's database.
pub const DB_RELATIVE_PATH: &str = "broker/nines.db";

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    /// `127.0.0.1:port`, for `bootstrap.servers`.
    pub bootstrap: String,
    /// Ends with an error when the broker stopped serving before `shutdown` fired.
    task: JoinHandle<std::result::Result<(), String>>,
}

impl EmbeddedBroker {
    /// Starts the broker on `127.0.0.1:port` with its database under `./broker/` (the working
    /// directory must be the data directory), and its log retention guard. Returns once the
    /// listener accepts connections.
    pub async fn start(
        port: u16,
        retention: LogRetention,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        std::fs::create_dir_all("broker").map_err(|e| Error::Broker(format!("broker dir: {e}")))?;
        // Before tansu's first maintenance pass (at start): settings left by an earlier run
        // may predate a long stop, during which unread records grew older than the age.
        if Path::new(DB_RELATIVE_PATH).exists() {
            retention::pass_once(DB_RELATIVE_PATH, CLUSTER, &retention).await?;
        }
        let addr = Url::parse(&format!("tcp://127.0.0.1:{port}"))
            .map_err(|e| Error::Broker(e.to_string()))?;
        let storage = Url::parse(&format!(
            "sqlite://{DB_RELATIVE_PATH}?maintenance_interval={}ms",
            retention.interval.as_millis()
        ))
        .map_err(|e| Error::Broker(e.to_string()))?;
        let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(1)
            .cluster_id(CLUSTER)
            .incarnation_id(uuid::Uuid::now_v7())
            .advertised_listener(addr.clone())
            .listener(addr)
            .storage(storage)
            .schema_registry(None)
            .silent(true)
            .build()
            .await
            .map_err(|e| Error::Broker(format!("{e:?}")))?;
        let guard_stop = shutdown.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    info!("embedded broker stopping");
                    Ok(())
                }
                r = broker.serve(tokio::time::Instant::now()) => {
                    let reason = match r {
                        Err(e) => format!("{e:?}"),
                        Ok(()) => "stopped serving".to_owned(),
                    };
                    error!(error = %reason, "embedded broker stopped");
                    Err(reason)
                }
            }
        });
        let bootstrap = format!("127.0.0.1:{port}");
        wait_listening(&bootstrap).await?;
        // Only once tansu is serving: its start (registration, the first connections that
        // put the database in WAL mode) fails on a busy database, and it sets no busy
        // timeout. The guard's first pass comes one interval later.
        tokio::spawn(retention::guard(
            DB_RELATIVE_PATH,
            CLUSTER,
            retention,
            guard_stop,
        ));
        info!(%bootstrap, db = %Path::new(DB_RELATIVE_PATH).display(), "embedded broker up");
        Ok(Self { bootstrap, task })
    }

    /// Waits for the broker task to end: `Ok` after `shutdown` fired, an error if the broker
    /// stopped (or panicked) by itself.
    pub async fn join(self) -> Result<()> {
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(Error::Broker(format!("embedded broker stopped: {reason}"))),
            Err(e) => Err(Error::Broker(format!("embedded broker task: {e}"))),
        }
    }
}

async fn wait_listening(addr: &str) -> Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(Error::Broker(format!("did not start listening on {addr}")))
}
