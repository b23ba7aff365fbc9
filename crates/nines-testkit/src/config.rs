//! A role's configuration file in a test or benchmark environment: one home for the keys
//! every environment sets (data directory, the embedded broker's port, the listen addresses),
//! built as a TOML document rather than text pasted together, and written as the file an
//! operator writes, so each role loads it through the same path and `deny_unknown_fields`
//! names any key that no longer exists.

use std::path::Path;

use toml::{Table, Value};

/// One role's configuration, as a TOML document.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    doc: Table,
}

impl RoleConfig {
    /// The data directory, the embedded broker's port and the addresses ingest and the admin
    /// server listen on (127.0.0.1).
    pub fn new(data_dir: &Path, broker_port: u16, ingest_port: u16, admin_port: u16) -> Self {
        Self { doc: Table::new() }
            .set("data_dir", data_dir.display().to_string())
            .set("broker.port", i64::from(broker_port))
            .set("ingest.listen", format!("127.0.0.1:{ingest_port}"))
            .set("admin.listen", format!("127.0.0.1:{admin_port}"))
    }

    /// Sets `key`, a dotted path such as `aggregate.flush_interval`, creating its tables.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("split yields one part at least");
        let mut table = &mut self.doc;
        for part in parts {
            table = table
                .entry(part)
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key}: {part} is not a table"));
        }
        table.insert(last.to_owned(), value.into());
        self
    }

    /// Merges a TOML document into this one: its tables into these tables, its other values
    /// over these.
    pub fn merge(mut self, text: &str) -> Result<Self, toml::de::Error> {
        merge(&mut self.doc, text.parse::<Table>()?);
        Ok(self)
    }

    /// The document as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.doc).expect("a TOML table serialises")
    }

    /// Writes the document to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_toml())
    }
}

fn merge(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(ours)), Value::Table(theirs)) => merge(ours, theirs),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_merges_into_one_document() {
        let cfg = RoleConfig::new(Path::new("/tmp/d"), 9092, 4317, 9464)
            .set("aggregate.flush_interval", "300ms")
            .merge(
                "[ingest]\nmax_event_age = \"40days\"\n\
                 [aggregate]\nflush_interval = \"500ms\"\n\
                 [[query.api_keys]]\ntenant = \"acme\"\nkey = \"k\"\n",
            )
            .unwrap();
        let back: Table = cfg.to_toml().parse().unwrap();
        let expected: Table = "data_dir = \"/tmp/d\"\n\
             [broker]\nport = 9092\n\
             [ingest]\nlisten = \"127.0.0.1:4317\"\nmax_event_age = \"40days\"\n\
             [admin]\nlisten = \"127.0.0.1:9464\"\n\
             [aggregate]\nflush_interval = \"500ms\"\n\
             [[query.api_keys]]\ntenant = \"acme\"\nkey = \"k\"\n"
            .parse()
            .unwrap();
        assert_eq!(back, expected);
    }

    #[test]
    fn a_bad_document_is_an_error() {
        let err = RoleConfig::new(Path::new("d"), 1, 2, 3)
            .merge("[bus\n")
            .unwrap_err();
        assert!(err.to_string().contains("TOML parse error"), "{err}");
    }
}
