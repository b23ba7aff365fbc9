//! Ingest cannot be knocked over by what a body decodes into: small gzip'd bodies of millions
//! of empty messages are refused before authentication reads them and, with a key, before
//! they are decoded, while ingest's memory stays flat.

use tonic::Code;

use crate::support::{Env, metric, raw_call_with};

const PUSH: &str = "/nines.v1.IngestService/Push";
const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const KEY: &str = "k-bounds";
const MIB: u64 = 1024 * 1024;
/// Concurrent bodies per door and round.
const CONCURRENT: usize = 6;

/// A length-delimited field `number` around `inner`.
fn field(number: u8, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    prost::encoding::encode_varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

/// `2a 00` (an empty `incidents` entry) until just under 16 MiB: 8 M incidents.
fn native_bomb() -> (Vec<u8>, usize) {
    let n = 8 * 1024 * 1024 - 64;
    ([0x2a, 0x00].repeat(n), n)
}

/// One resource with one scope holding `12 00` (an empty span) until just under 16 MiB.
fn otlp_bomb() -> (Vec<u8>, usize) {
    let n = 8 * 1024 * 1024 - 64;
    let spans = [0x12, 0x00].repeat(n);
    // ExportTraceServiceRequest.resource_spans → ResourceSpans.scope_spans → the spans.
    (field(1, &field(2, &spans)), n)
}

/// A push of one request event of service `checkout`.
fn one_request(batch_id: &str) -> nines_proto::v1::PushRequest {
    nines_proto::v1::PushRequest {
        batch_id: batch_id.into(),
        resource: Some(nines_proto::v1::Resource {
            service: "checkout".into(),
            ..Default::default()
        }),
        requests: vec![nines_proto::v1::RequestEvent {
            time_unix_nano: crate::support::now_ns(),
            operation: "GET /".into(),
            status_code: 200,
            duration_nano: 1_000_000,
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn round(env: &Env, key: Option<&str>) -> Vec<tonic::Status> {
    let header = key.map(|k| format!("Bearer {k}"));
    let (native, _) = native_bomb();
    let (otlp, _) = otlp_bomb();
    let mut calls = Vec::new();
    for i in 0..2 * CONCURRENT {
        let (path, body) = if i % 2 == 0 {
            (PUSH, native.clone())
        } else {
            (TRACES, otlp.clone())
        };
        let endpoint = env.endpoint();
        let header = header.clone();
        calls.push(tokio::spawn(async move {
            let headers: Vec<(&'static str, &str)> = header
                .as_deref()
                .map(|h| vec![("authorization", h)])
                .unwrap_or_default();
            raw_call_with(&endpoint, path, body, &headers, true)
                .await
                .expect_err("a bomb must be refused")
        }));
    }
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_of_millions_of_empty_messages_are_refused_before_decoding() {
    let env = Env::with_config(&format!(
        "[[ingest.api_keys]]\ntenant = \"acme\"\nkey = \"{KEY}\"\n"
    ));
    let (_broker, ingest) = env.broker_and_ingest();
    // Warm up: a real push with the key, so the baseline includes a connected producer.
    let mut client = env.client().await;
    let mut req = one_request("warm-up");
    let mut request = tonic::Request::new(req.clone());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    client.push(request).await.expect("warm-up push");

    let (native, events) = native_bomb();
    let (otlp, _) = otlp_bomb();
    assert!(native.len() < 16 * MIB as usize && otlp.len() < 16 * MIB as usize);
    let (rss_before, _) = ingest.rss().unwrap();
    ingest.reset_peak_rss().unwrap();

    let without_key = round(&env, None).await;
    let with_key = round(&env, Some(KEY)).await;
    let (_, peak) = ingest.rss().unwrap();
    let growth = peak.saturating_sub(rss_before);
    println!(
        "ingest RSS before {} MiB, peak during {} bombs {} MiB (+{} MiB)",
        rss_before / MIB,
        4 * CONCURRENT,
        peak / MIB,
        growth / MIB
    );
    assert!(
        growth < 128 * MIB,
        "ingest's peak RSS grew by {} MiB",
        growth / MIB
    );

    for s in &without_key {
        assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
        assert!(s.message().starts_with("missing API key"), "{s:?}");
    }

    assert_eq!(with_key.len(), 2 * CONCURRENT);
    for (i, s) in with_key.iter().enumerate() {
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        let expected = if i % 2 == 0 {
            format!(
                "requests: {events} events in one request, more than the limit of 20000 \
                 (ingest.max_events_per_request)"
            )
        } else {
            format!(
                "resource_spans: {events} spans in one request, more than the limit of \
                 20000 (ingest.max_events_per_request)"
            )
        };
        assert_eq!(s.message(), expected);
    }

    // Still serving: a normal push goes through.
    req.batch_id = "after".into();
    let mut request = tonic::Request::new(req);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    let answer = client.push(request).await.expect("push after the bombs");
    assert_eq!(answer.into_inner().accepted_requests, 1);
    let m = ingest.metrics();
    let rejected = |reason: &str| {
        crate::support::metric(
            &m,
            "nines_ingest_pushes_rejected_total",
            &format!("{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(rejected("unauthenticated"), Some((2 * CONCURRENT) as f64));
    assert_eq!(rejected("too_many_events"), Some((2 * CONCURRENT) as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_value_bomb_is_refused_by_its_decoded_size() {
    // One span whose one attribute is an array of 4 M empty values: 1 event, 8 MiB on the
    // wire, over 100 MiB once decoded.
    let env = Env::new();
    let (_broker, ingest) = env.broker_and_ingest();
    let values = [0x0a, 0x00].repeat(4 * 1024 * 1024);
    let any = field(5, &values); // AnyValue.array_value, whose values are the `0a 00`s
    let kv = [field(1, b"k"), field(2, &any)].concat(); // KeyValue { key, value }
    let span = field(9, &kv); // Span.attributes
    let body = field(1, &field(2, &field(2, &span)));
    let status = raw_call_with(&env.endpoint(), TRACES, body, &[], true)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("more than the limit of 67108864 (ingest.max_decoded_bytes)"),
        "{status:?}"
    );
    let m = ingest.metrics();
    assert_eq!(
        crate::support::metric(
            &m,
            "nines_ingest_pushes_rejected_total",
            "{reason=\"decoded_too_large\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_ingest_remembers_of_services_is_bounded() {
    // 500 pushes, each from a service never seen before with 1,000 operations of 400 bytes:
    // 200 MB of operation names if ingest kept them all.
    let env = Env::new();
    let (_broker, ingest) = env.broker_and_ingest();
    let mut client = env.client().await;
    let now = crate::support::now_ns();
    let push = |i: usize| nines_proto::v1::PushRequest {
        resource: Some(nines_proto::v1::Resource {
            service: format!("svc-{i}"),
            version: "v1".into(),
            ..Default::default()
        }),
        batch_id: format!("b-{i}"),
        requests: (0..1_000)
            .map(|k| nines_proto::v1::RequestEvent {
                time_unix_nano: now,
                operation: format!("{k:0>400}"),
                status_code: 200,
                duration_nano: 1_000,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    crate::support::push_ok(&mut client, &push(0)).await;
    let (rss_before, _) = ingest.rss().unwrap();
    ingest.reset_peak_rss().unwrap();
    for i in 1..=500 {
        crate::support::push_ok(&mut client, &push(i)).await;
    }
    let (rss_after, peak) = ingest.rss().unwrap();
    println!(
        "ingest RSS before {} MiB, after 500 services {} MiB, peak {} MiB",
        rss_before / MIB,
        rss_after / MIB,
        peak / MIB
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 64 * MIB,
        "ingest's RSS grew by {} MiB",
        rss_after.saturating_sub(rss_before) / MIB
    );
    let evicted = crate::support::metric(
        &ingest.metrics(),
        "nines_ingest_tracked_services_evicted_total",
        "{map=\"operations\"}",
    )
    .unwrap_or(0.0);
    // 32 MiB hold about 75 such services (1,000 × 464 bytes each, plus the entry).
    assert!(evicted >= 400.0, "{evicted} services evicted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_cannot_hold_every_connection_slot() {
    let env = Env::new();
    let broker = env.spawn("broker", &[], &["broker"]);
    let kafka = env.kafka();
    let ingest = env.spawn(
        "ingest",
        &[
            ("NINES__INGEST__MAX_CONNECTIONS", "2"),
            ("NINES__INGEST__HANDSHAKE_TIMEOUT", "1s"),
        ],
        &["ingest", "--kafka", &kafka],
    );
    // Two bare TCP connections that never send a byte take both slots.
    let addr = format!("127.0.0.1:{}", env.ingest_port);
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // A real client still gets through once the idle ones are closed by the server.
    let mut client = env.client().await;
    let push = one_request("after-idle");
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        crate::support::push_ok(&mut client, &push),
    )
    .await
    .expect("a push gets through while idle sockets wait to be closed");
    assert_eq!(answer.accepted_requests, 1);
    // The server closed both idle sockets: reading them reaches the end (after the server's
    // own HTTP/2 SETTINGS frame, which it sends at once).
    for mut s in idle {
        let mut rest = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest),
        )
        .await
        .expect("closed by the server")
        .ok();
        assert!(rest.len() < 1024, "an idle socket got {} bytes", rest.len());
    }
    assert_eq!(
        crate::support::metric(
            &ingest.metrics(),
            "nines_ingest_connections_timed_out_total",
            ""
        ),
        Some(2.0)
    );
    drop(broker);
}

/// A client that resets its stream mid-body was not refused: ingest counts the call as
/// abandoned, and no refusal reason moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_body_is_counted_as_abandoned_not_refused() {
    use tonic::codegen::Service;
    let env = Env::new();
    let (_broker, ingest) = env.broker_and_ingest();
    let refusals = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("nines_ingest_pushes_rejected_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = ingest.metrics();
    assert_eq!(
        metric(&before, "nines_ingest_calls_abandoned_total", ""),
        Some(0.0)
    );
    let endpoint = env.endpoint();
    let mut channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The frame declares 1,000 bytes; 10 are sent, then the client's body fails, which
    // resets the stream.
    let mut head = vec![0_u8];
    head.extend_from_slice(&1_000_u32.to_be_bytes());
    head.extend_from_slice(&[0; 10]);
    let frames: Vec<Result<http_body::Frame<bytes::Bytes>, std::io::Error>> = vec![
        Ok(http_body::Frame::data(bytes::Bytes::from(head))),
        Err(std::io::Error::other("client gone")),
    ];
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
    let request = tonic::codegen::http::Request::builder()
        .method("POST")
        .uri(format!("{endpoint}/nines.v1.IngestService/Push"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(body))
        .unwrap();
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap();
    let _ = channel.call(request).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = ingest.metrics();
        if metric(&text, "nines_ingest_calls_abandoned_total", "") == Some(1.0) {
            assert_eq!(refusals(&text), refusals(&before), "no refusal counted");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned call was not counted:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
