//! Property tests that stand in for fuzzing (cargo-fuzz needs a nightly
//! toolchain): whatever arrives from outside (webhook bodies, comments,
//! paths, generated files, stored secrets) is answered with `Ok` or `Err`,
//! never a panic, and in bounded time.
//!
//! Each property runs a fixed number of cases (its default below, or
//! `PROPTEST_CASES`) so the suite stays a few seconds long under the
//! normal `cargo test`. Inputs that once failed are kept as explicit
//! tests at the end of this file.

use std::path::{Component, Path};
use std::time::{Duration, Instant};

use graft::crypto::Key;
use graft::events::{github, gitlab};
use graft::git::paths;
use graft::git::validate::{self, Severity};
use graft::slash::parse::{self, MAX_COMMANDS};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// `default` cases, or `PROPTEST_CASES` when set.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

/// How long one input may take, debug build included.
const BOUND: Duration = Duration::from_secs(2);

// ---- webhook payloads --------------------------------------------------

const GITHUB_EVENTS: &[&str] = &[
    "ping",
    "push",
    "pull_request",
    "issue_comment",
    "installation",
    "installation_repositories",
    "star",
];
const GITLAB_EVENTS: &[&str] = &[
    "Push Hook",
    "Merge Request Hook",
    "Note Hook",
    "Issue Hook",
    "System Hook",
    "Pipeline Hook",
];

/// Field names the parsers look at, so random objects reach past the
/// first missing field.
const KEYS: &[&str] = &[
    "action",
    "ref",
    "before",
    "after",
    "commits",
    "added",
    "modified",
    "removed",
    "repository",
    "full_name",
    "id",
    "pull_request",
    "number",
    "merged",
    "head",
    "base",
    "sha",
    "installation",
    "account",
    "login",
    "type",
    "repositories",
    "repositories_added",
    "repositories_removed",
    "comment",
    "body",
    "user",
    "issue",
    "changes",
    "from",
    "sender",
    "object_kind",
    "project",
    "path_with_namespace",
    "object_attributes",
    "iid",
    "note",
    "noteable_type",
    "merge_request",
    "source_branch",
    "target_branch",
    "last_commit",
    "oldrev",
    "merge_commit_sha",
    "user_username",
    "user_id",
    "username",
    "event_type",
    "updated_at",
    "created_at",
    "author",
    "editor",
    "deleted",
    "node_id",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("created".to_string()),
            Just("closed".to_string()),
            Just("merge".to_string()),
            Just("refs/heads/main".to_string()),
            Just("0000000000000000000000000000000000000000".to_string()),
            ".{0,24}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|fields| {
                Value::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn fixtures(forge: &str) -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/webhooks")
        .join(forge);
    let mut found: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.to_string();
            let value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            Some((name, value))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Every JSON pointer in `value`.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{at}/{escaped}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A real payload with some of its values replaced by random ones.
fn mutated(mut payload: Value, edits: &[(usize, Value)]) -> Value {
    for (index, replacement) in edits {
        let mut all = Vec::new();
        pointers(&payload, String::new(), &mut all);
        let pointer = &all[index % all.len()];
        if pointer.is_empty() {
            payload = replacement.clone();
        } else if let Some(slot) = payload.pointer_mut(pointer) {
            *slot = replacement.clone();
        }
    }
    payload
}

/// The GitHub event name a fixture file is delivered under.
fn github_event_of(file: &str) -> &str {
    file.split('.').next().unwrap_or("ping")
}

fn gitlab_event_of(file: &str) -> &str {
    match file.split('.').next().unwrap_or_default() {
        "push" => "Push Hook",
        "merge_request" => "Merge Request Hook",
        "note" => "Note Hook",
        "issue" => "Issue Hook",
        _ => "System Hook",
    }
}

fn event_name(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(known).prop_map(str::to_string),
        1 => ".{0,16}",
    ]
}

/// Parses with both forges' parsers; either answer is fine, a panic or a
/// slow answer is not.
fn parse_both(github_event: &str, gitlab_event: &str, body: &[u8]) {
    let started = Instant::now();
    let _ = github::parse(github_event, body);
    let _ = gitlab::parse(gitlab_event, body);
    assert!(
        started.elapsed() < BOUND,
        "parsing took {:?}",
        started.elapsed()
    );
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn webhook_bytes_never_panic(
        github_event in event_name(GITHUB_EVENTS),
        gitlab_event in event_name(GITLAB_EVENTS),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        parse_both(&github_event, &gitlab_event, &body);
    }

    #[test]
    fn webhook_json_never_panics(
        github_event in event_name(GITHUB_EVENTS),
        gitlab_event in event_name(GITLAB_EVENTS),
        body in json_value(),
    ) {
        parse_both(&github_event, &gitlab_event, body.to_string().as_bytes());
    }

    #[test]
    fn mutated_real_payloads_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<usize>(), json_value()), 1..4),
    ) {
        for forge in ["github", "gitlab"] {
            let all = fixtures(forge);
            let (file, payload) = which.get(&all);
            let body = mutated(payload.clone(), &edits).to_string();
            let started = Instant::now();
            let _ = match forge {
                "github" => github::parse(github_event_of(file), body.as_bytes()),
                _ => gitlab::parse(gitlab_event_of(file), body.as_bytes()),
            };
            prop_assert!(started.elapsed() < BOUND);
        }
    }
}

// ---- slash commands ----------------------------------------------------

/// Comment text made of the pieces the parser and Markdown care about.
fn comment() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/graft".to_string()),
        Just("/GRAFT".to_string()),
        Just(" sync".to_string()),
        Just(" --force".to_string()),
        Just(" automerge on".to_string()),
        Just(" help".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("```".to_string()),
        Just("~~~".to_string()),
        Just("`".to_string()),
        Just("> ".to_string()),
        Just("    ".to_string()),
        Just("\t".to_string()),
        Just("<!--".to_string()),
        Just("-->".to_string()),
        Just("<div>".to_string()),
        Just("- ".to_string()),
        Just("\u{0}".to_string()),
        Just("é".to_string()),
        Just("\u{202e}".to_string()),
        ".{0,8}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn command_parsing_is_total_and_bounded(body in comment(), previous in comment()) {
        let started = Instant::now();
        let found = parse::parse(&body, "/graft");
        let before = parse::parse(&previous, "/graft");
        let lines = body.split('\n').count();
        prop_assert!(found.len() <= MAX_COMMANDS + 1);
        for invocation in &found {
            prop_assert!(invocation.line >= 1 && invocation.line <= lines);
            prop_assert!(invocation.text.chars().count() <= 200);
            let _ = invocation.normalized("/graft");
        }
        for index in parse::new_since(&found, &before, "/graft") {
            prop_assert!(index < found.len());
        }
        let echoed = parse::echo(&body);
        prop_assert!(!echoed.contains('`') && echoed.chars().count() <= 41);
        prop_assert!(!echoed.chars().any(char::is_control));
        prop_assert!(started.elapsed() < BOUND);
    }

    #[test]
    fn any_prefix_is_safe(body in ".{0,200}", prefix in ".{0,8}") {
        let _ = parse::parse(&body, &prefix);
    }
}

// ---- paths -------------------------------------------------------------

/// Paths built from the characters and names path checks are about.
fn path_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just(".git".to_string()),
        Just(".GiT".to_string()),
        Just("git~1".to_string()),
        Just(" ".to_string()),
        Just("\\".to_string()),
        Just("\u{0}".to_string()),
        Just("\n".to_string()),
        Just("~".to_string()),
        Just("c:".to_string()),
        Just("a".to_string()),
        Just("main.tf".to_string()),
        Just("é".to_string()),
        ".{0,4}",
    ];
    prop::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat())
}

fn is_git_name(component: &str) -> bool {
    let lower = component.to_ascii_lowercase();
    lower.trim_end_matches(['.', ' ']) == ".git" || lower == "git~1"
}

/// What every accepted managed path must be.
fn assert_safe(path: &str) -> Result<(), TestCaseError> {
    prop_assert!(!path.is_empty());
    prop_assert!(path.len() <= paths::MAX_PATH_LEN);
    prop_assert!(!path.starts_with('/') && !path.starts_with('~'));
    prop_assert!(!path.contains('\\') && !path.chars().any(char::is_control));
    for component in path.split('/') {
        prop_assert!(!matches!(component, "" | "." | ".."), "{path:?}");
        prop_assert!(!is_git_name(component), "{path:?}");
        prop_assert!(component.len() <= paths::MAX_NAME_LEN);
    }
    // The operating system sees only plain names, nothing that climbs.
    prop_assert!(
        Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_))),
        "{path:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn accepted_paths_stay_inside(base in path_text(), path in path_text()) {
        if paths::validate_file_path(&path).is_ok() {
            assert_safe(&path)?;
        }
        if paths::validate_base_path(&base).is_ok() && !base.is_empty() {
            assert_safe(&base)?;
        }
        if paths::validate_base_path(&base).is_ok() && paths::validate_in_base(&base, &path).is_ok() {
            let full = paths::repo_path(&base, &path);
            assert_safe(&full)?;
            prop_assert!(paths::validate_file_path(&full).is_ok());
        }
        if paths::validate_checkout_path(&path).is_ok() {
            prop_assert!(!path.starts_with('/'));
            for component in path.split('/') {
                prop_assert!(!matches!(component, "" | "." | ".."));
                prop_assert!(!is_git_name(component));
            }
        }
    }
}

// ---- validation of generated files ------------------------------------

/// Text made of the tokens HCL, YAML and JSON nest, quote and alias with.
fn structured_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("${".to_string()),
        Just("%{".to_string()),
        Just("<<EOT\n".to_string()),
        Just("<<-EOT\n".to_string()),
        Just("EOT\n".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("- ".to_string()),
        Just(": ".to_string()),
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("\t".to_string()),
        Just(" = ".to_string()),
        Just(", ".to_string()),
        Just("? ".to_string()),
        Just("!".to_string()),
        Just("#".to_string()),
        Just("/*".to_string()),
        Just("*/".to_string()),
        Just("---\n".to_string()),
        Just("module \"m\" {\n source = \"../x\"\n}\n".to_string()),
        Just("a".to_string()),
        Just("1".to_string()),
        Just("1e999".to_string()),
        ".{0,6}",
    ];
    prop::collection::vec(piece, 0..120).prop_map(|pieces| pieces.concat())
}

/// A file through the same entry point a sync uses; findings name it.
fn validate_one(name: &str, content: &[u8]) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let findings = validate::check_file(name, content, &|_| true);
    prop_assert!(
        started.elapsed() < BOUND,
        "{name} took {:?}",
        started.elapsed()
    );
    for finding in &findings {
        prop_assert_eq!(&finding.file, name);
        prop_assert!(finding.severity == Severity::Error || finding.severity == Severity::Warning);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn validation_never_panics_on_token_soup(text in structured_text()) {
        for name in ["infra/main.tf", "k8s/app.yaml", "data/x.json"] {
            validate_one(name, text.as_bytes())?;
        }
    }

    #[test]
    fn validation_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for name in ["infra/main.tofu", "k8s/app.yml", "data/x.json"] {
            validate_one(name, &bytes)?;
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed(
        depth in 90usize..20_000,
        open in prop::sample::select(vec!["[", "{\"a\":", "(", "- ", "a = [", "${"]),
    ) {
        let text = open.repeat(depth);
        for name in ["infra/main.tf", "k8s/app.yaml", "data/x.json"] {
            validate_one(name, text.as_bytes())?;
        }
    }
}

// ---- sealed secrets ----------------------------------------------------

fn key() -> Key {
    let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    Key::parse(&SecretString::from(hex.to_string())).expect("test key")
}

/// `v1:iv:tag:body` shapes with arbitrary parts, and free text.
fn sealed_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,80}",
        (
            prop_oneof![Just("v1".to_string()), ".{0,3}"],
            "[0-9a-fA-Fg:]{0,30}",
            "[0-9a-fA-F]{0,40}",
            "[0-9a-fA-F:]{0,64}",
        )
            .prop_map(|(prefix, iv, tag, body)| format!("{prefix}:{iv}:{tag}:{body}")),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn forged_sealed_values_are_refused(text in sealed_text()) {
        prop_assert!(key().open(&text).is_err());
        let _ = Key::parse(&SecretString::from(text));
    }

    #[test]
    fn a_changed_sealed_value_never_opens_to_something_else(
        plaintext in ".{0,40}",
        at in any::<prop::sample::Index>(),
        replacement in any::<char>(),
    ) {
        let key = key();
        let sealed = key.seal(&plaintext).unwrap();
        let mut chars: Vec<char> = sealed.chars().collect();
        let index = at.index(chars.len());
        chars[index] = replacement;
        let changed: String = chars.into_iter().collect();
        // Hex is case-blind, so a change of case may still open: then it
        // must open to the same text.
        if let Ok(opened) = key.open(&changed) {
            prop_assert_eq!(opened.expose_secret(), plaintext.as_str());
        }
    }
}

// ---- regressions -------------------------------------------------------

/// Every command line was compared with every ignored Markdown range: a
/// GitLab note (up to 1 MB) of many small HTML comments holding command
/// lines took minutes of a worker's time.
#[test]
fn many_ignored_ranges_parse_in_bounded_time() {
    let body = "<!--\n/graft sync\n-->\n\n".repeat(40_000);
    let started = Instant::now();
    assert!(parse::parse(&body, "/graft").is_empty());
    // 0.1 s now, over two minutes before; room for a busy CI machine.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}
