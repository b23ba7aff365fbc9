//! Push generated traffic through `nines up` and check every number against the sender's own
//! ledger: totals and errors from `requests` and `sli_1m`, and percentiles from merged
//! sketches within the sketch's stated accuracy.

use std::time::Duration;

use nines_model::sketch::RELATIVE_ACCURACY;
use nines_testkit::{Generator, Ledger, WorkloadSpec};

use crate::support::{Env, now_ns, push_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_errors_and_percentiles_are_exact() {
    let env = Env::new();
    let _up = env.up();
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        services: 3,
        operations_per_service: 4,
        error_ratio: 0.05,
        seed: 42,
        ..WorkloadSpec::default()
    });
    let mut ledger = Ledger::default();
    for i in 0..30 {
        let push = generator.push(i % 3, 200 + i * 7, now_ns());
        let resp = push_ok(&mut client, &push).await;
        assert_eq!(resp.accepted_requests as usize, push.requests.len());
        ledger.record(&push);
    }
    let expected = ledger.events() as i64;
    assert_eq!(expected, (0..30).map(|i| 200 + i * 7).sum::<i64>());

    let got = env.wait_for(
        "SELECT count(*) AS n FROM requests",
        expected,
        Duration::from_secs(60),
    );
    assert_eq!(got, expected, "rows in requests");
    let got = env.wait_for(
        "SELECT sum(total) AS n FROM sli_1m",
        expected,
        Duration::from_secs(30),
    );
    assert_eq!(got, expected, "sum(total) in sli_1m");

    for (service, tally) in &ledger.services {
        let raw = env.sql(&format!(
            "SELECT count(*) AS n, sum(CASE WHEN error THEN 1 ELSE 0 END) AS errors \
             FROM requests WHERE service = '{service}'"
        ));
        assert_eq!(raw[0]["n"], tally.events, "{service} events in requests");
        assert_eq!(
            raw[0]["errors"], tally.errors,
            "{service} errors in requests"
        );

        let rollup = env.sql(&format!(
            "SELECT sum(total) AS total, sum(errors) AS errors, sum(client_errors) AS client_errors, \
                    sketch_quantile(latency_sketch, 0.5) AS p50, \
                    sketch_quantile(latency_sketch, 0.99) AS p99, \
                    max(duration_max_ns) AS max_ns \
             FROM sli_1m WHERE service = '{service}'"
        ));
        let r = &rollup[0];
        assert_eq!(r["total"], tally.events, "{service} total");
        assert_eq!(r["errors"], tally.errors, "{service} errors");
        assert_eq!(
            r["client_errors"], tally.client_errors,
            "{service} client errors"
        );
        assert_eq!(
            r["max_ns"].as_i64().unwrap(),
            *tally.durations.iter().max().unwrap(),
            "{service} max"
        );
        // Latency SLI: events at most 100 ms. The sketch may place values within its
        // accuracy of the threshold on either side, so the exact answer is bracketed.
        let threshold = 100_000_000.0_f64;
        let good = env.sql_i64(&format!(
            "SELECT sketch_count_under(latency_sketch, {threshold}) AS n \
             FROM sli_1m WHERE service = '{service}'"
        ));
        let at_most = |t: f64| tally.durations.iter().filter(|&&d| d as f64 <= t).count() as i64;
        let (lo, hi) = (
            at_most(threshold * (1.0 - RELATIVE_ACCURACY)),
            at_most(threshold * (1.0 + RELATIVE_ACCURACY)),
        );
        assert!(
            (lo..=hi).contains(&good),
            "{service}: sketch_count_under {good}, exact between {lo} and {hi}"
        );
        for (q, column) in [(0.5, "p50"), (0.99, "p99")] {
            let exact = ledger.exact_quantile(service, q).unwrap() as f64;
            let estimate = r[column].as_f64().unwrap();
            let err = (estimate - exact).abs() / exact;
            assert!(
                err <= RELATIVE_ACCURACY,
                "{service} {column}: sketch {estimate} vs exact {exact} (relative error {err})"
            );
        }
    }
}

/// `--format csv` prints exactly the header and rows, for scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_csv_output_is_exact() {
    let env = Env::new();
    let mut up = env.up();
    let mut client = env.client().await;
    let mut generator = Generator::new(WorkloadSpec {
        seed: 7,
        ..WorkloadSpec::default()
    });
    for (service, n) in [(0, 120), (1, 35)] {
        push_ok(&mut client, &generator.push(service, n, now_ns())).await;
    }
    assert_eq!(
        env.wait_for(
            "SELECT count(*) AS n FROM requests",
            155,
            Duration::from_secs(60)
        ),
        155
    );
    let csv = env.sql_raw(
        "SELECT service, count(*) AS n FROM requests GROUP BY service ORDER BY service",
        "csv",
    );
    assert_eq!(csv, "service,n\ncheckout,120\npayments,35\n");
    let table = env.sql_raw(
        "SELECT service, count(*) AS n FROM requests GROUP BY service ORDER BY service",
        "table",
    );
    assert_eq!(
        table,
        "+----------+-----+\n\
         | service  | n   |\n\
         +----------+-----+\n\
         | checkout | 120 |\n\
         | payments | 35  |\n\
         +----------+-----+\n"
    );
    // SIGTERM: stop accepting, flush, commit, stop the broker, exit 0.
    assert!(up.terminate().success(), "{}", up.log_text());
    assert!(up.log_text().contains("stopped cleanly"));
}

/// Without a statement argument, `nines sql` reads `;`-terminated statements from stdin.
#[test]
fn sql_reads_statements_from_stdin() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(crate::support::BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--log", "warn", "sql", "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 1 + 1 AS two;\nSELECT count(*) AS n\n  FROM requests;\nSELECT nope FROM requests;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "two\n2\nn\n0\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(
        !out.status.success(),
        "a failed statement makes the exit status non-zero"
    );
}
