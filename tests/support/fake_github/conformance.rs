//! Checks requests against the trimmed GitHub OpenAPI description in
//! `tests/fixtures/openapi/github-operations.json` (made by `trim.py`):
//! the method + path template exists, query parameters are known, required
//! body fields are present and no unknown top-level fields are sent. A path
//! parameter GitHub marks `x-multi-segment` (a branch, a file path) may
//! span several segments; the most specific template wins, so
//! `commits/{ref}/check-runs` is not taken for `commits/{ref}`.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct Operation {
    pub method: String,
    pub path: String,
    pub query: Vec<String>,
    /// Path parameters that may hold `/`.
    #[serde(default)]
    pub multi_segment: Vec<String>,
    pub body: Option<BodySpec>,
}

#[derive(Debug, Deserialize)]
pub struct BodySpec {
    pub required: Vec<String>,
    pub properties: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Spec {
    operations: Vec<Operation>,
}

pub static OPERATIONS: LazyLock<Vec<Operation>> = LazyLock::new(|| {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openapi/github-operations.json"
    ))
    .expect("trimmed OpenAPI fixture");
    serde_json::from_str::<Spec>(&text)
        .expect("trimmed OpenAPI fixture parses")
        .operations
});

fn param(segment: &str) -> Option<&str> {
    segment.strip_prefix('{')?.strip_suffix('}')
}

fn matches(template: &[&str], path: &[&str], multi: &[String]) -> bool {
    match (template.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((t, rest)), Some((p, _))) => match param(t) {
            Some(name) if multi.iter().any(|m| m == name) => (1..=path.len()).any(|n| {
                path[..n].iter().all(|s| !s.is_empty()) && matches(rest, &path[n..], multi)
            }),
            Some(_) => !p.is_empty() && matches(rest, &path[1..], multi),
            None => t == p && matches(rest, &path[1..], multi),
        },
        _ => false,
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

/// Fixed segments of a template: the more, the more specific.
fn literals(template: &str) -> usize {
    segments(template)
        .iter()
        .filter(|s| !s.starts_with('{'))
        .count()
}

/// The operation a request hits, or why it does not conform.
pub fn check<'a>(
    method: &str,
    raw_path: &str,
    query: impl Iterator<Item = &'a String>,
    body: Option<&Value>,
) -> Result<&'static Operation, String> {
    let path = segments(raw_path);
    let operation = OPERATIONS
        .iter()
        .filter(|op| op.method == method && matches(&segments(&op.path), &path, &op.multi_segment))
        .max_by_key(|op| literals(&op.path))
        .ok_or_else(|| {
            format!("{method} {raw_path}: no such operation in GitHub's OpenAPI description")
        })?;
    for name in query {
        if !operation.query.contains(name) {
            return Err(format!(
                "{method} {}: unknown query parameter `{name}`",
                operation.path
            ));
        }
    }
    match (&operation.body, body) {
        (Some(spec), Some(Value::Object(fields))) => {
            for required in &spec.required {
                if !fields.contains_key(required) {
                    return Err(format!(
                        "{method} {}: required body field `{required}` missing",
                        operation.path
                    ));
                }
            }
            for name in fields.keys() {
                if !spec.properties.contains(name) {
                    return Err(format!(
                        "{method} {}: unknown body field `{name}`",
                        operation.path
                    ));
                }
            }
        }
        (Some(spec), None) if !spec.required.is_empty() => {
            return Err(format!("{method} {}: body missing", operation.path));
        }
        (Some(_), Some(other)) => {
            return Err(format!(
                "{method} {}: body is not an object: {other}",
                operation.path
            ));
        }
        (None, Some(body)) => {
            return Err(format!(
                "{method} {}: takes no body, got {body}",
                operation.path
            ));
        }
        _ => {}
    }
    Ok(operation)
}
