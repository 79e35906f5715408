//! `/api/v1/repositories`: listing what graft reaches (GitHub: every
//! installation's repositories; GitLab: projects with at least Developer
//! access), browsing a tree at a ref and path, reading one file, on both
//! fakes; bad input refused with a message that says what to fix, and no
//! token in any answer.

mod support;

use graft::git::read::blob_id;
use graft::store::now_ms;
use graft::store::tokens::{TokenAccess, TokenScope};
use serde_json::Value;
use support::TestDb;
use support::harness::Harness;
use support::ui::{client, form, get_page, input_value, login, post_form, post_form_actions};

const BIG: usize = 1024 * 1024 + 1;

async fn get(h: &Harness, token: &str, path_and_query: &str) -> (u16, Value) {
    let (status, text) = h.api_get(token, path_and_query).await;
    for secret in ["ghs_", "glpat-", "Bearer", "PRIVATE-TOKEN"] {
        assert!(!text.contains(secret), "{path_and_query}: {text}");
    }
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn names(list: &Value, field: &str, key: &str) -> Vec<String> {
    list[field]
        .as_array()
        .unwrap_or_else(|| panic!("no `{field}` in {list}"))
        .iter()
        .map(|e| e[key].as_str().unwrap().to_string())
        .collect()
}

fn files() -> Vec<(&'static str, Option<Vec<u8>>)> {
    vec![
        ("infra/main.tf", Some(b"# main\n".to_vec())),
        ("infra/modules/vpc/vpc.tf", Some(b"# vpc\n".to_vec())),
        ("infra/bin.dat", Some(vec![0, 159, 146, 150])),
        ("infra/big.tf", Some(vec![b'#'; BIG])),
    ]
}

fn as_files<'a>(
    seed: &'a [(&'static str, Option<Vec<u8>>)],
) -> Vec<(&'static str, Option<&'a [u8]>)> {
    seed.iter().map(|(p, c)| (*p, c.as_deref())).collect()
}

/// The tree and file routes on `repo` of `provider`, whose `main` is at
/// `head` and holds [`files`]; `sizes`: whether the forge's tree says them.
async fn browse(h: &Harness, token: &str, provider: &str, repo: &str, head: &str, sizes: bool) {
    let at = |rest: &str| format!("provider={provider}&repo={repo}&ref=main{rest}");

    let (status, root) = get(h, token, &format!("/repositories/tree?{}", at(""))).await;
    assert_eq!(status, 200, "{root}");
    assert_eq!(root["commit_sha"], head);
    assert_eq!(root["truncated"], false);
    let mut top = names(&root, "entries", "path");
    top.sort();
    assert_eq!(top, ["README.md", "infra"]);
    let folder = root["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "infra")
        .unwrap();
    assert_eq!(folder["type"], "tree");
    assert!(folder["blob_sha"].is_null() && folder["size"].is_null());

    // One folder, paths from the root; a trailing slash is the same folder.
    for path in ["infra", "infra/"] {
        let (status, tree) = get(
            h,
            token,
            &format!("/repositories/tree?{}", at(&format!("&path={path}"))),
        )
        .await;
        assert_eq!(status, 200, "{tree}");
        let mut listed = names(&tree, "entries", "path");
        listed.sort();
        assert_eq!(
            listed,
            [
                "infra/big.tf",
                "infra/bin.dat",
                "infra/main.tf",
                "infra/modules"
            ]
        );
        let main = tree["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == "infra/main.tf")
            .unwrap();
        assert_eq!(main["type"], "blob");
        assert_eq!(main["blob_sha"], blob_id(b"# main\n").to_string());
        if sizes {
            assert_eq!(main["size"], 7);
        } else {
            assert!(main["size"].is_null());
        }
    }

    // Recursive: every level below, trees included.
    let (status, deep) = get(
        h,
        token,
        &format!(
            "/repositories/tree?{}",
            at("&path=infra/modules&recursive=true")
        ),
    )
    .await;
    assert_eq!(status, 200, "{deep}");
    let mut listed = names(&deep, "entries", "path");
    listed.sort();
    assert_eq!(listed, ["infra/modules/vpc", "infra/modules/vpc/vpc.tf"]);

    // The tree at a commit is the tree of that commit.
    let (status, pinned) = get(
        h,
        token,
        &format!("/repositories/tree?provider={provider}&repo={repo}&ref={head}"),
    )
    .await;
    assert_eq!((status, &pinned["commit_sha"]), (200, &root["commit_sha"]));

    // A text file, a binary one.
    let (status, file) = get(
        h,
        token,
        &format!("/repositories/file?{}", at("&path=infra/main.tf")),
    )
    .await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["path"], "infra/main.tf");
    assert_eq!(file["content"], "# main\n");
    assert_eq!(file["blob_sha"], blob_id(b"# main\n").to_string());
    let (status, binary) = get(
        h,
        token,
        &format!("/repositories/file?{}", at("&path=infra/bin.dat")),
    )
    .await;
    assert_eq!(status, 200, "{binary}");
    assert_eq!(binary["content"]["base64"], "AJ+Slg==");

    // Refused with what to do.
    let refusals = [
        ("file", "&path=infra/big.tf", 413, "too_large"),
        ("file", "&path=infra/modules", 422, "not_a_file"),
        ("file", "&path=infra/none.tf", 404, "not_found"),
        ("tree", "&path=nowhere", 404, "not_found"),
    ];
    for (route, rest, code, name) in refusals {
        let (status, answer) = get(h, token, &format!("/repositories/{route}?{}", at(rest))).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (code, Some(name)),
            "{rest}: {answer}"
        );
    }
    let (status, answer) = get(
        h,
        token,
        &format!("/repositories/file?provider={provider}&repo={repo}&ref=nope&path=infra/main.tf"),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ref `nope`"),
        "{answer}"
    );
}

/// Bad input, the same on both providers: 400 naming the parameter.
async fn refusals(h: &Harness, token: &str, provider: &str, repo: &str) {
    let cases = [
        ("/repositories", "provider"),
        ("/repositories?provider=bitbucket", "`github` or `gitlab`"),
        ("/repositories?provider=github&color=blue", "`color`"),
        (
            "/repositories?provider=github&integration_id=1",
            "integration_id",
        ),
        (
            "/repositories?provider=gitlab&integration_id=x",
            "integration_id",
        ),
        (
            &format!("/repositories/tree?provider={provider}&ref=main"),
            "`repo`",
        ),
        (
            &format!("/repositories/tree?provider={provider}&repo={repo}&ref="),
            "`ref`",
        ),
        (
            &format!("/repositories/tree?provider={provider}&repo={repo}&ref=main&path=../x"),
            "`path`",
        ),
        (
            &format!("/repositories/tree?provider={provider}&repo={repo}&ref=main&path=a/../../x"),
            "`path`",
        ),
        (
            &format!(
                "/repositories/file?provider={provider}&repo={repo}&ref=main&path=/etc/passwd"
            ),
            "`path`",
        ),
        (
            &format!("/repositories/file?provider={provider}&repo={repo}&ref=main"),
            "`path`",
        ),
        (
            &format!("/repositories/tree?provider={provider}&repo={repo}&ref=a..b"),
            "`ref`",
        ),
        (
            &format!("/repositories/tree?provider={provider}&repo={repo}&ref=main&recursive=maybe"),
            "recursive",
        ),
        // Only `true` or `false`: an empty value or a `1` is not read as either.
        (
            &format!("/repositories/tree?provider={provider}&repo={repo}&ref=main&recursive="),
            "`recursive` must be `true` or `false`, not ``",
        ),
        (
            &format!("/repositories/tree?provider={provider}&repo={repo}&ref=main&recursive=1"),
            "`recursive` must be `true` or `false`, not `1`",
        ),
        // A parameter given twice is refused, not read as its last value.
        (
            "/repositories?provider=github&provider=gitlab",
            "`provider` is given more than once",
        ),
        (
            &format!("/repositories/tree?provider={provider}&repo={repo}&ref=main&ref=dev"),
            "`ref` is given more than once",
        ),
        (
            &format!(
                "/repositories/tree?provider={provider}&repo={repo}&ref=main&recursive=false\
                 &recursive=true"
            ),
            "`recursive` is given more than once",
        ),
        (
            &format!(
                "/repositories/file?provider={provider}&repo={repo}&ref=main&path=a.tf&path=b.tf"
            ),
            "`path` is given more than once",
        ),
        (
            &format!("/repositories/tree?provider={provider}&repo=../x&ref=main"),
            "`repo`",
        ),
    ];
    for (query, named) in cases {
        let (status, answer) = get(h, token, query).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_query", "{query}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{query}: {message}");
    }
}

/// A generator token of a project on `repo`.
async fn generator_token(h: &Harness, repo: &str) -> String {
    let mode = graft::store::projects::Mode::PullRequest;
    let project = support::sync::github_project(h, repo, mode, "infra").await;
    let access = TokenAccess::new(TokenScope::Generator, &[project.id]).unwrap();
    h.app
        .store
        .create_scoped_token("tf-gen", &access, now_ms())
        .await
        .unwrap()
        .1
}

/// The dashboard's browse page (bearer auth, as scripts sign in).
async fn page(h: &Harness, token: &str, query: &str) -> (u16, String) {
    let response = h
        .app
        .http
        .get(h.app.url(&format!("/repositories{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn dashboard(h: &Harness, admin: &str) {
    let (status, html) = page(h, admin, "").await;
    assert_eq!(status, 200);
    assert!(html.contains("/repositories?provider=github"), "{html}");
    let (status, html) = page(h, admin, "?provider=github").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("/repositories?provider=github&amp;repo=acme%2Finfra&amp;ref=main"),
        "{html}"
    );
    let tree = "?provider=github&repo=acme/infra&ref=main&path=infra";
    let (status, html) = page(h, admin, tree).await;
    assert_eq!(status, 200);
    assert!(html.contains("path=infra%2Fmodules"), "{html}");
    assert!(html.contains("file=infra%2Fmain.tf"), "{html}");
    assert_eq!(input_value(&html, "base_path").as_deref(), Some("infra"));
    assert_eq!(input_value(&html, "branch").as_deref(), Some("main"));
    let file = "?provider=github&repo=acme/infra&ref=main&file=infra/main.tf";
    let (status, html) = page(h, admin, file).await;
    assert_eq!(status, 200);
    assert!(html.contains("# main"), "{html}");
    let bad = "?provider=github&repo=acme/infra&ref=main&path=../x";
    let (status, html) = page(h, admin, bad).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("`path`"), "{html}");
    let (status, _) = page(h, admin, "?provider=github&repo=acme/secret&ref=main").await;
    assert_eq!(status, 404);
}

/// Posts the browse page's form to start a project, with a session cookie.
async fn post_start(h: &Harness, cookie: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
    post_form(&h.app, "/repositories/start", cookie, fields).await
}

/// The folder view's form creates the project the API would, with its
/// audit event; bad input and forged or missing CSRF tokens create nothing.
async fn start_form(h: &Harness, admin: &str, head: &str) {
    let cookie = login(&h.app, admin).await;
    let folder = "/repositories?provider=github&repo=acme/infra&ref=main&path=infra/modules";
    let (status, html) = get_page(&h.app, folder, &cookie).await;
    assert_eq!(status, 200, "{html}");
    assert!(post_form_actions(&html).contains(&"/repositories/start".to_string()));
    let at = html.find("action=\"/repositories/start\"").unwrap();
    let csrf = input_value(&html[at..], "csrf").unwrap();
    assert!(!csrf.is_empty());
    assert_eq!(input_value(&html, "provider").as_deref(), Some("github"));
    assert_eq!(input_value(&html, "repo").as_deref(), Some("acme/infra"));
    assert_eq!(
        input_value(&html, "base_path").as_deref(),
        Some("infra/modules")
    );
    // A commit sha is no branch: that field starts empty.
    let at_sha = format!("/repositories?provider=github&repo=acme/infra&ref={head}&path=infra");
    let (status, html) = get_page(&h.app, &at_sha, &cookie).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(input_value(&html, "branch").as_deref(), Some(""));
    let fields = |csrf: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![
            ("csrf", csrf),
            ("provider", "github"),
            ("repo", "acme/infra"),
            ("branch", "main"),
            ("base_path", "infra/modules"),
            ("kind", "configuration"),
            ("mode", "direct"),
            ("auto_sync", "true"),
        ]
    };
    let csrf: &'static str = Box::leak(csrf.into_boxed_str());

    // No token, a forged one, or a bearer caller (no session): refused.
    for bad in ["", "forged"] {
        let (status, _, html) = post_start(h, &cookie, &fields(bad)).await;
        assert_eq!(status, 403, "{html}");
    }
    let response = client()
        .post(h.app.url("/repositories/start"))
        .bearer_auth(admin)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&fields(csrf)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let html = response.text().await.unwrap();
    assert!(html.contains("POST /api/v1/projects"), "{html}");
    // Bad input: the shared checks' message, the form again, nothing stored.
    for (field, value, named) in [
        ("base_path", "../x", "base_path"),
        ("kind", "helm", "`kind` must be `iac` or `configuration`"),
        ("branch", "a..b", "not a valid git branch name"),
        (
            "integration_id",
            "seven",
            "`integration_id` must be a whole number",
        ),
    ] {
        let mut sent = fields(csrf);
        sent.retain(|(k, _)| *k != field);
        sent.push((field, value));
        let (status, _, html) = post_start(h, &cookie, &sent).await;
        assert_eq!(status, 422, "{field}: {html}");
        assert!(html.contains(&maud_escape(named)), "{field}: {html}");
        assert!(post_form_actions(&html).contains(&"/repositories/start".to_string()));
    }
    assert!(h.app.store.list_projects().await.unwrap().is_empty());

    let (status, location, html) = post_start(h, &cookie, &fields(csrf)).await;
    assert_eq!(status, 303, "{html}");
    let projects = h.app.store.list_projects().await.unwrap();
    assert_eq!(projects.len(), 1);
    let p = &projects[0];
    assert_eq!(location, format!("/projects/{}", p.id));
    assert_eq!(
        (
            p.provider.as_str(),
            p.repo.as_str(),
            p.branch.as_str(),
            p.base_path.as_str()
        ),
        ("github", "acme/infra", "main", "infra/modules")
    );
    assert_eq!(
        (p.kind, p.mode, p.auto_sync, p.auto_merge),
        (
            graft::store::projects::Kind::Configuration,
            graft::store::projects::Mode::Direct,
            true,
            false
        )
    );
    let events = h.app.store.list_events(Some(p.id), 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind.as_str(), events[0].actor.as_str()),
        ("project.created", "token:admin")
    );
    // The same project again: the API's conflict, shown with the form.
    let (status, _, html) = post_start(h, &cookie, &fields(csrf)).await;
    assert_eq!(status, 409, "{html}");
    assert!(post_form_actions(&html).contains(&"/repositories/start".to_string()));
    assert_eq!(h.app.store.list_projects().await.unwrap().len(), 1);
}

fn maud_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn github(db: TestDb) {
    let h = Harness::start(&db).await;
    let admin = h.app.create_token("admin").await;
    // Two installations, pages of two: four pages in all.
    h.github_repo("acme/infra", 41);
    h.github_repo("acme/app", 41);
    h.github_repo("acme/web", 41);
    h.github_repo("other/tools", 42);
    h.github.set_private("acme/web", false);
    h.github.set_max_per_page(2);
    let seed = files();
    let head = h.push_to_github_as_human("acme/infra", "main", &as_files(&seed), "alice");

    let (status, list) = get(&h, &admin, "/repositories?provider=github").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        names(&list, "repositories", "repo"),
        ["acme/app", "acme/infra", "acme/web", "other/tools"]
    );
    assert_eq!(list["truncated"], false);
    let web = &list["repositories"][2];
    assert_eq!(
        (&web["provider"], &web["default_branch"], &web["private"]),
        (&"github".into(), &"main".into(), &false.into())
    );
    assert_eq!(list["repositories"][0]["private"], true);
    let pages = h
        .github
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/installation/repositories"))
        .count();
    assert_eq!(pages, 3, "two pages of installation 41, one of 42");

    browse(&h, &admin, "github", "acme/infra", &head, true).await;
    refusals(&h, &admin, "github", "acme/infra").await;

    // A repository the app is not installed on (or that does not exist).
    let (status, answer) = get(
        &h,
        &admin,
        "/repositories/tree?provider=github&repo=acme/secret&ref=main",
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &"not_found".into()),
        "{answer}"
    );

    dashboard(&h, &admin).await;
    start_form(&h, &admin, &head).await;

    // GitHub cuts big recursive trees; graft says so.
    h.github.set_max_tree_entries(2);
    let (status, cut) = get(
        &h,
        &admin,
        "/repositories/tree?provider=github&repo=acme/infra&ref=main&recursive=true",
    )
    .await;
    assert_eq!(status, 200, "{cut}");
    assert_eq!(cut["truncated"], true);
    assert_eq!(cut["entries"].as_array().unwrap().len(), 2);

    // Generators browse nothing.
    let generator = generator_token(&h, "acme/infra").await;
    for route in [
        "/repositories?provider=github",
        "/repositories/tree?provider=github&repo=acme/infra&ref=main",
        "/repositories/file?provider=github&repo=acme/infra&ref=main&path=infra/main.tf",
    ] {
        let (status, answer) = get(&h, &generator, route).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (403, &"forbidden".into()),
            "{route}"
        );
    }
    let (status, _) = page(&h, &generator, "?provider=github").await;
    assert_eq!(status, 403);
    // Nor may a generator start a project through the dashboard's form.
    let before = h.app.store.list_projects().await.unwrap().len();
    let response = client()
        .post(h.app.url("/repositories/start"))
        .bearer_auth(&generator)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("provider", "github"),
            ("repo", "acme/infra"),
            ("branch", "main"),
            ("base_path", "other"),
            ("kind", "iac"),
            ("mode", "direct"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(h.app.store.list_projects().await.unwrap().len(), before);
    assert!(
        h.github.violations().is_empty(),
        "{:?}",
        h.github.violations()
    );
    h.stop().await;
}

async fn gitlab(db: TestDb) {
    let h = Harness::start(&db).await;
    let admin = h.app.create_token("admin").await;
    h.gitlab_project("group/sub/infra");
    h.gitlab_project("group/app");
    let public = h.gitlab_project("group/site");
    h.gitlab.set_visibility(public, "public");
    // Reporter only: graft could not push there, so it is not listed.
    let reporter = h.gitlab_project("group/docs");
    h.gitlab
        .set_access_level(reporter, support::fake_gitlab::BOT_USERNAME, 20);
    h.gitlab.set_max_per_page(2);
    let seed = files();
    let head = h.push_to_gitlab_as_human("group/sub/infra", "main", &as_files(&seed), "alice");

    let (status, list) = get(&h, &admin, "/repositories?provider=gitlab").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        names(&list, "repositories", "repo"),
        ["group/app", "group/site", "group/sub/infra"]
    );
    let site = &list["repositories"][1];
    assert_eq!(
        (&site["provider"], &site["private"]),
        (&"gitlab".into(), &false.into())
    );
    assert_eq!(list["repositories"][0]["private"], true);
    let listed = h
        .gitlab
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v4/projects")
        .count();
    assert_eq!(listed, 2, "two pages");

    browse(&h, &admin, "gitlab", "group/sub/infra", &head, false).await;
    refusals(&h, &admin, "gitlab", "group/sub/infra").await;

    // The file's size is asked before its content is read.
    let big_reads = h
        .gitlab
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/repository/files/infra%2Fbig.tf"))
        .map(|r| r.method.clone())
        .collect::<Vec<_>>();
    assert_eq!(big_reads, ["HEAD"]);

    let (status, answer) = get(
        &h,
        &admin,
        "/repositories/tree?provider=gitlab&repo=group/none&ref=main",
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &"not_found".into()),
        "{answer}"
    );
    let (status, answer) = get(
        &h,
        &admin,
        "/repositories?provider=gitlab&integration_id=99",
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &"not_found".into()),
        "{answer}"
    );
    assert!(
        h.gitlab.violations().is_empty(),
        "{:?}",
        h.gitlab.violations()
    );
    h.stop().await;
}

both_backends!(github, gitlab);
