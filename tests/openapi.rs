//! `GET /api/v1/openapi.json`: served without a token (and with the small
//! body limit of the routes anyone can reach), a well-formed OpenAPI 3
//! document, and true to the router: every described route answers on its
//! methods and only those, the generator scopes are the authorization
//! table's, the README's route table and docs/api.md list the same routes,
//! and real answers fit their schemas.

mod support;

use std::collections::{BTreeSet, HashSet};

use graft::http::openapi::{DOCUMENT_PATH, openapi_path};
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestApp, TestDb, default_settings};

/// The methods the API could use; each described path is probed with all.
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

fn document() -> Value {
    serde_json::to_value(graft::http::openapi::document()).expect("document serializes")
}

/// Every (METHOD, path) the document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for method in METHODS {
            if item.get(method.to_lowercase()).is_some() {
                found.insert((method.to_string(), path.clone()));
            }
        }
    }
    found
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    &doc["paths"][path][method.to_lowercase()]
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                out.push(target.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let name = reference
        .strip_prefix("#/components/schemas/")
        .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
    &doc["components"]["schemas"][name]
}

#[test]
fn the_document_is_well_formed_openapi_3() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "graft API");
    assert!(
        doc["info"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert!(doc["components"]["schemas"]["Error"].is_object());
    let scheme = &doc["components"]["securitySchemes"]["token"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for reference in all {
        assert!(resolve(&doc, &reference).is_object(), "{reference} dangles");
    }
    let mut ids = HashSet::new();
    for (method, path) in operations(&doc) {
        let op = operation(&doc, &method, &path);
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(
            ids.insert(id.to_string()),
            "{method} {path}: operationId `{id}` twice"
        );
        assert!(op["summary"].is_string(), "{method} {path} has no summary");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} has no responses"
        );
        // Path template parameters and declared path parameters agree.
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .inspect(|p| assert_eq!(p["required"], true, "{method} {path}"))
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(in_template, declared, "{method} {path}");
        // Every route but the description itself needs a token.
        let security = &op["security"];
        if path == DOCUMENT_PATH {
            assert!(security.is_null(), "{security}");
        } else {
            let scopes = security[0]["token"].as_array().expect("a token scope list");
            assert!(scopes.contains(&json!("admin")), "{method} {path}");
            assert!(op["responses"]["401"].is_object(), "{method} {path}");
        }
    }
}

/// axum cannot list a router's routes, so the API's modules register
/// theirs only through `routes!` (route and description from one
/// `#[utoipa::path]`); a plain `.route(` would be a route the description
/// misses.
#[test]
fn api_routes_are_registered_only_with_their_description() {
    let root = env!("CARGO_MANIFEST_DIR");
    for module in ["api", "projects", "files"] {
        let source = std::fs::read_to_string(format!("{root}/src/http/{module}.rs")).unwrap();
        assert!(source.contains("routes!("), "{module}");
        assert!(
            !source.contains(".route("),
            "src/http/{module}.rs registers a route without `routes!`"
        );
    }
}

/// A described path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "999999")
        .replace("{path}", "modules/vpc/main.tf")
}

async fn every_described_route_answers_on_its_methods_only(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("admin").await;
    let doc = document();
    let described = operations(&doc);
    let paths: BTreeSet<&String> = described.iter().map(|(_, p)| p).collect();
    assert!(paths.len() >= 7, "{paths:?}");
    for path in paths {
        for method in METHODS {
            // Bodies that no handler accepts: probing changes nothing.
            let response = app
                .http
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(&concrete(path)),
                )
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let is_described = described.contains(&(method.to_string(), path.clone()));
            let unrouted = status == 405
                || (status == 404
                    && body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("no such route")));
            assert_eq!(
                !unrouted, is_described,
                "{method} {path}: {status} {body} (described: {is_described})"
            );
        }
    }
    // The probe can tell a missing route from a missing project.
    for path in ["/api/v1/nothing", "/api/v1/projects/1/nothing"] {
        let response = app
            .http
            .get(app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
    assert!(app.store.list_projects().await.unwrap().is_empty());
    app.stop().await;
}

async fn the_description_is_served_without_a_token(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let response = app.http.get(app.url(DOCUMENT_PATH)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, document());
    // Only it: its neighbours still need a token.
    let response = app
        .http
        .get(app.url("/api/v1/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // The small body limit of the routes anyone can reach.
    let response = app
        .http
        .get(app.url(DOCUMENT_PATH))
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    app.stop().await;
}

#[test]
fn generator_scopes_are_the_authorization_tables() {
    let doc = document();
    let mut table = BTreeSet::new();
    for (route, methods) in graft::http::auth::GENERATOR_ROUTES {
        for method in *methods {
            table.insert((
                method.to_string(),
                format!("/api/v1{}", openapi_path(route)),
            ));
        }
    }
    let described: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .filter(|(method, path)| {
            operation(&doc, method, path)["security"][0]["token"]
                .as_array()
                .is_some_and(|s| s.contains(&json!("generator")))
        })
        .collect();
    assert_eq!(described, table);
}

/// The `/api/v1` routes of the README's "HTTP surface" table, e.g. from
/// "`GET`/`PUT`/`DELETE /api/v1/projects/{id}/files/{path}`".
fn readme_routes(readme: &str) -> BTreeSet<(String, String)> {
    let section = readme
        .split("## HTTP surface")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has an HTTP surface section");
    let mut routes = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).unwrap_or_default().replace('`', "");
        for item in cell.split(", ") {
            let Some((methods, path)) = item.trim().split_once(' ') else {
                continue;
            };
            if path.starts_with("/api/v1") {
                for method in methods.split('/') {
                    routes.insert((method.to_string(), path.to_string()));
                }
            }
        }
    }
    routes
}

#[test]
fn the_readme_and_docs_list_the_described_routes() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let guide = std::fs::read_to_string(format!("{root}/docs/api.md")).unwrap();
    let described = operations(&document());
    assert_eq!(readme_routes(&readme), described);
    assert!(readme.contains("docs/api.md"));
    for (method, path) in &described {
        assert!(
            guide.contains(&format!("### `{method} {path}`")),
            "docs/api.md has no section for {method} {path}"
        );
    }
}

/// Whether `value` fits `schema` (the parts of JSON Schema utoipa writes):
/// no property the schema lacks, every required one present, types,
/// enums, items, `oneOf`.
fn fits(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(Value::String(reference)) = schema.get("$ref") {
        return fits(doc, resolve(doc, reference), value, at);
    }
    if let Some(Value::Array(options)) = schema.get("oneOf").or_else(|| schema.get("anyOf")) {
        let errors: Vec<String> = options
            .iter()
            .filter_map(|o| fits(doc, o, value, at).err())
            .collect();
        return if errors.len() < options.len() {
            Ok(())
        } else {
            Err(errors.join("; "))
        };
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let typed = allowed.is_empty()
        || allowed.contains(&kind)
        || (kind == "integer" && allowed.contains(&"number"));
    if !typed {
        return Err(format!("{at}: {kind}, schema says {allowed:?}"));
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !value.is_null()
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} not in {options:?}"));
    }
    if let (Some(Value::Object(properties)), Value::Object(fields)) =
        (schema.get("properties"), value)
    {
        for (name, field) in fields {
            let property = properties
                .get(name)
                .ok_or_else(|| format!("{at}.{name}: not in the schema"))?;
            fits(doc, property, field, &format!("{at}.{name}"))?;
        }
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !fields.contains_key(name) {
                return Err(format!("{at}.{name}: required but missing"));
            }
        }
    }
    if let (Some(items), Value::Array(elements)) = (schema.get("items"), value) {
        for (i, element) in elements.iter().enumerate() {
            fits(doc, items, element, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Calls `url` (under `/api/v1`) and checks the answer against the schema
/// the description gives `route` for the status it answered with.
async fn call(
    app: &TestApp,
    token: &str,
    (method, route): (&str, &str),
    url: &str,
    body: Option<Value>,
) -> Value {
    let doc = document();
    let mut request = app
        .http
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            app.url(&format!("/api/v1{url}")),
        )
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16().to_string();
    let value: Value = response.json().await.unwrap();
    let route = format!("/api/v1{route}");
    let schema = &operation(&doc, method, &route)["responses"][&status]["content"]["application/json"]
        ["schema"];
    assert!(
        schema.is_object(),
        "{method} {route} does not describe a {status}: {value}"
    );
    if let Err(e) = fits(&doc, schema, &value, "body") {
        panic!("{method} {url} answered {status} {value}\nwhich does not fit its schema: {e}");
    }
    value
}

async fn answers_fit_their_schemas(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("admin").await;
    let t = token.as_str();
    let project = call(
        &app,
        t,
        ("POST", "/projects"),
        "/projects",
        Some(json!({
            "provider": "github", "repo": "acme/infra", "branch": "main",
            "base_path": "gen", "kind": "iac", "mode": "pull_request",
        })),
    )
    .await;
    let id = project["id"].as_i64().unwrap();
    let one = format!("/projects/{id}");
    let files = format!("/projects/{id}/files");
    let file = format!("/projects/{id}/files/modules/a.tf");
    call(&app, t, ("GET", "/projects"), "/projects", None).await;
    call(&app, t, ("GET", "/projects/{id}"), &one, None).await;
    let upload = json!({"files": [
        {"path": "main.tf", "content": "# generated\n", "sync_on_change": true},
        {"path": "bin/tool", "content": {"base64": "AP8K"}, "executable": true},
    ], "source": "tf-gen"});
    let changed = call(
        &app,
        t,
        ("PUT", "/projects/{id}/files"),
        &files,
        Some(upload),
    )
    .await;
    assert_eq!(changed["changed"].as_array().map(Vec::len), Some(2));
    let with_content = format!("{files}?content=true");
    let listed = call(
        &app,
        t,
        ("GET", "/projects/{id}/files"),
        &with_content,
        None,
    )
    .await;
    assert_eq!(listed["files"][0]["content"], json!({"base64": "AP8K"}));
    call(&app, t, ("GET", "/projects/{id}/files"), &files, None).await;
    let content = Some(json!({"content": "x"}));
    call(
        &app,
        t,
        ("PUT", "/projects/{id}/files/{path}"),
        &file,
        content,
    )
    .await;
    call(&app, t, ("GET", "/projects/{id}/files/{path}"), &file, None).await;
    call(
        &app,
        t,
        ("DELETE", "/projects/{id}/files/{path}"),
        &file,
        None,
    )
    .await;
    let sync = format!("/projects/{id}/sync");
    call(&app, t, ("POST", "/projects/{id}/sync"), &sync, None).await;
    let log = format!("/projects/{id}/events?limit=5");
    let events = call(&app, t, ("GET", "/projects/{id}/events"), &log, None).await;
    assert!(!events["events"].as_array().unwrap().is_empty());
    let gitlab = graft::store::integrations::NewIntegration {
        provider: "gitlab",
        name: "ops",
        base_url: "https://gitlab.example.com",
        token_sealed: None,
        webhook_secret_sealed: None,
    };
    app.store.save_integration(&gitlab, 1).await.unwrap();
    let integrations = "/integrations/gitlab";
    call(&app, t, ("GET", integrations), integrations, None).await;
    // Errors fit the Error schema.
    let missing = call(&app, t, ("GET", "/projects/{id}"), "/projects/424242", None).await;
    assert_eq!(missing["error"]["code"], "not_found");
    let half = Some(json!({"provider": "github"}));
    let invalid = call(&app, t, ("POST", "/projects"), "/projects", half).await;
    assert_eq!(invalid["error"]["code"], "invalid_field");
    app.stop().await;
}

both_backends!(
    every_described_route_answers_on_its_methods_only,
    the_description_is_served_without_a_token,
    answers_fit_their_schemas,
);
