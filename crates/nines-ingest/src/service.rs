//! The publishing pipeline every front door shares (stamp tenant, validate, guard, cut,
//! publish, answer after the broker's ack), and `nines.v1.IngestService` on top of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::future::join_all;
use nines_bus::producer::AckProducer;
use nines_proto::v1::ingest_service_server::IngestService;
use nines_proto::v1::{DeployEvent, PushRequest, PushResponse};
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::auth::Auth;
use crate::config::Limits;
use crate::door::{Method, prost_decode};
use crate::guard::{OperationGuard, VersionTracker};
use crate::metrics;
use crate::validate::validate;
use crate::wire::{self, Shape, WireError};
use crate::{Error, Result};
use nines_model::clock::now_ns;
use nines_record::{cut_guarded, identity_fingerprint};

/// Validates and publishes pushes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    producer: AckProducer,
    topic: String,
    limits: Limits,
    max_record_bytes: usize,
    /// Upper bound on how long a push waits for acknowledgements.
    ack_timeout: Duration,
    operations: OperationGuard,
    versions: VersionTracker,
}

impl Pipeline {
    pub fn new(
        producer: AckProducer,
        topic: String,
        limits: Limits,
        max_record_bytes: usize,
        delivery_timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                producer,
                topic,
                operations: OperationGuard::new(
                    limits.max_operations_per_service,
                    limits.max_tracked_bytes,
                ),
                max_record_bytes,
                ack_timeout: delivery_timeout + Duration::from_secs(1),
                versions: VersionTracker::new(limits.max_tracked_bytes / 8),
                limits,
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Publishes `req` as `tenant` (whatever its resource claims): validates all of it, then
    /// answers only after the broker has acknowledged every record.
    pub async fn publish(
        &self,
        mut req: PushRequest,
        tenant: &str,
        now: i64,
    ) -> Result<PushResponse> {
        req.resource.get_or_insert_with(Default::default).tenant = tenant.to_owned();
        validate(&mut req, &self.inner.limits, now)?;
        let mut response = PushResponse {
            accepted_requests: req.requests.len() as u64,
            accepted_deploys: req.deploys.len() as u64,
            accepted_incidents: req.incidents.len() as u64,
            accepted_gate_decisions: req.gate_decisions.len() as u64,
            records: 0,
        };
        let derived = self.inner.versions.observe(&req);
        // Unless the push is stored, the version is forgotten so the retry reveals the deploy
        // again: on an error, and also when this future is dropped (the request timed out).
        let reveal = derived
            .as_ref()
            .map(|d| self.inner.versions.pending(tenant, d.clone()));
        let result = self.produce(req, derived.as_ref(), now).await;
        if let (Ok(_), Some(r)) = (&result, reveal) {
            r.keep();
        }
        response.records = result?;
        Ok(response)
    }

    async fn produce(
        &self,
        mut req: PushRequest,
        derived: Option<&DeployEvent>,
        now: i64,
    ) -> Result<u32> {
        if req.batch_id.is_empty() {
            // Every record carries an idempotency key, so a record the producer sent twice
            // is still counted once by the aggregator. (A client that retries without its own
            // batch_id gets a new key per attempt: only its own batch_id makes retries safe.)
            req.batch_id = format!("ingest-{}", uuid::Uuid::now_v7());
        }
        let resource = req.resource.clone().expect("validate sets a resource");
        // One service's events land in one partition.
        let key = nines_record::key(&resource.tenant, &resource.service);
        let max = self.inner.max_record_bytes;
        let guard = &self.inner.operations;
        let mut records = cut_guarded(
            req,
            now,
            max,
            &mut |events| guard.apply(&resource.tenant, &resource.service, events),
            None,
        )?;
        if let Some(d) = derived {
            // A record of its own, keyed by the deploy's identity: every ingest replica that
            // notices the same new version writes the same key, and the aggregator keeps one.
            let identity = [
                resource.tenant.as_str(),
                d.service.as_str(),
                d.environment.as_str(),
                d.version.as_str(),
            ];
            let deploy = PushRequest {
                resource: Some(resource.clone()),
                batch_id: format!(
                    "telemetry-deploy-{}",
                    hex::encode(identity_fingerprint(&identity))
                ),
                deploys: vec![d.clone()],
                ..Default::default()
            };
            records.extend(cut_guarded(
                deploy,
                now,
                max,
                &mut |_| Vec::new(),
                Some(identity_fingerprint(&identity)),
            )?);
        }
        let sends = records
            .iter()
            .map(|r| self.inner.producer.send(&self.inner.topic, &key, r));
        let results = tokio::time::timeout(self.inner.ack_timeout, join_all(sends))
            .await
            .map_err(|_| Error::Timeout(self.inner.ack_timeout))?;
        for r in results {
            let delivered = r?;
            debug!(
                partition = delivered.partition,
                offset = delivered.offset,
                "acknowledged"
            );
        }
        Ok(records.len() as u32)
    }
}

/// Counts an answered push in the ingest metrics.
pub(crate) fn account(result: &Result<PushResponse>, started: Instant) {
    metrics::push_answered(result.is_ok(), started.elapsed().as_secs_f64());
    match result {
        Ok(resp) => metrics::events_accepted(resp),
        Err(e) => {
            metrics::push_rejected(e.reject_reason());
            debug!(error = %e, "push rejected");
        }
    }
}

/// The native ingest service.
#[derive(Debug, Clone)]
pub struct NativeIngest {
    pipeline: Pipeline,
    auth: Auth,
}

impl NativeIngest {
    pub fn new(pipeline: Pipeline, auth: Auth) -> Self {
        Self { pipeline, auth }
    }
}

impl Method for NativeIngest {
    type Req = PushRequest;
    type Resp = PushResponse;
    const SERVICE: &'static str = "nines.v1.IngestService";
    const PATH: &'static str = "/nines.v1.IngestService/Push";
    const EVENTS_FIELD: &'static str = "requests";
    const EVENTS_NAME: &'static str = "events";

    fn shape() -> &'static Shape {
        &wire::PUSH
    }

    fn decode(message: Bytes) -> std::result::Result<PushRequest, WireError> {
        prost_decode(message)
    }

    fn call(
        &self,
        request: Request<PushRequest>,
    ) -> BoxFuture<'static, Result<Response<PushResponse>, Status>> {
        let this = self.clone();
        Box::pin(async move { this.push(request).await })
    }
}

#[tonic::async_trait]
impl IngestService for NativeIngest {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let started = Instant::now();
        let result = match self.auth.tenant_of(&request) {
            Ok(tenant) => {
                self.pipeline
                    .publish(request.into_inner(), &tenant, now_ns())
                    .await
            }
            Err(e) => Err(e),
        };
        account(&result, started);
        result.map(Response::new).map_err(Status::from)
    }
}
