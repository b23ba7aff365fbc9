//! The publishing pipeline every front door shares (stamp tenant, validate, guard, cut,
//! publish, answer after the broker's ack), and `nines.v1.IngestService` on top of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::future::join_all;
use nines_bus::producer::AckProducer;
use nines_proto::v1::{DeployEvent, PushRequest, PushResponse, RequestEvent};
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::auth::Auth;
use crate::config::Limits;
use crate::door::Method;
use crate::guard::{OperationGuard, VersionTracker};
use crate::metrics;
use crate::validate::validate_push;
use crate::wire::{self, Shape, WireError};
use crate::{Error, Result};
use nines_model::clock::now_ns;
use nines_record::{FINGERPRINT_BYTES, RequestLike, cut_guarded, identity_fingerprint, read_push};

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
        let requests = std::mem::take(&mut req.requests);
        self.publish_events(req, &requests, tenant, now).await
    }

    /// [`Pipeline::publish`] for the bytes of a push (the native door): its request events
    /// are read in place and copied into the records as they came ([`nines_record::read_push`]).
    pub async fn publish_bytes(&self, body: Bytes, tenant: &str, now: i64) -> Result<PushResponse> {
        let mut attributes = Vec::new();
        let push = read_push(&body, &mut attributes).map_err(Error::Wire)?;
        self.publish_events(push.head, &push.requests, tenant, now)
            .await
    }

    /// Publishes the push `head` with `requests` (`head.requests` is not looked at): what
    /// [`Pipeline::publish`] does, for request events that come apart from their push (read
    /// in place, or mapped from OTLP).
    pub async fn publish_events(
        &self,
        mut head: PushRequest,
        requests: &[impl RequestLike + Sync],
        tenant: &str,
        now: i64,
    ) -> Result<PushResponse> {
        head.resource.get_or_insert_with(Default::default).tenant = tenant.to_owned();
        validate_push(&mut head, requests, &self.inner.limits, now)?;
        let mut response = PushResponse {
            accepted_requests: requests.len() as u64,
            accepted_deploys: head.deploys.len() as u64,
            accepted_incidents: head.incidents.len() as u64,
            accepted_gate_decisions: head.gate_decisions.len() as u64,
            records: 0,
        };
        let derived = self
            .inner
            .versions
            .observe(head.resource.as_ref(), requests);
        // Unless the push is stored, the version is forgotten so the retry reveals the deploy
        // again: on an error, and also when this future is dropped (the request timed out).
        let reveal = derived
            .as_ref()
            .map(|d| self.inner.versions.pending(tenant, d.clone()));
        let resource = head.resource.as_ref().expect("validate sets a resource");
        // One service's events land in one partition.
        let key = nines_record::key(&resource.tenant, &resource.service);
        let result = match self.cut(head, requests, derived.as_ref(), now) {
            Ok(records) => self.produce(&key, records).await,
            Err(e) => Err(e),
        };
        if let (Ok(_), Some(r)) = (&result, reveal) {
            r.keep();
        }
        response.records = result?;
        Ok(response)
    }

    /// The records of a validated push, and of the deploy it revealed.
    fn cut(
        &self,
        mut head: PushRequest,
        requests: &[impl RequestLike],
        derived: Option<&DeployEvent>,
        now: i64,
    ) -> Result<Vec<Vec<u8>>> {
        let identity = own_batch_id(&mut head);
        let resource = head.resource.clone().expect("validate sets a resource");
        let max = self.inner.max_record_bytes;
        let guard = &self.inner.operations;
        let mut records = cut_guarded(
            head,
            requests,
            now,
            max,
            &mut |operations| guard.apply(&resource.tenant, &resource.service, operations),
            identity,
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
            records.extend(cut_guarded::<RequestEvent>(
                deploy,
                &[],
                now,
                max,
                &mut |_| Vec::new(),
                Some(identity_fingerprint(&identity)),
            )?);
        }
        Ok(records)
    }

    /// Sends the records of one push (one service's: one key, one partition) and waits for
    /// the broker's acknowledgement of each.
    async fn produce(&self, key: &[u8], records: Vec<Vec<u8>>) -> Result<u32> {
        let sends = records
            .iter()
            .map(|r| self.inner.producer.send(&self.inner.topic, key, r));
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

/// Gives a push that names no batch id one of ingest's own, and returns the fingerprint its
/// records' key then carries: that of the id, not of the content.
///
/// Every record carries an idempotency key, so a record the producer sent twice is still
/// counted once by the aggregator. (A client that retries without its own batch id gets a
/// new key per attempt: only its own batch id makes retries safe.) The id is new for this
/// attempt alone, so no other push carries it and the content has nothing to tell apart:
/// hashing every event's bytes (a tenth of the door's CPU) would add nothing to the key.
pub fn own_batch_id(head: &mut PushRequest) -> Option<[u8; FINGERPRINT_BYTES]> {
    if !head.batch_id.is_empty() {
        return None;
    }
    head.batch_id = format!("ingest-{}", uuid::Uuid::now_v7());
    Some(identity_fingerprint(&[&head.batch_id]))
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
    /// The push's bytes: read in place by [`Pipeline::publish_bytes`].
    type Req = Bytes;
    type Resp = PushResponse;
    const SERVICE: &'static str = "nines.v1.IngestService";
    const PATH: &'static str = "/nines.v1.IngestService/Push";
    const EVENTS_FIELD: &'static str = "requests";
    const EVENTS_NAME: &'static str = "events";

    fn shape() -> &'static Shape {
        &wire::PUSH
    }

    fn decode(message: Bytes) -> std::result::Result<Bytes, WireError> {
        Ok(message)
    }

    fn call(
        &self,
        request: Request<Bytes>,
    ) -> BoxFuture<'static, Result<Response<PushResponse>, Status>> {
        let this = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let result = match this.auth.tenant_of(&request) {
                Ok(tenant) => {
                    this.pipeline
                        .publish_bytes(request.into_inner(), &tenant, now_ns())
                        .await
                }
                Err(e) => Err(e),
            };
            account(&result, started);
            result.map(Response::new).map_err(Status::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use nines_proto::v1::{PushRequest, RequestEvent};
    use nines_record::{cut_guarded, decode, identity_fingerprint};

    use super::own_batch_id;

    fn push(batch_id: &str) -> PushRequest {
        PushRequest {
            batch_id: batch_id.into(),
            ..Default::default()
        }
    }

    fn fingerprint(mut head: PushRequest, requests: &[RequestEvent]) -> Vec<u8> {
        let identity = own_batch_id(&mut head);
        let records = cut_guarded(head, requests, 7, 1 << 20, &mut |_| Vec::new(), identity);
        decode(&records.unwrap()[0]).unwrap().content_fingerprint
    }

    #[test]
    fn a_push_without_a_batch_id_is_keyed_by_the_id_ingest_gives_it() {
        let events = |duration_nano| {
            [RequestEvent {
                operation: "GET /".into(),
                duration_nano,
                ..Default::default()
            }]
        };
        // The client's own batch id: the key's fingerprint is of the content.
        let mut own = push("b-1");
        assert_eq!(own_batch_id(&mut own), None);
        assert_eq!(own.batch_id, "b-1");
        assert_ne!(
            fingerprint(push("b-1"), &events(1)),
            fingerprint(push("b-1"), &events(2))
        );
        assert_eq!(
            fingerprint(push("b-1"), &events(1)),
            fingerprint(push("b-1"), &events(1))
        );
        // None: a new id for every push, and the fingerprint of that id.
        let (mut a, mut b) = (push(""), push(""));
        let (fa, fb) = (own_batch_id(&mut a), own_batch_id(&mut b));
        assert!(a.batch_id.starts_with("ingest-"), "{}", a.batch_id);
        assert_ne!(a.batch_id, b.batch_id);
        assert_eq!(fa, Some(identity_fingerprint(&[&a.batch_id])));
        assert_eq!(fb, Some(identity_fingerprint(&[&b.batch_id])));
        // Whatever the content: the id alone tells this push apart.
        for duration_nano in [1, 2] {
            let records = cut_guarded(
                a.clone(),
                &events(duration_nano),
                7,
                1 << 20,
                &mut |_| Vec::new(),
                fa,
            );
            let record = decode(&records.unwrap()[0]).unwrap();
            assert_eq!(record.batch_id, a.batch_id);
            assert_eq!(record.content_fingerprint, fa.unwrap().to_vec());
        }
    }
}
