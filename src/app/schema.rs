//! JSON Schemas of bq-backfill's input and output, generated from the Rust
//! types so they cannot drift; committed under `schemas/` and checked by a
//! test (`UPDATE_SCHEMAS=1 cargo test` rewrites them).

use std::io::{self, Write};

use serde_json::Value;

use crate::exit;
use crate::task::descriptor::Descriptor;

/// A schema generator.
pub type SchemaFn = fn() -> Value;

/// Registration point: every published schema, as (file name under
/// `schemas/`, generator). Add the events schema here.
pub const SCHEMAS: &[(&str, SchemaFn)] = &[
    ("descriptor.v1.schema.json", descriptor_schema),
    ("events.v1.schema.json", crate::output::events::json_schema),
];

/// The task descriptor's schema (draft 2020-12).
pub fn descriptor_schema() -> Value {
    schemars::schema_for!(Descriptor).to_value()
}

/// Every published schema, generated now.
pub fn all_schemas() -> Vec<(&'static str, Value)> {
    SCHEMAS.iter().map(|(name, f)| (*name, f())).collect()
}

/// Finds a schema by file name or by its stem (`descriptor` for
/// `descriptor.v1.schema.json`).
pub fn find(name: &str) -> Option<(&'static str, Value)> {
    SCHEMAS
        .iter()
        .find(|(file, _)| *file == name || file.split('.').next() == Some(name))
        .map(|(file, f)| (*file, f()))
}

/// The file contents for a schema: pretty JSON and a final newline.
pub fn render(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}

/// `bq-backfill schema [NAME]`: one schema, or a JSON object of all of them
/// keyed by file name. Returns the exit code (64 for an unknown name).
pub fn schema_command(name: Option<&str>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let doc = match name {
        Some(name) => match find(name) {
            Some((_, schema)) => schema,
            None => {
                let known: Vec<&str> = SCHEMAS
                    .iter()
                    .map(|(f, _)| f.split('.').next().unwrap_or(f))
                    .collect();
                let _ = writeln!(
                    err,
                    "error: no schema named `{name}`\n  hint: known schemas: {}",
                    known.join(", ")
                );
                return exit::USAGE;
            }
        },
        None => Value::Object(
            all_schemas()
                .into_iter()
                .map(|(n, s)| (n.to_string(), s))
                .collect(),
        ),
    };
    match out
        .write_all(render(&doc).as_bytes())
        .and_then(|()| out.flush())
    {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
        Err(_) => exit::INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn committed_schemas_match_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1");
        for (name, schema) in all_schemas() {
            let path = dir.join(name);
            let text = render(&schema);
            if update {
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run with UPDATE_SCHEMAS=1 to create it",
                    path.display()
                )
            });
            let committed: Value = serde_json::from_str(&committed).unwrap();
            assert!(
                committed == schema,
                "{} is stale; run `UPDATE_SCHEMAS=1 cargo test -p bq-backfill --lib schema` and commit it",
                path.display()
            );
        }
    }

    #[test]
    fn descriptor_schema_describes_the_rules() {
        let s = descriptor_schema();
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(s["additionalProperties"], false);
        let required: Vec<&str> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for field in ["job", "destination", "partitions", "source"] {
            assert!(required.contains(&field), "{field}");
        }
        assert_eq!(s["$defs"]["Source"]["oneOf"].as_array().unwrap().len(), 3);
        assert!(s["$defs"]["Partitions"]["not"]["anyOf"].is_array());
        assert_eq!(s["$defs"]["Partitions"]["additionalProperties"], false);
        assert!(
            s["properties"]["job"]["description"]
                .as_str()
                .unwrap()
                .contains("Stable name")
        );
    }

    #[test]
    fn command_prints_one_or_all() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(
            schema_command(Some("descriptor"), &mut out, &mut err),
            exit::OK
        );
        let one: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(one, descriptor_schema());
        out.clear();
        assert_eq!(schema_command(None, &mut out, &mut err), exit::OK);
        let all: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(all["descriptor.v1.schema.json"], descriptor_schema());
        assert_eq!(
            schema_command(Some("nope"), &mut out, &mut err),
            exit::USAGE
        );
        assert!(
            String::from_utf8(err)
                .unwrap()
                .contains("known schemas: descriptor")
        );
    }
}
