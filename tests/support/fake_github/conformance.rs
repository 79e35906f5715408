//! Checks requests against the trimmed GitHub OpenAPI description in
//! `tests/fixtures/openapi/github-operations.json` (made by `trim.py`):
//! the method + path template exists, query parameters are known, required
//! body fields are present and no unknown top-level fields are sent.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct Operation {
    pub method: String,
    pub path: String,
    pub query: Vec<String>,
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

fn matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// The operation a request hits, or why it does not conform.
pub fn check<'a>(
    method: &str,
    raw_path: &str,
    query: impl Iterator<Item = &'a String>,
    body: Option<&Value>,
) -> Result<&'static Operation, String> {
    let operation = OPERATIONS
        .iter()
        .find(|op| op.method == method && matches(&op.path, raw_path))
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
