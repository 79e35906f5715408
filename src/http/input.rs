//! Reading JSON request bodies field by field, so that every error names
//! the field (and the file) to fix, and unknown fields are refused instead
//! of silently ignored.

use serde_json::{Map, Value};

use crate::ids::ProjectId;

use super::error::ApiError;

/// One JSON object being read; `context` prefixes messages (e.g.
/// "files[3] `a.tf`: ").
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
    context: String,
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Fields {
    /// `value` must be an object whose fields are all in `allowed`.
    pub fn new(value: Value, context: &str, allowed: &[&str]) -> Result<Self, ApiError> {
        let Value::Object(map) = value else {
            return Err(ApiError::invalid_field(format!(
                "{}must be a JSON object, not {}",
                if context.is_empty() {
                    "the request body ".to_string()
                } else {
                    context.to_string()
                },
                kind_of(&value)
            )));
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::invalid_field(format!(
                "{context}unknown field `{unknown}`; the fields are: {}",
                allowed.join(", ")
            )));
        }
        Ok(Fields {
            map,
            context: context.to_string(),
        })
    }

    pub fn set_context(&mut self, context: &str) {
        self.context = context.to_string();
    }

    /// Takes a field; `null` counts as absent.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    fn wrong(&self, name: &str, expected: &str, got: &Value) -> ApiError {
        ApiError::invalid_field(format!(
            "{}`{name}` must be {expected}, not {}",
            self.context,
            kind_of(got)
        ))
    }

    pub fn missing(&self, name: &str) -> ApiError {
        ApiError::invalid_field(format!("{}`{name}` is required", self.context))
    }

    pub fn opt_str(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(name, "a string", &other)),
        }
    }

    pub fn str(&mut self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?.ok_or_else(|| self.missing(name))
    }

    pub fn opt_bool(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(self.wrong(name, "true or false", &other)),
        }
    }

    pub fn opt_i64(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
            Some(other) => Err(self.wrong(name, "an integer", &other)),
        }
    }
}

/// A project id from the URL; anything but a positive integer names no
/// project.
pub fn project_id(raw: &str) -> Result<ProjectId, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(ProjectId)
        .ok_or_else(|| ApiError::not_found(format!("project `{raw}` not found")))
}

/// A boolean query parameter: `true`/`false`/`1`/`0`, absent = `false`.
pub fn query_flag(value: Option<&String>, name: &str) -> Result<bool, ApiError> {
    match value.map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::invalid_field(format!(
            "query parameter `{name}` must be true or false, not `{other}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_and_wrong_types_name_the_field() {
        let err = Fields::new(json!({"a": 1, "zzz": 2}), "", &["a"]).unwrap_err();
        assert!(err.message.contains("`zzz`"), "{}", err.message);
        let mut f = Fields::new(json!({"a": "yes"}), "files[0]: ", &["a", "b"]).unwrap();
        let err = f.opt_bool("a").unwrap_err();
        assert_eq!(err.code, "invalid_field");
        assert!(
            err.message
                .contains("files[0]: `a` must be true or false, not a string")
        );
        assert!(f.str("b").unwrap_err().message.contains("`b` is required"));
        let err = Fields::new(json!([1]), "", &[]).unwrap_err();
        assert!(err.message.contains("JSON object"), "{}", err.message);
    }

    #[test]
    fn nulls_count_as_absent() {
        let mut f = Fields::new(json!({"a": null}), "", &["a"]).unwrap();
        assert_eq!(f.opt_bool("a").unwrap(), None);
    }

    #[test]
    fn project_ids_are_positive_integers() {
        assert_eq!(project_id("12").unwrap(), ProjectId(12));
        for bad in ["0", "-1", "x", "1.5", ""] {
            assert_eq!(project_id(bad).unwrap_err().code, "not_found");
        }
    }
}
