//! The crate graph ARCHITECTURE.md promises, checked from the `Cargo.toml` files and the
//! sources, so a boundary cannot move without this test (and the map) changing with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
}

/// Every workspace crate's normal (not dev, not build) dependencies, by crate name.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        let name = v["package"]["name"].as_str().unwrap().to_owned();
        let deps = v
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        out.insert(name, deps);
    }
    out
}

fn siblings(deps: &BTreeSet<String>) -> Vec<&str> {
    deps.iter()
        .filter(|d| d.starts_with("nines-"))
        .map(String::as_str)
        .collect()
}

/// Rust sources under `dir` whose text contains `needle`, as paths relative to the root.
fn sources_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && std::fs::read_to_string(&path).unwrap().contains(needle)
            {
                out.push(path.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_crates_are_the_ones_on_the_map() {
    let names: Vec<String> = graph().into_keys().collect();
    assert_eq!(
        names,
        [
            "nines-aggregate",
            "nines-bus",
            "nines-dora",
            "nines-ingest",
            "nines-model",
            "nines-pipeline",
            "nines-proto",
            "nines-query",
            "nines-record",
            "nines-slo",
            "nines-store",
            "nines-testkit",
        ]
    );
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for n in &names {
        assert!(
            map.contains(&format!("### `crates/{n}`")),
            "ARCHITECTURE.md has no section for {n}"
        );
    }
}

#[test]
fn dependencies_point_down_to_the_leaves() {
    // Each crate may depend only on crates of a lower rank.
    let rank: BTreeMap<&str, u8> = [
        ("nines-proto", 0),
        ("nines-model", 0),
        ("nines-slo", 0),
        ("nines-dora", 0),
        ("nines-bus", 1),
        ("nines-record", 1),
        ("nines-aggregate", 2),
        ("nines-store", 2),
        ("nines-query", 3),
        ("nines-ingest", 3),
        ("nines-testkit", 3),
        ("nines-pipeline", 4),
    ]
    .into_iter()
    .collect();
    for (name, deps) in graph() {
        for d in siblings(&deps) {
            assert!(
                rank[d] < rank[name.as_str()],
                "{name} depends on {d}, which is not below it"
            );
        }
    }
    let g = graph();
    assert!(siblings(&g["nines-proto"]).is_empty());
    assert!(siblings(&g["nines-model"]).is_empty());
    // The events-topic record is the contract between two roles deployed apart: it knows
    // the wire types and nothing else of either side.
    assert_eq!(siblings(&g["nines-record"]), ["nines-proto"]);
    // The store knows the model (what a flush hands it), never the aggregator.
    assert!(!g["nines-store"].contains("nines-aggregate"));
    // The query side knows the store's table locations, never the writer's internals.
    assert!(!g["nines-query"].contains("nines-aggregate"));
    assert!(!g["nines-query"].contains("nines-ingest"));
}

#[test]
fn only_the_bus_links_kafka() {
    for (name, deps) in graph() {
        let kafka: Vec<&String> = deps
            .iter()
            .filter(|d| *d == "rdkafka" || d.starts_with("tansu"))
            .collect();
        if name == "nines-bus" {
            assert!(deps.contains("rdkafka") && deps.contains("tansu-broker"));
        } else {
            assert!(kafka.is_empty(), "{name} links {kafka:?}");
        }
    }
    // The root package (CLI and wiring) too: rdkafka only for its tests.
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    let deps = v["dependencies"].as_table().unwrap();
    assert!(!deps.contains_key("rdkafka"));
    assert!(!deps.keys().any(|k| k.starts_with("tansu")));
}

#[test]
fn pure_crates_do_no_io() {
    let g = graph();
    for name in [
        "nines-model",
        "nines-aggregate",
        "nines-proto",
        "nines-record",
        "nines-slo",
        "nines-dora",
    ] {
        for io in [
            "tokio",
            "rdkafka",
            "tonic-build",
            "parquet",
            "datafusion",
            "object_store",
        ] {
            assert!(!g[name].contains(io), "{name} depends on {io}");
        }
    }
    for name in [
        "nines-model",
        "nines-aggregate",
        "nines-record",
        "nines-slo",
        "nines-dora",
    ] {
        let dir = root().join("crates").join(name).join("src");
        for needle in [
            "std::fs",
            "std::net",
            "SystemTime::now",
            "Instant::now",
            "now_ns()",
        ] {
            let mut found = sources_containing(&dir, needle);
            // The wall clock's one home, for the crates above: the model never calls it.
            if name == "nines-model" && needle != "std::fs" && needle != "std::net" {
                found.retain(|p| p != "crates/nines-model/src/clock.rs");
            }
            assert_eq!(found, Vec::<String>::new(), "{name} uses {needle}");
        }
    }
}

#[test]
fn the_wall_clock_has_one_home() {
    // Spelled in two pieces so that this file does not match itself.
    let needle = concat!("fn ", "now_ns()");
    let mut defs = sources_containing(&root().join("crates"), needle);
    for dir in ["src", "tests", "benches"] {
        defs.extend(sources_containing(&root().join(dir), needle));
    }
    assert_eq!(defs, ["crates/nines-model/src/clock.rs"]);
}

/// Below the model only the Kafka crate reads the clock (record timestamps, the log's
/// retention), as it depends on no sibling; everything else asks `nines_model::clock`.
#[test]
fn nothing_else_reads_the_wall_clock() {
    let needle = concat!("SystemTime", "::now");
    let mut readers = sources_containing(&root().join("src"), needle);
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        readers.extend(sources_containing(
            &entry.unwrap().path().join("src"),
            needle,
        ));
    }
    readers.sort();
    assert_eq!(
        readers,
        [
            "crates/nines-bus/src/producer.rs",
            "crates/nines-bus/src/retention.rs",
            "crates/nines-model/src/clock.rs",
        ]
    );
}

#[test]
fn only_the_store_writes_parquet() {
    for (name, deps) in graph() {
        if name != "nines-store" {
            assert!(!deps.contains("parquet"), "{name} depends on parquet");
        }
    }
    let mut writers = sources_containing(&root().join("crates"), "ArrowWriter");
    writers.extend(sources_containing(&root().join("src"), "ArrowWriter"));
    assert_eq!(writers, ["crates/nines-store/src/writer.rs"]);
}

#[test]
fn docs_tables_documents_every_column_of_every_table() {
    let doc = std::fs::read_to_string(root().join("docs/tables.md")).unwrap();
    assert!(
        doc.starts_with(&format!(
            "# Tables (schema version {})",
            nines_model::schema::SCHEMA_VERSION
        )),
        "docs/tables.md names another schema version"
    );
    for t in &nines_model::schema::TABLE_DEFS {
        let heading = format!("## `{}`", t.name);
        let start = doc
            .find(&heading)
            .unwrap_or_else(|| panic!("docs/tables.md has no section {heading}"));
        let section = &doc[start..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
        for field in (t.schema)().fields() {
            let name = field.name();
            // The provenance columns are documented once for every table.
            if name == "kafka_partition" || name == "kafka_offset" {
                continue;
            }
            assert!(
                section.contains(&format!("`{name}`")),
                "docs/tables.md, section {heading}, does not document `{name}`"
            );
        }
        let sort_key = format!("Sort key: {}.", t.sort_key.join(", "));
        assert!(
            section.contains(&sort_key),
            "docs/tables.md, section {heading}, should say `{sort_key}`"
        );
    }
}

#[test]
fn only_the_pipeline_commits_offsets() {
    // The consumer group (whose commit moves Kafka offsets) is used by the bus that defines
    // it and by the pipeline; nothing else may consume in the group.
    let mut users = sources_containing(&root().join("crates"), "GroupConsumer");
    users.extend(sources_containing(&root().join("src"), "GroupConsumer"));
    users.retain(|p| !p.starts_with("crates/nines-bus/"));
    assert_eq!(users, ["crates/nines-pipeline/src/lib.rs"]);
}

#[test]
fn the_events_record_is_read_and_keyed_in_one_place() {
    // Encode, decode, version and key of the events-topic record live in nines-record.
    let mut readers = sources_containing(&root().join("crates"), "EventBatch::decode");
    readers.extend(sources_containing(
        &root().join("src"),
        "EventBatch::decode",
    ));
    assert_eq!(
        readers,
        [
            "crates/nines-record/src/lib.rs",
            "crates/nines-record/src/read.rs"
        ]
    );
    let mut keys = sources_containing(&root().join("crates"), "\\u{0}{}");
    keys.extend(sources_containing(&root().join("src"), "\\u{0}{}"));
    assert_eq!(keys, Vec::<String>::new(), "a Kafka key built by hand");
}
