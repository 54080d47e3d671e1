//! Bytes to a raw [`Descriptor`]: size and encoding checks, the JSON
//! syntax, the document shape, the typed parse, then every semantic check
//! that needs neither the environment nor the command line.

use super::error::{DescriptorError, SCHEMA_HINT, located_syntax_error, syntax_error, typed_error};
use super::hints::field_hint;
use super::raw::Descriptor;
use super::{DESCRIPTOR_VERSION, MAX_DESCRIPTOR_BYTES, resolve};

/// Parses and validates a descriptor. Everything that can be checked
/// without the environment and the command line is checked here; a range or
/// project left for `--start`/`--end`/`--project`/the environment is
/// accepted and checked by [`resolve`].
pub fn parse(bytes: &[u8]) -> Result<Descriptor, DescriptorError> {
    if bytes.len() > MAX_DESCRIPTOR_BYTES {
        return Err(DescriptorError::new(
            "$",
            format!("descriptor is {} bytes; the limit is 1 MiB", bytes.len()),
            "a descriptor is a small JSON object; for many partitions use a start/end range \
             rather than a list",
        ));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DescriptorError::new(
            "$",
            "descriptor is empty",
            "pipe a JSON task descriptor on stdin (`bq-backfill run < task.json`) or pass \
             `--task task.json`",
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| located_syntax_error(bytes, &e))?;
    let Some(object) = value.as_object() else {
        return Err(DescriptorError::new(
            "$",
            format!(
                "descriptor must be a JSON object, found {}",
                json_kind(&value)
            ),
            "write the task as one JSON object: {\"job\": ..., \"destination\": ..., ...}",
        ));
    };
    if let Some(v @ serde_json::Value::Number(n)) = object.get("version")
        && n.as_u64() != Some(u64::from(DESCRIPTOR_VERSION))
    {
        return Err(DescriptorError::new(
            "version",
            format!("unsupported descriptor version {v}"),
            "this bq-backfill reads version 1 descriptors; set \"version\": 1 (or leave it \
             out), or use the bq-backfill release that wrote this descriptor",
        ));
    }
    check_object_shapes(&value)?;

    let mut de = serde_json::Deserializer::from_slice(bytes);
    let d: Descriptor = serde_path_to_error::deserialize(&mut de).map_err(|e| typed_error(&e))?;
    de.end().map_err(|e| syntax_error(&e))?;

    resolve::check(&d)?;
    Ok(d)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// serde accepts a JSON array for a struct (fields by position); a
/// descriptor written that way is almost certainly a mistake, so nested
/// objects are required to be objects before the typed parse.
fn check_object_shapes(v: &serde_json::Value) -> Result<(), DescriptorError> {
    const OBJECTS: &[&[&str]] = &[
        &["partitions"],
        &["source"],
        &["source", "load"],
        &["source", "copy"],
        &["checkpoint"],
        &["throttle"],
        &["job_config"],
        &["job_config", "labels"],
        &["retry"],
        &["lease"],
    ];
    for path in OBJECTS {
        let mut cur = v;
        let mut found = true;
        for key in *path {
            match cur.get(key) {
                Some(next) => cur = next,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if found && cur.is_array() {
            let field = path.join(".");
            return Err(DescriptorError::new(
                field.clone(),
                "invalid type: array, expected an object".to_string(),
                field_hint(&field).unwrap_or(SCHEMA_HINT).to_string(),
            ));
        }
    }
    Ok(())
}
