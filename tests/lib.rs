//! End-to-end tests: the real `nines` binary, its embedded Kafka-protocol broker over TCP on
//! 127.0.0.1, real Parquet files, real gRPC clients. Each test gets its own ports and data
//! directory, and every wait is bounded.

#![allow(
    unreachable_pub,
    reason = "helpers shared by the test modules of this one binary"
)]

mod support;

mod architecture;
mod broker_log;
mod compose;
mod corpus;
mod dead_role;
mod delta;
mod dora;
mod e2e;
mod faults;
mod idempotency;
mod ingest_bounds;
mod late_events;
mod metrics;
mod otlp;
mod parquet_files;
mod poison;
mod query;
mod query_live;
mod release;
mod report;
mod restart;
mod slo;
mod slo_series;
mod unavailable;
