//! `nines.v1.IngestService`: validate, cut, publish, and answer after the broker's ack.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use metrics::{counter, histogram};
use nines_bus::producer::AckProducer;
use nines_proto::v1::ingest_service_server::{IngestService, IngestServiceServer};
use nines_proto::v1::{PushRequest, PushResponse};
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::config::Limits;
use crate::records::cut;
use crate::validate::validate;
use crate::{Error, Result};

/// The native ingest service.
#[derive(Debug, Clone)]
pub struct NativeIngest {
    producer: AckProducer,
    topic: String,
    limits: Limits,
    max_record_bytes: usize,
    /// Upper bound on how long a push waits for acknowledgements.
    ack_timeout: Duration,
}

impl NativeIngest {
    pub fn new(
        producer: AckProducer,
        topic: String,
        limits: Limits,
        max_record_bytes: usize,
        delivery_timeout: Duration,
    ) -> Self {
        Self {
            producer,
            topic,
            limits,
            max_record_bytes,
            ack_timeout: delivery_timeout + Duration::from_secs(1),
        }
    }

    /// The tonic server for this service, with the request size limit applied.
    pub fn into_server(self, max_request_bytes: usize) -> IngestServiceServer<Self> {
        IngestServiceServer::new(self).max_decoding_message_size(max_request_bytes)
    }

    async fn push_inner(&self, mut req: PushRequest) -> Result<PushResponse> {
        let now = now_ns();
        validate(&mut req, &self.limits, now)?;
        let resource = req.resource.as_ref().expect("validate sets a resource");
        // One service's events land in one partition.
        let key = format!("{}\u{0}{}", resource.tenant, resource.service).into_bytes();
        let mut response = PushResponse {
            accepted_requests: req.requests.len() as u64,
            accepted_deploys: req.deploys.len() as u64,
            accepted_incidents: req.incidents.len() as u64,
            records: 0,
        };
        if req.batch_id.is_empty() {
            // Every record carries an idempotency key, so a record the producer sent twice
            // is still counted once by the aggregator. (A client that retries without its own
            // batch_id gets a new key per attempt: only its own batch_id makes retries safe.)
            req.batch_id = format!("ingest-{}", uuid::Uuid::now_v7());
        }
        let records = cut(req, now, self.max_record_bytes)?;
        response.records = records.len() as u32;
        let sends = records
            .iter()
            .map(|r| self.producer.send(&self.topic, &key, r));
        let results = tokio::time::timeout(self.ack_timeout, join_all(sends))
            .await
            .map_err(|_| Error::Timeout(self.ack_timeout))?;
        for r in results {
            let delivered = r?;
            debug!(
                partition = delivered.partition,
                offset = delivered.offset,
                "acknowledged"
            );
        }
        Ok(response)
    }
}

#[tonic::async_trait]
impl IngestService for NativeIngest {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let started = Instant::now();
        let result = self.push_inner(request.into_inner()).await;
        let outcome = if result.is_ok() { "ok" } else { "rejected" };
        histogram!("nines_ingest_push_duration_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(resp) => {
                counter!("nines_ingest_events_accepted_total", "kind" => "request")
                    .increment(resp.accepted_requests);
                counter!("nines_ingest_events_accepted_total", "kind" => "deploy")
                    .increment(resp.accepted_deploys);
                counter!("nines_ingest_events_accepted_total", "kind" => "incident")
                    .increment(resp.accepted_incidents);
                Ok(Response::new(resp))
            }
            Err(e) => {
                counter!("nines_ingest_pushes_rejected_total", "reason" => e.reason_label())
                    .increment(1);
                debug!(error = %e, "push rejected");
                Err(e.into())
            }
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
