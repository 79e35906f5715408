//! Checks the GraphQL requests graft sends against GitHub's schema, trimmed
//! to what graft uses (`tests/fixtures/graphql/github-schema.graphql`, made
//! by `trim.cjs`): the document is a valid operation for it (fields,
//! arguments, input fields, enum values, variable types, per the GraphQL
//! spec's validation rules), the variables sent coerce to the declared
//! types, and none is sent that the operation does not declare.

use std::sync::LazyLock;

use apollo_compiler::response::{JsonMap, serde_json_bytes};
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use serde_json::Value;

static SCHEMA: LazyLock<Valid<Schema>> = LazyLock::new(|| {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/graphql/github-schema.graphql"
    ))
    .expect("trimmed GraphQL schema");
    Schema::parse_and_validate(text, "github-schema.graphql")
        .expect("trimmed GraphQL schema is valid")
});

/// `Ok` when GitHub would accept the request's shape, or why not.
pub fn check(body: &Value) -> Result<(), String> {
    let query = body["query"]
        .as_str()
        .ok_or("GraphQL request without a `query` string")?;
    let document = ExecutableDocument::parse_and_validate(&SCHEMA, query, "request.graphql")
        .map_err(|e| format!("GraphQL query does not fit GitHub's schema: {}", e.errors))?;
    let operation = document
        .operations
        .get(body["operationName"].as_str())
        .map_err(|e| format!("GraphQL: {}", e.message()))?;
    let variables = match body.get("variables") {
        None | Some(Value::Null) => JsonMap::new(),
        Some(Value::Object(map)) => {
            match serde_json_bytes::Value::from(Value::Object(map.clone())) {
                serde_json_bytes::Value::Object(map) => map,
                _ => unreachable!("an object converts to an object"),
            }
        }
        Some(other) => return Err(format!("GraphQL `variables` is not an object: {other}")),
    };
    for name in variables.keys() {
        if !operation
            .variables
            .iter()
            .any(|v| v.name.as_str() == name.as_str())
        {
            return Err(format!(
                "GraphQL variable `{}` is not declared by the operation",
                name.as_str()
            ));
        }
    }
    apollo_compiler::request::coerce_variable_values(&SCHEMA, operation, &variables)
        .map_err(|e| format!("GraphQL variables: {}", e.message()))?;
    Ok(())
}
