//! Records the aggregator cannot decode go to the dead-letter topic with the reason; the
//! good events around them are all counted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nines_proto::v1::{EventBatch, Resource};
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use nines_testkit::{Generator, WorkloadSpec};

use crate::support::{Env, now_ns, push_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_dead_lettered_with_a_reason() {
    let env = Env::new();
    let up = env.up();
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec::default());
    push_ok(&mut client, &generator.push(0, 60, now_ns())).await;

    // A plain producer writes what no ingest would: garbage, and a record from the future.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", env.kafka())
        .create()
        .unwrap();
    let future_version = EventBatch {
        schema_version: 99,
        resource: Some(Resource {
            service: "checkout".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let poison: [(&str, Vec<u8>); 2] = [("garbage", vec![0xff; 40]), ("future", future_version)];
    for (key, payload) in &poison {
        producer
            .send(
                FutureRecord::to("nines.events").key(*key).payload(payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
    push_ok(&mut client, &generator.push(1, 40, now_ns())).await;
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            100,
            Duration::from_secs(60)
        ),
        100
    );

    let reasons: BTreeMap<String, String> = dead_letters(&env, 2).await.into_iter().collect();
    assert_eq!(
        reasons.len(),
        2,
        "both poison records dead-lettered: {reasons:?}"
    );
    assert!(
        reasons["garbage"].starts_with("not a nines.v1.EventBatch"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons["future"],
        "unknown schema_version 99 (this aggregator reads 1)"
    );
    assert!(
        up.metrics()
            .contains("nines_aggregate_dead_letters_total 2"),
        "{}",
        up.metrics()
    );
}

/// A record dead-lettered by an aggregator that then crashed before its flush is replayed by
/// the next one, which must not send it to the dead-letter topic again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_is_not_sent_twice() {
    let env = Env::new();
    let _roles = env.broker_and_ingest();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", env.kafka())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to("nines.events")
                .key("poison-1")
                .payload(&vec![0xff_u8; 40]),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // The first aggregator dead-letters it, then aborts in its first flush.
    let mut doomed = env.aggregator("doomed", &[("FAILPOINTS", "store.before_write=return")]);
    let status = doomed
        .wait_exit(Duration::from_secs(60))
        .expect("the doomed aggregator crashes at its first flush");
    assert!(!status.success(), "{status:?}");
    assert!(
        doomed.log_text().contains("dead-lettering record"),
        "{}",
        doomed.log_text()
    );
    // The next one replays the poison record, then counts good events after it.
    let next = env.aggregator("aggregate", &[]);
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec::default());
    push_ok(&mut client, &generator.push(0, 25, now_ns())).await;
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            25,
            Duration::from_secs(60)
        ),
        25
    );
    // Everything in the dead-letter topic.
    let keys: Vec<String> = dead_letters(&env, 1)
        .await
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(keys, ["poison-1"]);
    assert!(
        next.log_text().contains("record already dead-lettered"),
        "{}",
        next.log_text()
    );

    assert!(
        next.metrics()
            .contains("nines_aggregate_dead_letters_total 0")
            || !next
                .metrics()
                .contains("nines_aggregate_dead_letters_total"),
        "{}",
        next.metrics()
    );
}

/// Every record of the dead-letter topic as (key, `nines.reason` header), read from the start
/// of every partition by a plain consumer with no group (a group join can stall on a loaded
/// machine): at least `at_least` of them, then until 5 s pass without one (so a copy too many
/// is seen), within 60 s.
async fn dead_letters(env: &Env, at_least: usize) -> Vec<(String, String)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.kafka())
        .set("group.id", "unused-by-assign")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some("nines.dead-letter"), Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        assignment
            .add_partition_offset("nines.dead-letter", partition.id(), Offset::Beginning)
            .unwrap();
    }
    assert!(
        assignment.count() > 0,
        "the dead-letter topic has partitions"
    );
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            Ok(Ok(m)) => {
                let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                let reason = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "nines.reason"))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                out.push((key, reason));
                quiet_since = Instant::now();
            }
            _ if out.len() >= at_least && quiet_since.elapsed() > Duration::from_secs(5) => break,
            _ => {}
        }
    }
    out
}
