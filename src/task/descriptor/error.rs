//! Descriptor problems and where they are: [`Issue`], [`DescriptorError`],
//! and turning serde's syntax and typed errors into issues located by JSON
//! path and hinted with what the field expects.

use std::fmt;

use serde::Serialize;

use super::hints::{closest, field_hint};
use super::raw::Descriptor;

/// One problem with a descriptor: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// JSON path of the offending value (`partitions.end`,
    /// `source.load.uris[2]`), `$` for the document as a whole, or the
    /// command-line flag / environment variable the value came from.
    pub field: String,
    /// Lowercase message fragment.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n  hint: {}", self.field, self.message, self.hint)
    }
}

/// An invalid descriptor. Carries the first problem in its fields and any
/// further independent problems found in the same pass in `also`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct DescriptorError {
    /// JSON path of the first problem (see [`Issue::field`]).
    pub field: String,
    /// Lowercase message fragment.
    pub message: String,
    /// How to fix it.
    pub hint: String,
    /// Further problems, in document order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Issue>,
}

impl DescriptorError {
    pub(super) fn new(
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        DescriptorError {
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
            also: Vec::new(),
        }
    }

    pub(super) fn from_issues(mut issues: Vec<Issue>) -> Option<Self> {
        if issues.is_empty() {
            return None;
        }
        let first = issues.remove(0);
        Some(DescriptorError {
            field: first.field,
            message: first.message,
            hint: first.hint,
            also: issues,
        })
    }

    /// Every problem, the first one included.
    pub fn issues(&self) -> Vec<Issue> {
        let mut v = vec![Issue {
            field: self.field.clone(),
            message: self.message.clone(),
            hint: self.hint.clone(),
        }];
        v.extend(self.also.iter().cloned());
        v
    }
}

impl fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for issue in self.issues() {
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

pub(super) const SCHEMA_HINT: &str =
    "run `bq-backfill schema descriptor` to see every field and its type";

pub(super) fn syntax_error(e: &serde_json::Error) -> DescriptorError {
    let hint = match e.classify() {
        serde_json::error::Category::Eof => {
            "the input ends in the middle of the JSON document: is the file truncated?".to_string()
        }
        _ if e.to_string().contains("unicode") => format!(
            "the descriptor must be UTF-8 encoded JSON; check the text near line {}, column {}",
            e.line(),
            e.column()
        ),
        _ => format!(
            "the descriptor must be one JSON object; check the syntax near line {}, column {}",
            e.line(),
            e.column()
        ),
    };
    DescriptorError::new("$", format!("not valid JSON: {e}"), hint)
}

/// A syntax error, with the JSON path of where it happened when the typed
/// parser stops at the very same spot (e.g. a number out of range).
pub(super) fn located_syntax_error(bytes: &[u8], e: &serde_json::Error) -> DescriptorError {
    let mut err = syntax_error(e);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    if let Err(typed) = serde_path_to_error::deserialize::<_, Descriptor>(&mut de) {
        let same_spot = typed.inner().line() == e.line() && typed.inner().column() == e.column();
        let path = format_path(typed.path());
        if same_spot && !path.is_empty() {
            if e.to_string().starts_with("number out of range")
                && let Some(h) = field_hint(&path)
            {
                err.hint = h.to_string();
            }
            err.field = path;
        }
    }
    err
}

fn format_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            // A key not read yet (the input ended inside it): the known
            // prefix is the useful part.
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The text between the first pair of backticks after `prefix`.
fn quoted_after<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = msg.strip_prefix(prefix)?;
    let rest = rest.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

pub(super) fn typed_error(e: &serde_path_to_error::Error<serde_json::Error>) -> DescriptorError {
    let path = format_path(e.path());
    let msg = e.inner().to_string();
    if let Some(name) = quoted_after(&msg, "missing field ") {
        let field = join_path(&path, name);
        let hint = field_hint(&field).unwrap_or(SCHEMA_HINT).to_string();
        return DescriptorError::new(
            field.clone(),
            format!("missing field `{name}`"),
            format!("this field is required: {hint}"),
        );
    }
    if let Some(name) = quoted_after(&msg, "duplicate field ") {
        return DescriptorError::new(
            join_path(&path, name),
            msg.clone(),
            "each field may appear only once; remove the repeated key",
        );
    }
    if let Some(name) = quoted_after(&msg, "unknown field ") {
        let expected = msg
            .split_once(", expected ")
            .map(|(_, rest)| rest)
            .unwrap_or("");
        let candidates: Vec<&str> = expected
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        let hint = match closest(name, &candidates) {
            Some(c) => format!(
                "did you mean `{c}`? unknown fields are rejected so that typos are not silently ignored"
            ),
            None => format!(
                "remove it; unknown fields are rejected so that typos are not silently ignored ({SCHEMA_HINT})"
            ),
        };
        return DescriptorError::new(
            if path.is_empty() {
                name.to_string()
            } else {
                path
            },
            msg,
            hint,
        );
    }
    let field = if path.is_empty() {
        "$".to_string()
    } else {
        path
    };
    let hint = field_hint(&field).unwrap_or(SCHEMA_HINT).to_string();
    DescriptorError::new(field, msg, hint)
}
