//! `docker-compose.yml` works as written, checked without Docker: for every nines service,
//! the configuration its container would get (the Dockerfile's `ENV`, the service's
//! `env_file` and `environment`, config files it mounts, mapped back to this repository, and
//! its `command:`) goes through the real binary's `nines config check`, which runs every
//! check the role runs at start. Also `config check` itself: the example config, and the
//! specific errors it prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

use crate::support::BIN;

fn root() -> PathBuf {
    // At run time, not `env!`: the path of whichever checkout compiled the test otherwise.
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
}

/// What `nines config check` answered.
#[derive(Debug)]
struct Checked {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `nines <args>` with exactly `env` (nothing of the test's own environment).
fn run(env: &BTreeMap<String, String>, args: &[String]) -> Checked {
    let out = Command::new(BIN)
        .env_clear()
        .envs(env)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    Checked {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs `nines config check` with `env` and `args` (after `check`), and asserts that it
/// succeeds with `expected` in its output, or fails with `expected` in its error.
fn check(env: &[(&str, &str)], args: &[&str], ok: bool, expected: &str) -> Checked {
    let env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut all: Vec<String> = vec!["config".into(), "check".into()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let c = run(&env, &all);
    assert_eq!(c.ok, ok, "nines {all:?} with {env:?}: {c:#?}");
    let text = if ok { &c.stdout } else { &c.stderr };
    assert!(text.contains(expected), "expected {expected:?} in {c:#?}");
    if !ok {
        assert!(c.stderr.starts_with("error: "), "{c:#?}");
        assert_eq!(c.stdout, "", "nothing on stdout after an error");
    }
    c
}

/// `ENV K=V` lines of the Dockerfile's last stage (the image the services run).
fn dockerfile_env() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let last_stage = text.rsplit("\nFROM ").next().unwrap();
    let mut env = BTreeMap::new();
    for line in last_stage.lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV K=V");
                env.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    env
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().map(scalar).collect(),
        Some(one) => vec![scalar(one)],
    }
}

/// A service's `environment:`, as a mapping or a list of `K=V`.
fn environment(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        None => Vec::new(),
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let s = scalar(i);
                let (k, v) = s.split_once('=').expect("environment entry K=V");
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("environment: {other:?}"),
    }
}

/// What a container of one service runs: its environment and the arguments of `nines`.
#[derive(Debug)]
struct Container {
    service: String,
    env: BTreeMap<String, String>,
    /// Bind mounts: path in the container → file of this repository.
    mounts: BTreeMap<String, PathBuf>,
    /// Named volumes: path in the container.
    volumes: Vec<String>,
    command: Vec<String>,
    /// `ports:` entries.
    ports: Vec<String>,
}

impl Container {
    /// The repository file behind a path in the container, if it is bind-mounted.
    fn host_path(&self, path: &str) -> Option<&Path> {
        self.mounts.get(path).map(PathBuf::as_path)
    }
}

/// Every service of docker-compose.yml built from this repository (the nines roles).
fn nines_containers(compose: &Value) -> Vec<Container> {
    let image_env = dockerfile_env();
    let mut out = Vec::new();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        if service.get("build").is_none() {
            continue;
        }
        let name = scalar(name);
        assert_eq!(
            scalar(&service["build"]),
            ".",
            "built from the root Dockerfile"
        );
        let mut env = image_env.clone();
        for file in strings(service.get("env_file")) {
            let text = std::fs::read_to_string(root().join(&file))
                .unwrap_or_else(|e| panic!("env_file {file}: {e}"));
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (k, v) = line.split_once('=').expect("env_file line K=V");
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        env.extend(environment(service.get("environment")));
        let (mut mounts, mut volumes) = (BTreeMap::new(), Vec::new());
        for v in strings(service.get("volumes")) {
            let mut parts = v.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().unwrap());
            if source.starts_with("./") || source.starts_with('/') {
                let host = root().join(source.trim_start_matches("./"));
                assert!(
                    host.is_file(),
                    "{name}: mounts {source}, which does not exist"
                );
                mounts.insert(target.to_owned(), host);
            } else {
                volumes.push(target.to_owned());
            }
        }
        out.push(Container {
            service: name,
            env,
            mounts,
            volumes,
            command: strings(service.get("command")),
            ports: strings(service.get("ports")),
        });
    }
    out
}

#[test]
fn every_nines_service_of_the_compose_file_passes_config_check() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_yaml_ng::from_str(&text).unwrap();
    // The Kafka the roles are pointed at is the compose file's own.
    let kafka_env = environment(compose["services"]["kafka"].get("environment"));
    let advertised = kafka_env
        .iter()
        .find(|(k, _)| k == "KAFKA_ADVERTISED_LISTENERS")
        .map(|(_, v)| v.clone())
        .unwrap();
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(r#"ENTRYPOINT ["nines"]"#));

    let containers = nines_containers(&compose);
    let roles: Vec<&str> = containers
        .iter()
        .map(|c| c.command.first().map_or("", String::as_str))
        .collect();
    assert_eq!(roles, ["ingest", "aggregate"], "the nines services");
    for c in &containers {
        let role = c.command[0].clone();
        let mut env = c.env.clone();
        // The config file the container reads, as this repository holds it.
        if let Some(path) = env.get("NINES_CONFIG").cloned() {
            let host = c
                .host_path(&path)
                .unwrap_or_else(|| panic!("{}: NINES_CONFIG={path} is not mounted", c.service));
            env.insert("NINES_CONFIG".into(), host.display().to_string());
        }
        let mut args: Vec<String> = vec!["config".into(), "check".into(), "--role".into()];
        args.push(role.clone());
        for a in &c.command[1..] {
            args.push(
                c.host_path(a)
                    .map_or_else(|| a.clone(), |p| p.display().to_string()),
            );
        }
        let checked = run(&env, &args);
        println!("[compose] {}: {checked:#?}", c.service);
        assert!(checked.ok, "{}: {checked:#?}", c.service);
        let out = &checked.stdout;
        assert!(
            out.starts_with(&format!("ok: `nines {role}` can start")),
            "{out}"
        );
        let kafka = c
            .command
            .iter()
            .skip_while(|a| *a != "--kafka")
            .nth(1)
            .expect("--kafka");
        assert!(advertised.contains(&format!("//{kafka}")), "{advertised}");
        assert!(out.contains(&format!("kafka: {kafka} (external)")), "{out}");
        // A single-node Kafka: replication factor 1, and the warning that goes with it.
        assert!(
            checked
                .stderr
                .contains("warning: bus.replication_factor = 1 on an external Kafka"),
            "{checked:#?}"
        );
        let data_dir = &env["NINES__DATA_DIR"];
        match role.as_str() {
            "ingest" => {
                assert!(out.contains("1 API key(s) for tenant(s) compose"), "{out}");
                // Published on the host's loopback only, to the port ingest listens on.
                assert_eq!(c.ports, ["127.0.0.1:4317:4317"]);
                assert!(out.contains("ingest: 0.0.0.0:4317,"), "{out}");
            }
            "aggregate" => {
                assert!(out.contains(&format!("data in {data_dir}")), "{out}");
                assert!(
                    c.volumes.contains(data_dir),
                    "{}: the data directory {data_dir} must be a volume",
                    c.service
                );
            }
            other => panic!("unexpected role {other}"),
        }
    }
}

/// The key config/compose.toml documents for senders is the one whose hash it holds.
#[test]
fn the_documented_compose_key_is_the_configured_one() {
    let text = std::fs::read_to_string(root().join("config/compose.toml")).unwrap();
    let cfg: toml::Value = toml::from_str(&text).unwrap();
    let keys = cfg["ingest"]["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["tenant"].as_str(), Some("compose"));
    assert!(text.contains("authorization: Bearer nines-compose-dev-key"));
    let digest: String = Sha256::digest(b"nines-compose-dev-key")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(keys[0]["key_sha256"].as_str(), Some(digest.as_str()));
    let compose = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    assert!(compose.contains("authorization=Bearer nines-compose-dev-key"));
}

/// The compose file as it was (ingest on 0.0.0.0, no keys) is refused, naming the keys.
#[test]
fn the_old_compose_shape_is_refused_by_config_check() {
    check(
        &[
            ("NINES__DATA_DIR", "/var/lib/nines/data"),
            ("NINES__INGEST__LISTEN", "0.0.0.0:4317"),
            ("NINES__ADMIN__LISTEN", "0.0.0.0:9464"),
        ],
        &["--role", "ingest", "--kafka", "kafka:9092"],
        false,
        "error: ingest.listen 0.0.0.0:4317 is not a loopback address and no ingest.api_keys \
         are configured: anyone could push",
    );
}

#[test]
fn config_check_accepts_the_example_config() {
    let example = root().join("config/nines.example.toml");
    let example = example.to_str().unwrap();
    let c = check(
        &[],
        &["--config", example],
        true,
        "ok: `nines up` can start with this configuration",
    );
    assert!(
        c.stdout.contains(
            "kafka: embedded broker on 127.0.0.1:19092; topics nines.events (4 partitions)"
        ),
        "{c:#?}"
    );
    assert!(
        c.stdout
            .contains("ingest: 127.0.0.1:4317, no API keys (single tenant `default`)"),
        "{c:#?}"
    );
    assert_eq!(c.stderr, "", "no warning for the embedded broker");
    // Through NINES_CONFIG as well, as the containers pass it.
    check(
        &[("NINES_CONFIG", example)],
        &["--role", "aggregate", "--kafka", "k1:9092"],
        true,
        "ok: `nines aggregate` can start",
    );
}

#[test]
fn config_check_names_the_key_of_each_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad_hash = dir.path().join("bad-hash.toml");
    std::fs::write(
        &bad_hash,
        "[[ingest.api_keys]]\ntenant = \"acme\"\nkey_sha256 = \"abc\"\n",
    )
    .unwrap();
    let bad_hash = bad_hash.to_str().unwrap();
    // (environment, arguments after `check`, the error expected)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case<'_>] = &[
        (
            &[],
            &["--config", bad_hash],
            "ingest.api_keys[0].key_sha256: must be 64 hex digits",
        ),
        (
            &[("NINES__BUS__PARTITIONS", "0")],
            &[],
            "bus.partitions must be at least 1, got 0",
        ),
        (&[("NINES__BUS__PARTITONS", "3")], &[], "partitons"),
        (
            &[],
            &["--role", "ingest"],
            "`nines ingest` needs a broker: pass --kafka or set bus.brokers",
        ),
        (
            &[("NINES__INGEST__LISTEN", "localhost")],
            &[],
            "ingest.listen \"localhost\": not an address",
        ),
        (
            &[("NINES__ADMIN__LISTEN", "localhost:http")],
            &[],
            "admin.listen \"localhost:http\": not host:port",
        ),
        (
            &[],
            &["--config", "/nonexistent/nines.toml"],
            "config file /nonexistent/nines.toml does not exist",
        ),
    ];
    for (env, args, expected) in cases {
        check(env, args, false, expected);
    }
    // Warned, not refused: one replica of every partition on a real Kafka.
    let c = check(
        &[("NINES__BUS__BROKERS", "k1:9092,k2:9092")],
        &["--role", "aggregate"],
        true,
        "kafka: k1:9092,k2:9092 (external)",
    );
    assert!(
        c.stderr
            .starts_with("warning: bus.replication_factor = 1 on an external Kafka"),
        "{c:#?}"
    );
    check(
        &[
            ("NINES__BUS__BROKERS", "k1:9092"),
            ("NINES__BUS__REPLICATION_FACTOR", "3"),
        ],
        &["--role", "aggregate"],
        true,
        "replication factor 3",
    );
}
