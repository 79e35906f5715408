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

/// A root field of the request's operation: its arguments as JSON (the
/// request's variables put in) and what it selects, so that a mutation
/// handler reads its input however the client wrote it and answers only
/// the fields asked for, as GitHub does.
pub struct RootField {
    pub arguments: serde_json::Map<String, Value>,
    pub selection: Vec<Selected>,
}

/// One selected field: its response key (alias or name), its name and
/// what it selects in turn.
pub struct Selected {
    pub key: String,
    pub name: String,
    pub selection: Vec<Selected>,
}

/// Root field `name` of a request that passed [`check`].
pub fn root_field(body: &Value, name: &str) -> Option<RootField> {
    let query = body["query"].as_str()?;
    let document = ExecutableDocument::parse(&SCHEMA, query, "request.graphql").ok()?;
    let operation = document
        .operations
        .get(body["operationName"].as_str())
        .ok()?;
    let field = operation
        .selection_set
        .selections
        .iter()
        .filter_map(|s| s.as_field())
        .find(|f| f.name.as_str() == name)?;
    let variables = &body["variables"];
    let arguments = field
        .arguments
        .iter()
        .map(|a| (a.name.to_string(), to_json(&a.value, variables)))
        .collect();
    Some(RootField {
        arguments,
        selection: selected(&field.selection_set),
    })
}

fn selected(set: &apollo_compiler::executable::SelectionSet) -> Vec<Selected> {
    set.selections
        .iter()
        .filter_map(|s| s.as_field())
        .map(|f| Selected {
            key: f.response_key().to_string(),
            name: f.name.to_string(),
            selection: selected(&f.selection_set),
        })
        .collect()
}

fn to_json(value: &apollo_compiler::ast::Value, variables: &Value) -> Value {
    use apollo_compiler::ast::Value as V;
    match value {
        V::Null => Value::Null,
        V::Enum(name) => Value::String(name.to_string()),
        V::Variable(name) => variables[name.as_str()].clone(),
        V::String(text) => Value::String(text.clone()),
        V::Float(f) => f.as_str().parse::<f64>().map_or(Value::Null, Value::from),
        V::Int(i) => i.as_str().parse::<i64>().map_or(Value::Null, Value::from),
        V::Boolean(b) => Value::Bool(*b),
        V::List(items) => Value::Array(items.iter().map(|v| to_json(v, variables)).collect()),
        V::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), to_json(v, variables)))
                .collect(),
        ),
    }
}

/// The part of `value` that `selection` asks for, under its response
/// keys (leaves are taken whole).
pub fn project(value: &Value, selection: &[Selected]) -> Value {
    match value {
        Value::Object(fields) if !selection.is_empty() => Value::Object(
            selection
                .iter()
                .map(|s| {
                    let inner = fields.get(&s.name).cloned().unwrap_or(Value::Null);
                    (s.key.clone(), project(&inner, &s.selection))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| project(v, selection)).collect()),
        other => other.clone(),
    }
}
