//! `/api/v1/repositories` beyond the basics (`repositories.rs`): without
//! `ref`, trees and files are read at the repository's default branch (an
//! empty GitLab project has none: 404 saying so); on GitHub an
//! installation that refuses graft is left out of the listing while one
//! that fails for now fails it, on both backends. (`Harness::stop` checks
//! every request against the forges' API descriptions.)

mod support;

use serde_json::Value;
use support::TestDb;
use support::harness::Harness;

async fn get(h: &Harness, token: &str, path_and_query: &str) -> (u16, Value) {
    let (status, text) = h.api_get(token, path_and_query).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn repos(list: &Value) -> Vec<&str> {
    list["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("no repositories in {list}"))
        .iter()
        .map(|r| r["repo"].as_str().unwrap())
        .collect()
}

/// `repo` on `provider` has `trunk` as its default branch, holding
/// `infra/main.tf` (`# trunk`), and `main` without it: tree and file
/// without `ref` are read at `trunk`, as the dashboard's folder view.
async fn default_branch_is_read(h: &Harness, token: &str, provider: &str, repo: &str, trunk: &str) {
    let (status, tree) = get(
        h,
        token,
        &format!("/repositories/tree?provider={provider}&repo={repo}&path=infra"),
    )
    .await;
    assert_eq!(status, 200, "{tree}");
    assert_eq!(tree["commit_sha"], trunk, "{tree}");
    assert_eq!(tree["entries"][0]["path"], "infra/main.tf");
    let (status, file) = get(
        h,
        token,
        &format!("/repositories/file?provider={provider}&repo={repo}&path=infra/main.tf"),
    )
    .await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["content"], "# trunk\n");
    // A ref given still wins: `main` has no such folder.
    let (status, answer) = get(
        h,
        token,
        &format!("/repositories/tree?provider={provider}&repo={repo}&ref=main&path=infra"),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &"not_found".into())
    );
    // An empty `ref` is a mistake, not a default.
    let (status, answer) = get(
        h,
        token,
        &format!("/repositories/tree?provider={provider}&repo={repo}&ref=%20"),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`ref` is empty"),
        "{answer}"
    );
    let page = h
        .app
        .http
        .get(h.app.url(&format!(
            "/repositories?provider={provider}&repo={repo}&path=infra"
        )))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(trunk),
        "the folder view names the commit: {html}"
    );
    assert_eq!(
        support::ui::input_value(&html, "branch").as_deref(),
        Some("trunk"),
        "the start form targets the default branch"
    );
}

fn trunk_files() -> [(&'static str, Option<&'static [u8]>); 1] {
    [("infra/main.tf", Some(b"# trunk\n".as_slice()))]
}

async fn github(db: TestDb) {
    let h = Harness::start(&db).await;
    let admin = h.app.create_token("admin").await;
    h.github_repo("acme/infra", 41);
    h.github.git.create_branch("acme/infra", "trunk", "main");
    let trunk = h
        .github
        .git
        .commit("acme/infra", "trunk", &trunk_files(), "trunk");
    h.github.set_default_branch("acme/infra", "trunk");
    default_branch_is_read(&h, &admin, "github", "acme/infra", &trunk).await;
    let (status, answer) = get(
        &h,
        &admin,
        "/repositories/tree?provider=github&repo=acme/secret",
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &"not_found".into())
    );
    h.stop().await;
}

/// One installation refusing graft (403 on its token) is left out; the
/// others are listed. One failing for now (502 every time, after
/// retries) fails the listing: no list is silently short.
async fn github_installations(db: TestDb) {
    let h = Harness::start(&db).await;
    let admin = h.app.create_token("admin").await;
    h.github_repo("acme/infra", 41);
    h.github_repo("other/tools", 42);
    h.github_repo("third/site", 43);
    // Before any token of installation 42 is cached: minting one is refused.
    h.github.faults(|f| {
        f.forbid
            .push(("/app/installations/42/access_tokens".into(), String::new()))
    });
    let (status, some) = get(&h, &admin, "/repositories?provider=github").await;
    assert_eq!(status, 200, "{some}");
    assert_eq!(repos(&some), ["acme/infra", "third/site"]);
    assert_eq!(some["truncated"], false);
    h.github.faults(|f| f.forbid.clear());
    let (status, all) = get(&h, &admin, "/repositories?provider=github").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(repos(&all), ["acme/infra", "other/tools", "third/site"]);

    // Tokens are cached now: break the listing itself. Every installation
    // lists through the same path, so all fail; the answer is an error,
    // never a partial list.
    h.github
        .faults(|f| f.broken.push("/installation/repositories".into()));
    let (status, answer) = get(&h, &admin, "/repositories?provider=github").await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (502, &"forge_error".into()),
        "{answer}"
    );
    h.github.faults(|f| f.broken.clear());
    let (status, again) = get(&h, &admin, "/repositories?provider=github").await;
    assert_eq!((status, repos(&again)), (200, repos(&all)));
    h.stop().await;
}

async fn gitlab(db: TestDb) {
    const PATH: &str = "group/sub/infra";
    let h = Harness::start(&db).await;
    let admin = h.app.create_token("admin").await;
    let project = h.gitlab_project(PATH);
    h.gitlab.git.create_branch(PATH, "trunk", "main");
    let trunk = h.gitlab.git.commit(PATH, "trunk", &trunk_files(), "trunk");
    h.gitlab.set_default_branch(project, "trunk");
    default_branch_is_read(&h, &admin, "gitlab", PATH, &trunk).await;

    // An empty project has no default branch: said, not guessed.
    h.gitlab.create_empty_project("group/empty");
    let (status, list) = get(&h, &admin, "/repositories?provider=gitlab").await;
    assert_eq!(status, 200, "{list}");
    let empty = list["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == "group/empty")
        .unwrap();
    assert!(empty["default_branch"].is_null(), "{list}");
    let (status, answer) = get(
        &h,
        &admin,
        "/repositories/tree?provider=gitlab&repo=group/empty",
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &"not_found".into())
    );
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("default branch") && message.contains("empty"),
        "{message}"
    );
    h.stop().await;
}

both_backends!(github, github_installations, gitlab);
