//! A shallow lexical scan of the user's GoogleSQL: enough to find parameter
//! references, the leading keyword and statement separators outside string
//! literals and comments. The SQL itself is sent to BigQuery unchanged; this
//! only catches mistakes that would otherwise surface after money was spent
//! (or, worse, write the same rows into every partition).

/// The named parameters bq-backfill binds for every partition.
pub const PARAMETERS: &[&str] = &[
    "partition_id",
    "partition_date",
    "partition_start",
    "partition_end",
];

/// What the scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Named parameters referenced as `@name`, lowercased, first use first.
    pub params: Vec<String>,
    /// The first token outside comments, uppercased (`SELECT`, `(`, ...).
    pub first_token: Option<String>,
    /// A `?` (positional parameter) outside strings and comments.
    pub positional: bool,
    /// Something other than comments follows a `;`.
    pub multiple_statements: bool,
    /// A template placeholder (`{partition_date}`, `{{ ds }}`) outside
    /// comments, quoted as found.
    pub template: Option<String>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Index just past the string literal opening at `i` (quote `b[i]`).
/// A backslash always protects the next character, raw strings included
/// (GoogleSQL, like Python, does not let `\'` end a raw string).
fn skip_string(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let triple = b.get(i + 1) == Some(&q) && b.get(i + 2) == Some(&q);
    let mut j = if triple { i + 3 } else { i + 1 };
    while j < b.len() {
        if b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if !triple {
                return j + 1;
            }
            if b.get(j + 1) == Some(&q) && b.get(j + 2) == Some(&q) {
                return j + 3;
            }
        }
        j += 1;
    }
    b.len()
}

/// Scans `sql`. Never fails: unterminated literals simply run to the end
/// (BigQuery reports those itself).
pub(crate) fn scan(sql: &str) -> Scan {
    let b = sql.as_bytes();
    let mut out = Scan::default();
    // The text with comments blanked out, for the template search.
    let mut code = String::with_capacity(sql.len());
    let mut after_semicolon = false;
    let mut i = 0;
    let token = |out: &mut Scan, after_semicolon: bool, tok: &str| {
        if after_semicolon {
            out.multiple_statements = true;
        }
        if out.first_token.is_none() {
            out.first_token = Some(tok.to_ascii_uppercase());
        }
    };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let start = i;
        match c {
            b'-' if next == Some(b'-') => {
                i = sql[i..].find('\n').map_or(b.len(), |n| i + n);
                code.push(' ');
                continue;
            }
            b'#' => {
                i = sql[i..].find('\n').map_or(b.len(), |n| i + n);
                code.push(' ');
                continue;
            }
            b'/' if next == Some(b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                code.push(' ');
                continue;
            }
            c if c.is_ascii_whitespace() => i += 1,
            b'\'' | b'"' => {
                token(&mut out, after_semicolon, "'");
                i = skip_string(b, i);
            }
            b'`' => {
                token(&mut out, after_semicolon, "`");
                i = skip_string(b, i);
            }
            b'@' if next == Some(b'@') => {
                token(&mut out, after_semicolon, "@@");
                i += 2;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
            }
            b'@' => {
                token(&mut out, after_semicolon, "@");
                i += 1;
                let name = if b.get(i) == Some(&b'`') {
                    let end = skip_string(b, i);
                    let name = sql.get(i + 1..end.saturating_sub(1)).unwrap_or("");
                    i = end;
                    name
                } else {
                    let s = i;
                    while i < b.len() && is_ident(b[i]) {
                        i += 1;
                    }
                    &sql[s..i]
                };
                let name = name.to_ascii_lowercase();
                if !name.is_empty() && !out.params.contains(&name) {
                    out.params.push(name);
                }
            }
            b'?' => {
                token(&mut out, after_semicolon, "?");
                out.positional = true;
                i += 1;
            }
            b';' => {
                after_semicolon = true;
                i += 1;
            }
            c if is_ident_start(c) => {
                let s = i;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                let word = &sql[s..i];
                let prefix =
                    word.len() <= 2 && word.bytes().all(|c| matches!(c, b'r' | b'R' | b'b' | b'B'));
                if prefix && matches!(b.get(i), Some(b'\'' | b'"')) {
                    token(&mut out, after_semicolon, "'");
                    i = skip_string(b, i);
                } else {
                    token(&mut out, after_semicolon, word);
                }
            }
            _ => {
                let ch = sql[i..].chars().next().unwrap_or('\u{fffd}');
                token(&mut out, after_semicolon, ch.encode_utf8(&mut [0; 4]));
                i += ch.len_utf8();
            }
        }
        code.push_str(&sql[start..i.min(b.len())]);
    }
    out.template = find_template(&code);
    out
}

/// Finds `{placeholder}` (the load-URI placeholders, which mean nothing in
/// SQL) or a Jinja-style `{{ expression }}`.
fn find_template(code: &str) -> Option<String> {
    let mut from = 0;
    while let Some(open) = code[from..].find('{').map(|n| from + n) {
        let rest = &code[open..];
        if let Some(inner) = rest.strip_prefix("{{") {
            if let Some(close) = inner.find("}}") {
                let expr = &inner[..close];
                if close <= 100 && !expr.contains(['{', '}', '\n']) && !expr.trim().is_empty() {
                    return Some(format!("{{{{{expr}}}}}"));
                }
            }
        } else if let Some(close) = rest.find('}') {
            let name = rest[1..close].trim();
            if crate::task::descriptor::ident::uri_placeholders()
                .any(|p| p.eq_ignore_ascii_case(name))
            {
                return Some(rest[..=close].to_string());
            }
        }
        from = open + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_parameters_outside_strings_and_comments() {
        let s = scan(
            "SELECT * FROM t -- @partition_id\n WHERE d = @Partition_Date /* @x */ AND s = '@y' AND r = r'\\'@z' AND `@w` = 1",
        );
        assert_eq!(s.params, vec!["partition_date"]);
        assert_eq!(s.first_token.as_deref(), Some("SELECT"));
        assert!(!s.positional && !s.multiple_statements);
    }

    #[test]
    fn system_variables_are_not_parameters() {
        assert!(scan("SELECT @@project_id").params.is_empty());
    }

    #[test]
    fn leading_comments_and_parens() {
        assert_eq!(
            scan("-- hi\n/* x */ (SELECT 1)").first_token.as_deref(),
            Some("(")
        );
        assert_eq!(
            scan("# c\nwith a as (select 1) select * from a")
                .first_token
                .as_deref(),
            Some("WITH")
        );
        assert_eq!(
            scan("DELETE FROM t WHERE true").first_token.as_deref(),
            Some("DELETE")
        );
        assert_eq!(scan("-- only a comment").first_token, None);
    }

    #[test]
    fn statements_and_positional() {
        assert!(!scan("SELECT 1; -- done\n").multiple_statements);
        assert!(scan("SELECT 1; DROP TABLE x").multiple_statements);
        assert!(!scan("SELECT ';' AS s").multiple_statements);
        assert!(scan("SELECT * FROM t WHERE d = ?").positional);
        assert!(!scan("SELECT '?'").positional);
        assert!(!scan("SELECT \"\"\"a ; ? @x\"\"\"").multiple_statements);
    }

    #[test]
    fn templates() {
        assert_eq!(
            scan("SELECT * FROM t WHERE d = '{partition_date}'")
                .template
                .as_deref(),
            Some("{partition_date}")
        );
        assert_eq!(
            scan("SELECT * FROM t WHERE d = '{{ ds }}'")
                .template
                .as_deref(),
            Some("{{ ds }}")
        );
        assert_eq!(scan("SELECT '{\"year\": 1}' -- {year}").template, None);
        assert_eq!(scan("SELECT 1 /* {{ ds }} */").template, None);
    }
}
