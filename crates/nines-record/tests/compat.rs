//! Records of every version, checked in as bytes (`tests/records/v<N>-part<P>.bin`), read by
//! this build. Ingest and the aggregator are deployed apart, so during a rolling upgrade an
//! aggregator reads what an older (or newer) ingest wrote: a change to the record that this
//! test does not notice would be misread in production.
//!
//! The current version's files are also what this build writes for the same push, byte for
//! byte, so a change of encoding is a decision (bump [`nines_record::VERSION`], add the new
//! files with `NINES_BLESS=1`, keep the old ones and say what the aggregator does with them).

use std::path::PathBuf;

use nines_proto::v1::{
    Attribute, Commit, DeployEvent, DeployOutcome, EventBatch, GateDecisionEvent, IncidentEvent,
    PushRequest, RequestEvent, Resource,
};
use nines_record::{DecodeError, VERSION, cut, decode, read};
use prost::Message as _;

/// The instant every time below is taken from: 2026-11-02T10:00:00Z.
const T0: i64 = 1_793_613_600_000_000_000;
/// When ingest accepted the push.
const RECEIVED: i64 = T0 + 5_000_000_000;
/// Small enough that the push is cut into two parts.
const MAX_BYTES: usize = 600;

/// One push with every kind of event and every field set, as a client would send it.
/// This crate's directory, read when the test runs (see `repo_root` in the workspace's
/// `tests/support.rs`: a binary cargo reused from another checkout must not read that one).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("tests run by cargo")
        .into()
}

fn push() -> PushRequest {
    PushRequest {
        resource: Some(Resource {
            tenant: "acme".into(),
            service: "checkout".into(),
            environment: "prod".into(),
            version: "v1.2.3".into(),
        }),
        batch_id: "compat-1".into(),
        requests: (0..4)
            .map(|i| RequestEvent {
                time_unix_nano: T0 + i * 1_000_000_000,
                operation: format!("GET /cart/{i}"),
                status_code: if i == 3 { 503 } else { 200 },
                error: i == 3,
                duration_nano: 12_000_000 + i * 1_000_000,
                trace_id: format!("{i:032x}"),
                attributes: vec![Attribute {
                    key: "region".into(),
                    value: "eu-west-1".into(),
                }],
            })
            .collect(),
        deploys: vec![DeployEvent {
            time_unix_nano: T0 - 60_000_000_000,
            service: "checkout".into(),
            environment: "prod".into(),
            version: "v1.2.3".into(),
            commits: vec![Commit {
                sha: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
                time_unix_nano: T0 - 3_600_000_000_000,
            }],
            outcome: DeployOutcome::Succeeded as i32,
            source: 0,
        }],
        incidents: vec![IncidentEvent {
            id: "INC-7".into(),
            service: "checkout".into(),
            opened_at_unix_nano: T0 + 2_000_000_000,
            resolved_at_unix_nano: T0 + 600_000_000_000,
            severity: "sev2".into(),
            cause_version: "v1.2.3".into(),
        }],
        gate_decisions: vec![GateDecisionEvent {
            time_unix_nano: T0 + 700_000_000_000,
            service: "checkout".into(),
            environment: "prod".into(),
            version: "v1.2.4".into(),
            allowed: false,
            labels: vec!["team=payments".into()],
            reasons: vec!["checkout-availability: 12% of the budget left".into()],
            override_label: String::new(),
            requester: "ci/checkout#77".into(),
            policy: "default".into(),
            evaluated_at_unix_nano: T0 + 700_000_000_000,
        }],
    }
}

fn dir() -> PathBuf {
    manifest_dir().join("tests/records")
}

fn file(version: u32, part: usize) -> PathBuf {
    dir().join(format!("v{version}-part{part}.bin"))
}

/// The checked-in records of `version`, in part order.
fn checked_in(version: u32) -> Vec<Vec<u8>> {
    (0..)
        .map(|p| file(version, p))
        .take_while(|f| f.exists())
        .map(|f| std::fs::read(f).unwrap())
        .collect()
}

#[test]
fn this_build_writes_the_current_version_byte_for_byte() {
    let records = cut(push(), RECEIVED, MAX_BYTES).unwrap();
    if std::env::var_os("NINES_BLESS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for (p, r) in records.iter().enumerate() {
            std::fs::write(file(VERSION, p), r).unwrap();
        }
    }
    let stored = checked_in(VERSION);
    assert_eq!(
        stored.len(),
        2,
        "tests/records/v{VERSION}-part*.bin: two parts checked in (NINES_BLESS=1 writes them)"
    );
    assert_eq!(
        records, stored,
        "the encoding of version {VERSION} changed: bump nines_record::VERSION"
    );
}

#[test]
fn version_1_records_read_back_as_the_push_that_was_sent() {
    let parts: Vec<EventBatch> = checked_in(1)
        .iter()
        .map(|r| decode(r).expect("version 1 is read"))
        .collect();
    assert_eq!(parts.len(), 2);
    // The aggregator's reader reads each part as prost does.
    for (r, part) in checked_in(1).iter().zip(&parts) {
        assert_eq!(
            &read(r, &mut Vec::new())
                .expect("version 1 is read")
                .to_event_batch(),
            part
        );
    }
    let sent = push();
    for (i, b) in parts.iter().enumerate() {
        assert_eq!((b.schema_version, b.part, b.parts), (1, i as u32, 2));
        assert_eq!(b.resource, sent.resource);
        assert_eq!(b.batch_id, "compat-1");
        assert_eq!(b.received_at_unix_nano, RECEIVED);
        assert_eq!(b.content_fingerprint.len(), 16);
        assert_eq!(b.content_fingerprint, parts[0].content_fingerprint);
    }
    // Every event arrives once, in order, whatever part it was cut into.
    let all = |f: fn(&EventBatch) -> usize| parts.iter().map(f).sum::<usize>();
    assert_eq!(all(|b| b.requests.len()), 4);
    let requests: Vec<RequestEvent> = parts.iter().flat_map(|b| b.requests.clone()).collect();
    assert_eq!(requests, sent.requests);
    let deploys: Vec<DeployEvent> = parts.iter().flat_map(|b| b.deploys.clone()).collect();
    assert_eq!(deploys, sent.deploys);
    let incidents: Vec<IncidentEvent> = parts.iter().flat_map(|b| b.incidents.clone()).collect();
    assert_eq!(incidents, sent.incidents);
    let gates: Vec<GateDecisionEvent> = parts
        .iter()
        .flat_map(|b| b.gate_decisions.clone())
        .collect();
    assert_eq!(gates, sent.gate_decisions);
    // Spot values, written out rather than taken from `push()`.
    assert_eq!(requests[3].status_code, 503);
    assert!(requests[3].error);
    assert_eq!(requests[3].duration_nano, 15_000_000);
    assert_eq!(
        incidents[0].resolved_at_unix_nano,
        1_793_614_200_000_000_000
    );
}

#[test]
fn other_versions_and_other_bytes_are_refused_by_name() {
    let mut b = decode(&checked_in(1)[0]).unwrap();
    b.schema_version = VERSION + 1;
    let err = decode(&b.encode_to_vec()).unwrap_err();
    assert!(matches!(err, DecodeError::UnknownVersion { found } if found == VERSION + 1));
    assert_eq!(
        err.to_string(),
        format!(
            "unknown schema_version {} (this aggregator reads {VERSION})",
            VERSION + 1
        )
    );
    let err = decode(&[0xff; 40]).unwrap_err();
    assert!(matches!(err, DecodeError::NotARecord(_)));
    assert!(err.to_string().starts_with("not a nines.v1.EventBatch: "));
    // The aggregator's reader refuses the same, by the same names.
    let err = read(&b.encode_to_vec(), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, DecodeError::UnknownVersion { found } if found == VERSION + 1));
    let err = read(&[0xff; 40], &mut Vec::new()).unwrap_err();
    assert!(err.to_string().starts_with("not a nines.v1.EventBatch: "));
}

#[test]
fn a_service_has_one_key() {
    assert_eq!(nines_record::key("acme", "checkout"), b"acme\0checkout");
    // The separator keeps tenant and service apart: no two pairs share a key.
    assert_ne!(nines_record::key("ab", "c"), nines_record::key("a", "bc"));
}
