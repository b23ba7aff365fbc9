//! Rows of named values printed as a table, CSV or JSON lines (`--format`), for the
//! commands that report figures (`nines slo`, `nines dora`).

use comfy_table::{Table, presets::ASCII_MARKDOWN};
use serde_json::{Map, Value};

/// A number for the report (`null` when absent or not finite).
pub(crate) fn num(v: Option<f64>) -> Value {
    v.filter(|v| v.is_finite())
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// `rows` as a Markdown table of the `header` columns.
pub(crate) fn markdown(header: &[&str], rows: &[Map<String, Value>]) -> String {
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN).set_header(header.to_vec());
    for r in rows {
        t.add_row(header.iter().map(|h| cell(r.get(*h))).collect::<Vec<_>>());
    }
    t.to_string()
}

/// A cell of a table or CSV: numbers with up to 6 decimals, lists joined by `; `.
pub(crate) fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.as_f64().map_or(n.to_string(), |f| {
            let s = format!("{f:.6}");
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        }),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| cell(Some(v)))
            .collect::<Vec<_>>()
            .join("; "),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn print(header: &[&str], rows: &[Map<String, Value>], format: crate::Format) {
    match format {
        crate::Format::Table => println!("{}", markdown(header, rows)),
        crate::Format::Csv => {
            println!("{}", header.join(","));
            for r in rows {
                let cells: Vec<String> = header
                    .iter()
                    .map(|h| {
                        let c = cell(r.get(*h));
                        if c.contains([',', '"', '\n']) {
                            format!("\"{}\"", c.replace('"', "\"\""))
                        } else {
                            c
                        }
                    })
                    .collect();
                println!("{}", cells.join(","));
            }
        }
        crate::Format::Json => {
            for r in rows {
                println!("{}", Value::Object(r.clone()));
            }
        }
    }
}
