//! The dashboard's "start a project" form (folder view of `/repositories`
//! → `POST /repositories/start`) beyond what `repositories.rs` checks:
//! `auto_merge`, `sync_branch` and `commit_via` (left alone, the API's
//! defaults), their bad values refused with the form again and nothing
//! stored, and a GitLab project through a stored integration (the form's
//! hidden `integration_id`) that then syncs, on both backends.

mod support;

use graft::store::commit_via::CommitVia;
use graft::store::integrations::NewIntegration;
use graft::store::now_ms;
use graft::store::projects::SyncStatus;
use support::TestDb;
use support::fake_gitlab::BOT_USERNAME;
use support::harness::Harness;
use support::sync::{input, put};
use support::ui::{get_page, input_value, login, post_form, post_form_actions};

/// Posts the browse page's form to start a project, with a session cookie.
async fn post_start(h: &Harness, cookie: &str, fields: &[(&str, String)]) -> (u16, String, String) {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post_form(&h.app, "/repositories/start", cookie, &pairs).await
}

/// The form of a folder view: its CSRF token and its HTML.
async fn folder_form(h: &Harness, cookie: &str, query: &str) -> (String, String) {
    let (status, html) = get_page(&h.app, &format!("/repositories?{query}"), cookie).await;
    assert_eq!(status, 200, "{html}");
    assert!(post_form_actions(&html).contains(&"/repositories/start".to_string()));
    let at = html.find("action=\"/repositories/start\"").unwrap();
    let html = html[at..].to_string();
    (input_value(&html, "csrf").unwrap(), html)
}

async fn github(db: TestDb) {
    let h = Harness::start(&db).await;
    let admin = h.app.create_token("admin").await;
    h.github_repo("acme/infra", 41);
    let cookie = login(&h.app, &admin).await;
    let (csrf, html) = folder_form(&h, &cookie, "provider=github&repo=acme/infra&ref=main").await;
    // The defaults as the API has them.
    assert!(html.contains("name=\"auto_merge\""), "{html}");
    assert!(
        !html.contains("name=\"auto_merge\" value=\"true\" checked"),
        "{html}"
    );
    assert_eq!(input_value(&html, "sync_branch").as_deref(), Some(""));
    assert!(html.contains("<option value=\"git\" selected"), "{html}");
    assert!(html.contains("<option value=\"api\">"), "{html}");

    let base = |path: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("csrf", csrf.clone()),
            ("provider", "github".into()),
            ("repo", "acme/infra".into()),
            ("branch", "main".into()),
            ("base_path", path.into()),
            ("kind", "iac".into()),
            ("mode", "pull_request".into()),
        ]
    };

    // Bad values: the API's message, the form again, nothing stored.
    for (field, value, named) in [
        ("commit_via", "svn", "commit_via"),
        ("sync_branch", "main", "`sync_branch` must differ"),
        ("sync_branch", "a..b", "`sync_branch`"),
    ] {
        let mut fields = base("bad");
        fields.push((field, value.into()));
        let (status, _, html) = post_start(&h, &cookie, &fields).await;
        assert_eq!(status, 422, "{field}={value}: {html}");
        assert!(html.contains(named), "{field}={value}: {html}");
        assert!(post_form_actions(&html).contains(&"/repositories/start".to_string()));
    }
    assert!(h.app.store.list_projects().await.unwrap().is_empty());

    // Chosen: each reaches the project.
    let mut fields = base("infra/chosen");
    fields.extend([
        ("auto_merge", "true".into()),
        ("sync_branch", "bots/infra".into()),
        ("commit_via", "api".into()),
    ]);
    let (status, location, html) = post_start(&h, &cookie, &fields).await;
    assert_eq!(status, 303, "{html}");
    let chosen = h.app.store.list_projects().await.unwrap().remove(0);
    assert_eq!(location, format!("/projects/{}", chosen.id));
    assert_eq!(
        (
            chosen.auto_merge,
            chosen.sync_branch.as_str(),
            chosen.commit_via
        ),
        (true, "bots/infra", CommitVia::Api)
    );

    // Left alone (the form's own values): the defaults.
    let mut fields = base("infra/plain");
    fields.extend([("sync_branch", " ".into()), ("commit_via", "git".into())]);
    let (status, _, html) = post_start(&h, &cookie, &fields).await;
    assert_eq!(status, 303, "{html}");
    let plain = h
        .app
        .store
        .list_projects()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.base_path == "infra/plain")
        .unwrap();
    assert_eq!(
        (plain.auto_merge, plain.commit_via),
        (false, CommitVia::Git)
    );
    assert!(
        plain.sync_branch.starts_with("graft/"),
        "{}",
        plain.sync_branch
    );
    h.stop().await;
}

/// Browsing through a stored GitLab integration keeps it in the form (a
/// hidden field); the project created is on that integration and syncs.
async fn gitlab_through_an_integration(db: TestDb) {
    const PATH: &str = "group/sub/infra";
    let h = Harness::start(&db).await;
    let admin = h.app.create_token("admin").await;
    let project = h.gitlab_project(PATH);
    let token = "glpat-stored-integration";
    h.gitlab.add_token(token, BOT_USERNAME, &["api"]);
    let sealed = support::test_keyring().seal(token).unwrap();
    let integration = h
        .app
        .store
        .create_integration(
            &NewIntegration {
                provider: "gitlab",
                name: "self-managed",
                base_url: &h.gitlab.url,
                token_sealed: Some(&sealed),
                webhook_secret_sealed: None,
            },
            now_ms(),
        )
        .await
        .unwrap();
    let cookie = login(&h.app, &admin).await;
    let query = format!("provider=gitlab&integration_id={integration}&repo={PATH}&ref=main");
    let (csrf, html) = folder_form(&h, &cookie, &query).await;
    let id = integration.to_string();
    assert_eq!(
        input_value(&html, "integration_id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(input_value(&html, "provider").as_deref(), Some("gitlab"));

    let fields = |integration: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("provider", "gitlab".to_string()),
            ("repo", PATH.to_string()),
            ("integration_id", integration.to_string()),
            ("branch", "main".to_string()),
            ("base_path", "infra".to_string()),
            ("kind", "iac".to_string()),
            ("mode", "pull_request".to_string()),
            ("auto_sync", "true".to_string()),
        ]
    };
    // An integration that does not exist: named, nothing stored.
    let (status, _, html) = post_start(&h, &cookie, &fields("999")).await;
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("`integration_id`: integration 999 does not exist"),
        "{html}"
    );
    assert!(h.app.store.list_projects().await.unwrap().is_empty());

    let (status, location, html) = post_start(&h, &cookie, &fields(&id)).await;
    assert_eq!(status, 303, "{html}");
    let p = h.app.store.list_projects().await.unwrap().remove(0);
    assert_eq!(location, format!("/projects/{}", p.id));
    assert_eq!(
        (p.provider.as_str(), p.integration_id, p.repo.as_str()),
        ("gitlab", Some(integration), PATH)
    );

    put(&h, p.id, &[input("main.tf", "# main\n")]).await;
    h.settle().await;
    let synced = h.app.store.require_project(p.id).await.unwrap();
    assert_eq!(
        synced.sync_status,
        SyncStatus::Success,
        "{:?}",
        synced.sync_error
    );
    let mrs = h.gitlab.merge_requests(project);
    assert_eq!(mrs.len(), 1, "{mrs:?}");
    assert_eq!(mrs[0].source, synced.sync_branch);
    assert_eq!(
        h.gitlab
            .git
            .file(PATH, &mrs[0].sha, "infra/main.tf")
            .as_deref(),
        Some(b"# main\n".as_slice())
    );
    h.stop().await;
}

both_backends!(github, gitlab_through_an_integration);
