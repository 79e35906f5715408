//! Generated files built to exhaust the validator (a YAML alias bomb,
//! nesting 100,000 levels deep) fail the sync with a validation error on
//! the PR that names the file and the limit; graft keeps serving and the
//! next, fixed sync goes through.

mod support;

use graft::store::projects::{Kind, Mode, SyncStatus};
use support::TestDb;
use support::harness::Harness;
use support::sync::{input, put, settled};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 77;

/// Ten aliases per level, nine levels: a billion strings once expanded.
fn billion_laughs() -> String {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..=9 {
        let items = vec![format!("*a{}", level - 1); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    text
}

fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

async fn hostile_files_are_validation_errors_on_the_pr(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p =
        support::sync::new_project(&h, "github", REPO, Mode::PullRequest, Kind::Iac, "infra").await;
    let deep = 100_000;
    put(
        &h,
        p.id,
        &[
            input("bomb.yaml", &billion_laughs()),
            input("deep.json", &nested("[", "1", "]", deep)),
            input("deep.tf", &format!("a = {}\n", nested("[", "1", "]", deep))),
        ],
    )
    .await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.unwrap();
    assert!(
        error.contains("3 error(s)") && error.contains("500000 nodes"),
        "{error}"
    );

    // The PR lists each file with the limit it exceeded.
    let pulls = h.github.pulls(REPO);
    assert_eq!(pulls.len(), 1, "the PR is opened for review");
    let sticky = h
        .github
        .comments(REPO, pulls[0].number)
        .into_iter()
        .find(|c| c.body.contains("<!-- graft:status -->"))
        .expect("a status comment");
    for (file, limit) in [
        ("infra/bomb.yaml", "more than 500000 nodes"),
        ("infra/deep.json", "nested more than 100 levels"),
        ("infra/deep.tf", "at most 64 nested levels"),
    ] {
        assert!(
            sticky.body.contains(file) && sticky.body.contains(limit),
            "{file}: {}",
            sticky.body
        );
    }
    assert_eq!(
        h.github
            .check_runs(REPO)
            .last()
            .unwrap()
            .conclusion
            .as_deref(),
        Some("failure")
    );

    // graft still serves, and the fixed files sync.
    let health = h.app.http.get(h.app.url("/healthz")).send().await.unwrap();
    assert!(health.status().is_success());
    put(
        &h,
        p.id,
        &[
            input("bomb.yaml", "a: &a [1, 2]\nb: *a\n"),
            input("deep.json", &nested("[", "1", "]", 50)),
            input("deep.tf", "a = [[1]]\n"),
        ],
    )
    .await;
    let fixed = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(fixed.sync_error, None);
    h.stop().await;
}

both_backends!(hostile_files_are_validation_errors_on_the_pr);
