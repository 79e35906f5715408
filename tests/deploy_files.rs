//! The deployment files keep their promises: the Docker image contains
//! everything the build embeds and runs as a non-root user with git; Fly
//! checks /healthz and never stops the machine the workers run on.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Top-level folders the sources embed at compile time.
fn embedded_dirs() -> Vec<String> {
    let mut dirs = std::collections::BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for marker in ["include_str!(\"", "include_bytes!(\"", "migrate!(\""] {
                for (at, _) in text.match_indices(marker) {
                    let rest = &text[at + marker.len()..];
                    let target = &rest[..rest.find('"').unwrap()];
                    let first = target
                        .split('/')
                        .find(|p| *p != ".." && *p != ".")
                        .unwrap()
                        .to_string();
                    dirs.insert(first);
                }
            }
        }
    }
    dirs.into_iter().collect()
}

#[test]
fn dockerfile_builds_release_and_runs_slim_non_root_with_git() {
    let docker = read("Dockerfile");
    assert!(docker.contains("AS build"), "multi-stage");
    assert!(docker.contains("cargo build --release --locked"));
    assert!(docker.contains("FROM debian:bookworm-slim"));
    assert!(docker.contains("git ca-certificates"));
    // Non-root: the image's `graft` command drops to uid 10001, also when a
    // root-owned volume (Fly.io) must be handed over first.
    assert!(docker.contains("COPY deploy/graft-as-user.sh /usr/local/bin/graft"));
    assert!(docker.contains("/usr/local/lib/graft/graft"));
    let wrapper = read("deploy/graft-as-user.sh");
    assert!(
        wrapper.contains("exec setpriv --reuid=10001 --regid=10001 --clear-groups -- \"$real\""),
        "{wrapper}"
    );
    assert!(wrapper.contains("real=/usr/local/lib/graft/graft"));
    let dirs = embedded_dirs();
    assert!(dirs.contains(&"migrations".to_string()), "{dirs:?}");
    assert!(dirs.contains(&"app-manifest".to_string()), "{dirs:?}");
    for dir in dirs {
        assert!(
            docker.contains(&format!("COPY {dir} ./{dir}")),
            "the build embeds {dir}/ but the Dockerfile does not copy it"
        );
    }
}

#[test]
fn fly_keeps_the_worker_machine_running_and_checks_health() {
    let fly = read("fly.toml");
    assert!(fly.contains("auto_stop_machines = \"off\""));
    assert!(fly.contains("path = \"/healthz\""));
    assert!(
        fly.contains("destination = \"/data\""),
        "a volume for SQLite"
    );
    assert!(fly.contains("DATABASE_URL = \"sqlite:///data/graft.db\""));
    assert!(
        fly.contains("fly postgres attach"),
        "how to switch to PostgreSQL"
    );
    assert!(
        !fly.lines()
            .any(|l| l.trim_start().starts_with("GRAFT_PUBLIC_URL")),
        "no placeholder public URL: it would send GitHub's setup code elsewhere"
    );
}

#[test]
fn the_readme_configuration_table_names_every_setting() {
    let config = read("src/cli/config.rs");
    let readme = read("README.md");
    let mut missing = Vec::new();
    for (at, _) in config.match_indices("env = \"") {
        let rest = &config[at + "env = \"".len()..];
        let name = &rest[..rest.find('"').unwrap()];
        if !readme.contains(&format!("| `{name}` |")) {
            missing.push(name.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "settings in src/cli/config.rs missing from the README's configuration table: {missing:?}"
    );
}
