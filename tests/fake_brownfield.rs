//! The fake forges' brownfield and commit-mode APIs, checked on their own
//! before graft relies on them: GitHub's installation repositories, git
//! trees, contents, blobs, commits with their verification, git refs and
//! `createCommitOnBranch`; GitLab's project list, repository tree, files
//! and commits API; and the signed-commits rules of both, as a real
//! `git push` meets them. Every request also passes the fakes'
//! conformance checks against GitHub's OpenAPI description and GraphQL
//! schema and GitLab's documented routes.

mod support;

use std::time::Duration;

use base64::Engine;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::eventually;
use support::fake_github::{BOT_LOGIN, FakeGithub};
use support::fake_gitlab::{self, BOT_TOKEN, FakeGitlab};
use support::git_host::{git, git_client};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 1;

const COMMIT_MUTATION: &str = "mutation Commit($input: CreateCommitOnBranchInput!) { \
     createCommitOnBranch(input: $input) { commit { oid url } } }";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// GitHub's `content`: base64 in lines.
fn unb64(text: &str) -> Vec<u8> {
    let joined: String = text.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .unwrap()
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(", ").find_map(|part| {
        let (url, rel) = part.split_once("; ")?;
        (rel == "rel=\"next\"").then(|| url.trim_matches(['<', '>']).to_string())
    })
}

/// A client of one fake's REST API: its base URL and the header that
/// carries the token.
struct Api {
    base: String,
    auth: (&'static str, String),
    http: reqwest::Client,
}

impl Api {
    fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        self.http
            .request(method.parse().unwrap(), url)
            .header(self.auth.0, &self.auth.1)
    }

    async fn get(&self, path: &str) -> (u16, HeaderMap, Value) {
        let response = self.request("GET", path).send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self.request(method, path).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A fake GitHub with `acme/infra` (README on `main`) installed in
/// installation 1, and a token of it.
struct Github {
    fake: FakeGithub,
    token: String,
    api: Api,
}

impl std::ops::Deref for Github {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Github {
    async fn start() -> Github {
        let fake = FakeGithub::start().await;
        fake.create_repo(REPO, INSTALLATION);
        Github::on(fake)
    }

    /// A client of `fake` holding a token of installation 1.
    fn on(fake: FakeGithub) -> Github {
        let token = fake.installation_token(INSTALLATION);
        let api = Api {
            base: fake.api_url.clone(),
            auth: ("Authorization", format!("Bearer {token}")),
            http: reqwest::Client::new(),
        };
        Github { fake, token, api }
    }

    async fn graphql(&self, query: &str, variables: Value) -> (u16, HeaderMap, Value) {
        let response = self
            .http
            .post(format!("{}/graphql", self.fake.root))
            .bearer_auth(&self.token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, headers, response.json().await.unwrap())
    }

    fn head(&self, branch: &str) -> Option<String> {
        self.fake.git.head(REPO, branch)
    }

    /// Variables for `createCommitOnBranch` on `branch` of `acme/infra`.
    fn commit_input(&self, branch: &str, expected: &str, changes: Value) -> Value {
        json!({"input": {
            "branch": {"repositoryNameWithOwner": REPO, "branchName": branch},
            "message": {"headline": "graft: sync infra", "body": "2 files"},
            "expectedHeadOid": expected,
            "fileChanges": changes,
        }})
    }

    fn assert_conformant(&self) {
        assert_eq!(self.fake.violations(), Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installation_repositories_come_in_linked_pages() {
    let fake = FakeGithub::start().await;
    for repo in ["acme/a", "acme/b", "acme/c"] {
        fake.create_repo(repo, INSTALLATION);
    }
    fake.create_repo("other/d", 2);
    fake.set_private("acme/b", false);
    let gh = Github::on(fake);

    let (status, headers, first) = gh.get("/installation/repositories?per_page=2").await;
    assert_eq!(status, 200);
    assert_eq!(first["total_count"], 3);
    assert_eq!(first["repositories"].as_array().unwrap().len(), 2);
    let next = next_link(&headers).expect("a next page");
    assert!(next.contains("page=2"), "{next}");
    let (_, headers, second) = gh.get(&next).await;
    assert!(
        next_link(&headers).is_none(),
        "the last page links no further"
    );
    let repos: Vec<Value> = [first, second]
        .iter()
        .flat_map(|page| page["repositories"].as_array().unwrap().clone())
        .collect();
    let names: Vec<&str> = repos
        .iter()
        .map(|r| r["full_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme/a", "acme/b", "acme/c"], "not other/d");
    assert!(repos.iter().all(|r| r["default_branch"] == "main"));
    let private: Vec<bool> = repos
        .iter()
        .map(|r| r["private"].as_bool().unwrap())
        .collect();
    assert_eq!(private, [true, false, true]);

    let anonymous = reqwest::get(format!("{}/installation/repositories", gh.fake.api_url))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    gh.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trees_contents_and_blobs_read_any_ref() {
    let gh = Github::start().await;
    let big = vec![b'x'; (1 << 20) + 1];
    gh.fake.git.commit(
        REPO,
        "main",
        &[
            (
                "infra/main.tf",
                Some(b"resource \"x\" \"y\" {}\n".as_slice()),
            ),
            ("infra/modules/vpc/vpc.tf", Some(b"# vpc\n".as_slice())),
            ("big.bin", Some(big.as_slice())),
        ],
        "seed",
    );
    gh.fake.git.create_branch(REPO, "feature/x", "main");

    let (status, _, tree) = gh.get("/repos/acme/infra/git/trees/main?recursive=1").await;
    assert_eq!(status, 200);
    assert_eq!(tree["truncated"], false);
    let entries = tree["tree"].as_array().unwrap();
    let kind_of = |path: &str| {
        entries
            .iter()
            .find(|e| e["path"] == path)
            .map(|e| e["type"].as_str().unwrap().to_string())
    };
    assert_eq!(kind_of("infra").as_deref(), Some("tree"));
    assert_eq!(kind_of("infra/modules/vpc/vpc.tf").as_deref(), Some("blob"));
    let main_tf = entries
        .iter()
        .find(|e| e["path"] == "infra/main.tf")
        .unwrap();
    assert_eq!(main_tf["size"], b"resource \"x\" \"y\" {}\n".len());
    assert_eq!(main_tf["mode"], "100644");
    assert!(entries.iter().find(|e| e["path"] == "infra").unwrap()["size"].is_null());

    // A branch with `/` in its name, sent as it is.
    let (status, _, on_branch) = gh
        .get("/repos/acme/infra/git/trees/feature/x?recursive=1")
        .await;
    assert_eq!(status, 200);
    assert_eq!(on_branch["sha"], tree["sha"]);
    let (_, _, top) = gh.get("/repos/acme/infra/git/trees/main").await;
    let top: Vec<&str> = top["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["README.md", "big.bin", "infra"]);
    gh.fake.set_max_tree_entries(2);
    let (_, _, cut) = gh.get("/repos/acme/infra/git/trees/main?recursive=1").await;
    assert_eq!(cut["truncated"], true);
    assert_eq!(cut["tree"].as_array().unwrap().len(), 2);
    let (status, _, missing) = gh.get("/repos/acme/infra/git/trees/nope").await;
    assert_eq!(
        (status, missing["message"].as_str()),
        (404, Some("Not Found"))
    );

    let (status, _, file) = gh
        .get("/repos/acme/infra/contents/infra/main.tf?ref=feature%2Fx")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (file["type"].as_str(), file["encoding"].as_str()),
        (Some("file"), Some("base64"))
    );
    assert_eq!(
        unb64(file["content"].as_str().unwrap()),
        b"resource \"x\" \"y\" {}\n"
    );
    assert_eq!(file["sha"], main_tf["sha"]);
    let (_, _, folder) = gh.get("/repos/acme/infra/contents/infra?ref=main").await;
    let listed: Vec<(&str, &str)> = folder
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("main.tf", "file"), ("modules", "dir")]);
    let (status, _, gone) = gh.get("/repos/acme/infra/contents/infra/nope.tf").await;
    assert_eq!((status, gone["message"].as_str()), (404, Some("Not Found")));
    let (status, _, no_ref) = gh.get("/repos/acme/infra/contents/infra?ref=nope").await;
    assert_eq!(
        (status, no_ref["message"].as_str()),
        (404, Some("No commit found for the ref nope"))
    );
    // Over 1 MB: only through the raw media type (or the blobs API).
    let (status, _, too_large) = gh.get("/repos/acme/infra/contents/big.bin").await;
    assert_eq!(
        (status, too_large["errors"][0]["code"].as_str()),
        (403, Some("too_large"))
    );
    let raw = gh
        .request("GET", "/repos/acme/infra/contents/big.bin")
        .header("Accept", "application/vnd.github.raw+json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.bytes().await.unwrap().len(), big.len());

    let sha = main_tf["sha"].as_str().unwrap();
    let (status, _, blob) = gh.get(&format!("/repos/acme/infra/git/blobs/{sha}")).await;
    assert_eq!((status, blob["encoding"].as_str()), (200, Some("base64")));
    assert_eq!(
        unb64(blob["content"].as_str().unwrap()),
        b"resource \"x\" \"y\" {}\n"
    );
    let missing = "0".repeat(40);
    let (status, _, _) = gh
        .get(&format!("/repos/acme/infra/git/blobs/{missing}"))
        .await;
    assert_eq!(status, 404);
    gh.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_commit_on_branch_writes_a_verified_commit_by_the_bot() {
    let gh = Github::start().await;
    gh.fake.git.commit(
        REPO,
        "main",
        &[("infra/old.tf", Some(b"old\n".as_slice()))],
        "seed",
    );
    let base = gh.head("main").unwrap();

    let (status, created) = gh
        .send(
            "POST",
            "/repos/acme/infra/git/refs",
            json!({"ref": "refs/heads/graft/infra", "sha": base}),
        )
        .await;
    assert_eq!(
        (status, created["object"]["sha"].as_str()),
        (201, Some(base.as_str()))
    );

    let changes = json!({"additions": [{"path": "infra/main.tf", "contents": b64(b"resource {}\n")}],
                         "deletions": [{"path": "infra/old.tf"}]});
    let (status, _, answer) = gh
        .graphql(
            COMMIT_MUTATION,
            gh.commit_input("graft/infra", &base, changes),
        )
        .await;
    assert_eq!(status, 200);
    let payload = &answer["data"]["createCommitOnBranch"];
    let oid = payload["commit"]["oid"]
        .as_str()
        .expect("a commit")
        .to_string();
    assert!(payload["commit"]["url"].as_str().unwrap().ends_with(&oid));
    assert!(
        payload.get("ref").is_none(),
        "only what was selected: {answer}"
    );
    assert_eq!(gh.head("graft/infra").as_deref(), Some(oid.as_str()));
    assert_eq!(gh.head("main").as_deref(), Some(base.as_str()));
    assert_eq!(
        gh.fake.git.file(REPO, &oid, "infra/main.tf").as_deref(),
        Some(b"resource {}\n".as_slice())
    );
    assert!(gh.fake.git.file(REPO, &oid, "infra/old.tf").is_none());
    assert!(gh.fake.commit_is_verified(REPO, &oid));
    assert!(!gh.fake.commit_is_verified(REPO, &base));

    let (status, _, commit) = gh.get(&format!("/repos/acme/infra/commits/{oid}")).await;
    assert_eq!(status, 200);
    assert_eq!(commit["commit"]["verification"]["verified"], true);
    assert_eq!(commit["commit"]["verification"]["reason"], "valid");
    assert_eq!(commit["author"]["login"], BOT_LOGIN);
    assert_eq!(
        commit["commit"]["author"]["email"],
        format!(
            "{}+{BOT_LOGIN}@users.noreply.github.com",
            support::fake_github::BOT_ID
        )
    );
    assert_eq!(commit["commit"]["committer"]["name"], "GitHub");
    assert_eq!(commit["commit"]["message"], "graft: sync infra\n\n2 files");
    assert_eq!(commit["parents"][0]["sha"], base.as_str());
    let mut files: Vec<(String, String)> = commit["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["filename"].as_str().unwrap().into(),
                f["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            ("infra/main.tf".to_string(), "added".to_string()),
            ("infra/old.tf".to_string(), "removed".to_string())
        ]
    );
    let (_, _, human) = gh.get(&format!("/repos/acme/infra/commits/{base}")).await;
    assert_eq!(human["commit"]["verification"]["verified"], false);
    assert_eq!(human["commit"]["verification"]["reason"], "unsigned");
    let (status, _, unknown) = gh.get("/repos/acme/infra/commits/nope").await;
    assert_eq!(
        (status, unknown["message"].as_str()),
        (422, Some("No commit found for SHA: nope"))
    );

    // The branch moved like any push: GitHub sends `push`.
    let fake = gh.fake.clone();
    let pushed = eventually("the push webhook", Duration::from_secs(10), || {
        let fake = fake.clone();
        let oid = oid.clone();
        async move {
            fake.webhooks()
                .into_iter()
                .find(|h| h.event == "push" && h.body["after"] == oid.as_str())
        }
    })
    .await;
    assert_eq!(pushed.body["ref"], "refs/heads/graft/infra");
    assert_eq!(pushed.body["pusher"]["name"], BOT_LOGIN);

    // Input written inline works as well as variables; `ref` when asked.
    let inline = format!(
        "mutation {{ createCommitOnBranch(input: {{branch: {{repositoryNameWithOwner: \"{REPO}\", \
         branchName: \"graft/infra\"}}, message: {{headline: \"inline\"}}, expectedHeadOid: \"{oid}\", \
         fileChanges: {{additions: [{{path: \"x.txt\", contents: \"{}\"}}]}}}}) {{ commit {{ oid }} ref {{ name }} }} }}",
        b64(b"x\n")
    );
    let (_, _, answer) = gh.graphql(&inline, Value::Null).await;
    assert_eq!(
        answer["data"]["createCommitOnBranch"]["ref"]["name"],
        "graft/infra"
    );
    gh.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_commit_on_branch_refuses_as_github_does() {
    let gh = Github::start().await;
    gh.fake.create_repo("other/theirs", 2);
    let head = gh.head("main").unwrap();
    let add =
        |path: &str, text: &[u8]| json!({"additions": [{"path": path, "contents": b64(text)}]});
    let error = |answer: &Value| {
        assert!(answer["data"]["createCommitOnBranch"].is_null(), "{answer}");
        (
            answer["errors"][0]["type"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            answer["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };

    let stale = "1".repeat(40);
    let (status, _, answer) = gh
        .graphql(
            COMMIT_MUTATION,
            gh.commit_input("main", &stale, add("a.tf", b"a")),
        )
        .await;
    assert_eq!(status, 200, "GraphQL errors come with HTTP 200");
    assert_eq!(
        error(&answer),
        (
            "STALE_DATA".to_string(),
            format!("Expected branch to point to \"{stale}\" but it did not.  Pull and try again.")
        )
    );
    let deletion = json!({"deletions": [{"path": "nope.tf"}]});
    let (_, _, answer) = gh
        .graphql(COMMIT_MUTATION, gh.commit_input("main", &head, deletion))
        .await;
    assert_eq!(
        error(&answer),
        (
            "UNPROCESSABLE".to_string(),
            format!(
                "A path was requested for deletion which does not exist as of commit oid `{head}`."
            )
        )
    );
    gh.fake.set_max_file_bytes(4);
    let (_, _, answer) = gh
        .graphql(
            COMMIT_MUTATION,
            gh.commit_input("main", &head, add("big.tf", b"12345")),
        )
        .await;
    let (kind, message) = error(&answer);
    assert_eq!(kind, "UNPROCESSABLE");
    assert!(
        message.contains("exceeds GitHub's file size limit"),
        "{message}"
    );
    let (_, _, answer) = gh
        .graphql(
            COMMIT_MUTATION,
            gh.commit_input("nope", &head, add("a.tf", b"a")),
        )
        .await;
    assert_eq!(error(&answer).0, "NOT_FOUND");
    let theirs = json!({"input": {
        "branch": {"repositoryNameWithOwner": "other/theirs", "branchName": "main"},
        "message": {"headline": "x"}, "expectedHeadOid": head}});
    let (_, _, answer) = gh.graphql(COMMIT_MUTATION, theirs).await;
    assert_eq!(
        error(&answer),
        (
            "NOT_FOUND".to_string(),
            "Could not resolve to a Repository with the name 'other/theirs'.".to_string()
        )
    );
    gh.fake.protect_branch(REPO, "main");
    let (_, _, answer) = gh
        .graphql(
            COMMIT_MUTATION,
            gh.commit_input("main", &head, add("a.tf", b"a")),
        )
        .await;
    assert_eq!(error(&answer).0, "UNPROCESSABLE");
    assert_eq!(
        gh.head("main").as_deref(),
        Some(head.as_str()),
        "nothing moved"
    );
    assert_eq!(gh.fake.git.log(REPO, "main").len(), 1);
    gh.assert_conformant();

    let anonymous = reqwest::Client::new()
        .post(format!("{}/graphql", gh.fake.root))
        .json(&json!({"query": COMMIT_MUTATION,
                      "variables": gh.commit_input("main", &head, add("a.tf", b"a"))}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // A field the schema does not have is a conformance violation.
    let typo = json!({"additions": [{"path": "a.tf", "content": b64(b"a")}]});
    let (_, _, answer) = gh
        .graphql(COMMIT_MUTATION, gh.commit_input("main", &head, typo))
        .await;
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("fake GitHub")
    );
    assert_eq!(gh.fake.violations().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_refs_create_move_and_delete_branches() {
    let gh = Github::start().await;
    let base = gh.head("main").unwrap();
    let first = gh
        .fake
        .git
        .commit(REPO, "main", &[("a.tf", Some(b"a".as_slice()))], "a");
    let create = json!({"ref": "refs/heads/graft/x", "sha": first});
    assert_eq!(
        gh.send("POST", "/repos/acme/infra/git/refs", create.clone())
            .await
            .0,
        201
    );
    let (status, again) = gh.send("POST", "/repos/acme/infra/git/refs", create).await;
    assert_eq!(
        (status, again["message"].as_str()),
        (422, Some("Reference already exists"))
    );
    let ghost = json!({"ref": "refs/heads/ghost", "sha": "2".repeat(40)});
    let (status, answer) = gh.send("POST", "/repos/acme/infra/git/refs", ghost).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (422, Some("Object does not exist"))
    );

    // Back to the base: not a fast forward unless forced.
    let path = "/repos/acme/infra/git/refs/heads/graft/x";
    let (status, answer) = gh.send("PATCH", path, json!({"sha": base})).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (422, Some("Update is not a fast forward"))
    );
    let (status, moved) = gh
        .send("PATCH", path, json!({"sha": base, "force": true}))
        .await;
    assert_eq!(
        (status, moved["ref"].as_str()),
        (200, Some("refs/heads/graft/x"))
    );
    assert_eq!(gh.head("graft/x").as_deref(), Some(base.as_str()));
    let (status, _) = gh.send("PATCH", path, json!({"sha": first})).await;
    assert_eq!(status, 200, "forward without force");
    let (status, answer) = gh
        .send(
            "PATCH",
            "/repos/acme/infra/git/refs/heads/nope",
            json!({"sha": base}),
        )
        .await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (422, Some("Reference does not exist"))
    );

    gh.fake.protect_branch(REPO, "main");
    let (status, answer) = gh
        .send(
            "PATCH",
            "/repos/acme/infra/git/refs/heads/main",
            json!({"sha": base, "force": true}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("Protected branch")
    );

    let deleted = gh.request("DELETE", path).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(gh.head("graft/x").is_none());
    let again = gh.request("DELETE", path).send().await.unwrap();
    assert_eq!(again.status(), 422);
    gh.assert_conformant();
}

/// Clones `url` into `dir/c` with `token`, commits `file` there and
/// returns the clone and the (unsigned) commit.
async fn unsigned_commit(
    token: &str,
    url: &str,
    dir: &std::path::Path,
    file: &str,
) -> (std::path::PathBuf, String) {
    let cloned = git_client(token, dir, &["clone", "--quiet", url, "c"]).await;
    assert!(
        cloned.status.success(),
        "{}",
        String::from_utf8_lossy(&cloned.stderr)
    );
    let clone = dir.join("c");
    std::fs::write(clone.join(file), "# unsigned\n").unwrap();
    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "--quiet", "-m", "unsigned"]);
    let sha = git(&clone, &["rev-parse", "HEAD"]);
    (clone, sha)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_commits_ruleset_refuses_an_unsigned_push_but_not_api_commits() {
    let gh = Github::start().await;
    gh.fake.require_signed_commits(REPO, "graft/*");
    let work = tempfile::tempdir().unwrap();
    let url = gh.fake.git.clone_url(REPO);
    let (clone, sha) = unsigned_commit(&gh.token, &url, work.path(), "a.tf").await;

    let pushed = git_client(
        &gh.token,
        &clone,
        &["push", "origin", "HEAD:refs/heads/graft/infra"],
    )
    .await;
    assert!(!pushed.status.success());
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    for expected in [
        "remote: error: GH013: Repository rule violations found for refs/heads/graft/infra.",
        "rules?ref=refs%2Fheads%2Fgraft%2Finfra",
        "remote: - Commits must have verified signatures.",
        "remote:   Found 1 violation:",
        &format!("remote:   {sha}"),
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
    assert!(gh.head("graft/infra").is_none(), "nothing was pushed");
    // Outside the rule's branches the same push goes through.
    let other = git_client(
        &gh.token,
        &clone,
        &["push", "--quiet", "origin", "HEAD:refs/heads/human"],
    )
    .await;
    assert!(
        other.status.success(),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );

    // What graft does instead: the branch at the base, then an API commit.
    let base = gh.head("main").unwrap();
    let (status, _) = gh
        .send(
            "POST",
            "/repos/acme/infra/git/refs",
            json!({"ref": "refs/heads/graft/infra", "sha": base}),
        )
        .await;
    assert_eq!(status, 201, "no new commit, nothing to sign");
    let changes = json!({"additions": [{"path": "a.tf", "contents": b64(b"# signed\n")}]});
    let (_, _, answer) = gh
        .graphql(
            COMMIT_MUTATION,
            gh.commit_input("graft/infra", &base, changes),
        )
        .await;
    let oid = answer["data"]["createCommitOnBranch"]["commit"]["oid"]
        .as_str()
        .expect("the API commit passes the rule")
        .to_string();
    assert!(gh.fake.commit_is_verified(REPO, &oid));
    // A REST move to an unsigned commit no branch holds is refused too.
    let deleted = gh
        .request("DELETE", "/repos/acme/infra/git/refs/heads/human")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, answer) = gh
        .send(
            "PATCH",
            "/repos/acme/infra/git/refs/heads/graft/infra",
            json!({"sha": sha, "force": true}),
        )
        .await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (
            422,
            Some("Repository rule violations found\n\nCommits must have verified signatures.\n\n")
        )
    );
    assert_eq!(gh.head("graft/infra").as_deref(), Some(oid.as_str()));
    gh.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_protection_requiring_signatures_answers_gh006() {
    let gh = Github::start().await;
    gh.fake.require_signed_commits_by_protection(REPO, "main");
    let work = tempfile::tempdir().unwrap();
    let url = gh.fake.git.clone_url(REPO);
    let (clone, _) = unsigned_commit(&gh.token, &url, work.path(), "a.tf").await;
    let head = gh.head("main");
    let pushed = git_client(
        &gh.token,
        &clone,
        &["push", "origin", "HEAD:refs/heads/main"],
    )
    .await;
    assert!(!pushed.status.success());
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    assert!(
        stderr
            .contains("remote: error: GH006: Protected branch update failed for refs/heads/main.")
            && stderr.contains("remote: error: Commits must have valid signatures."),
        "{stderr}"
    );
    assert_eq!(gh.head("main"), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_github_endpoints_take_faults_after_credentials() {
    let gh = Github::start().await;
    let head = gh.head("main").unwrap();
    gh.fake.faults(|f| {
        f.fail = 1;
        f.reset_in_secs = 60;
    });
    let anonymous = reqwest::get(format!(
        "{}/repos/acme/infra/git/trees/main",
        gh.fake.api_url
    ))
    .await
    .unwrap();
    assert_eq!(anonymous.status(), 401, "credentials first");
    assert_eq!(gh.get("/repos/acme/infra/git/trees/main").await.0, 502);
    assert_eq!(gh.get("/repos/acme/infra/git/trees/main").await.0, 200);

    gh.fake.faults(|f| f.rate_limit = 1);
    let changes = json!({"additions": [{"path": "a.tf", "contents": b64(b"a")}]});
    let (status, headers, answer) = gh
        .graphql(
            COMMIT_MUTATION,
            gh.commit_input("main", &head, changes.clone()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["errors"][0]["type"], "RATE_LIMITED");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert_eq!(headers["x-ratelimit-resource"], "graphql");
    assert_eq!(gh.head("main").as_deref(), Some(head.as_str()));
    let (_, _, answer) = gh
        .graphql(COMMIT_MUTATION, gh.commit_input("main", &head, changes))
        .await;
    assert!(answer["data"]["createCommitOnBranch"]["commit"]["oid"].is_string());

    gh.fake
        .faults(|f| f.forbid.push(("/git/refs".into(), "contents=write".into())));
    let forbidden = gh
        .request("POST", "/repos/acme/infra/git/refs")
        .json(&json!({"ref": "refs/heads/x", "sha": head}))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(
        forbidden.headers()["x-accepted-github-permissions"],
        "contents=write"
    );
    gh.assert_conformant();
}

/// A fake GitLab with `acme/infra` (README on `main`); graft's bot is
/// a Maintainer.
struct Gitlab {
    fake: FakeGitlab,
    project: i64,
    api: Api,
}

impl std::ops::Deref for Gitlab {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Gitlab {
    async fn start() -> Gitlab {
        let fake = FakeGitlab::start().await;
        let project = fake.create_project(REPO);
        let api = Api {
            base: format!("{}/api/v4", fake.url),
            auth: ("PRIVATE-TOKEN", BOT_TOKEN.to_string()),
            http: reqwest::Client::new(),
        };
        Gitlab { fake, project, api }
    }

    async fn commit(&self, body: Value) -> (u16, Value) {
        let path = format!("/projects/{}/repository/commits", self.project);
        self.send("POST", &path, body).await
    }

    fn head(&self, branch: &str) -> Option<String> {
        self.fake.git.head(REPO, branch)
    }

    fn assert_conformant(&self) {
        assert_eq!(self.fake.violations(), Vec::<String>::new());
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_lists_the_projects_a_developer_can_push_to() {
    let gl = Gitlab::start().await;
    let second = gl.fake.create_project("acme/sub/second");
    let third = gl.fake.create_project("acme/third");
    gl.fake.set_visibility(third, "internal");
    let watched = gl.fake.create_project("acme/watched");
    gl.fake
        .set_access_level(watched, fake_gitlab::BOT_USERNAME, 20);

    let query = "/projects?membership=true&min_access_level=30&per_page=2";
    let (status, headers, first) = gl.get(query).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-total"), "3", "not the Reporter project");
    assert_eq!(header(&headers, "x-page"), "1");
    assert_eq!(header(&headers, "x-next-page"), "2");
    let next = next_link(&headers).expect("a Link to page 2");
    let (_, headers, rest) = gl.get(&next).await;
    assert_eq!(header(&headers, "x-next-page"), "");
    let projects: Vec<Value> = [first, rest]
        .iter()
        .flat_map(|p| p.as_array().unwrap().clone())
        .collect();
    let paths: Vec<&str> = projects
        .iter()
        .map(|p| p["path_with_namespace"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["acme/third", "acme/sub/second", REPO],
        "newest first"
    );
    assert_eq!(projects[0]["visibility"], "internal");
    assert_eq!(projects[1]["id"], second);
    assert!(projects.iter().all(|p| p["default_branch"] == "main"));
    let (_, headers, _) = gl.get("/projects?membership=true").await;
    assert_eq!(
        header(&headers, "x-total"),
        "4",
        "Reporter included without a level"
    );

    let anonymous = reqwest::get(format!("{}/api/v4/projects", gl.fake.url))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    gl.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_tree_and_files_read_any_ref() {
    let gl = Gitlab::start().await;
    gl.fake.git.commit(
        REPO,
        "main",
        &[
            ("infra/main.tf", Some(b"# main\n".as_slice())),
            ("infra/vars.tf", Some(b"# vars\n".as_slice())),
            ("infra/modules/vpc.tf", Some(b"# vpc\n".as_slice())),
        ],
        "seed",
    );
    gl.fake.git.create_branch(REPO, "feature/x", "main");
    let tree = format!("/projects/{}/repository/tree", gl.project);

    let (status, headers, page) = gl
        .get(&format!(
            "{tree}?ref=feature%2Fx&path=infra&recursive=true&per_page=2"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-total"), "4");
    let mut entries: Vec<Value> = page.as_array().unwrap().clone();
    let mut next = next_link(&headers);
    while let Some(url) = next {
        let (_, headers, page) = gl.get(&url).await;
        entries.extend(page.as_array().unwrap().clone());
        next = next_link(&headers);
    }
    let listed: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap(),
                e["name"].as_str().unwrap(),
                e["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("infra/main.tf", "main.tf", "blob"),
            ("infra/modules", "modules", "tree"),
            ("infra/modules/vpc.tf", "vpc.tf", "blob"),
            ("infra/vars.tf", "vars.tf", "blob"),
        ]
    );
    let (_, _, top) = gl.get(&format!("{tree}?path=infra")).await;
    let top: Vec<&str> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["modules", "main.tf", "vars.tf"], "folders first");
    let (status, _, missing) = gl.get(&format!("{tree}?ref=nope")).await;
    assert_eq!(
        (status, missing["message"].as_str()),
        (404, Some("404 Tree Not Found"))
    );
    let (status, _, missing) = gl.get(&format!("{tree}?path=nope")).await;
    assert_eq!(
        (status, missing["message"].as_str()),
        (404, Some("404 invalid revision or path Not Found"))
    );

    let files = format!("/projects/{}/repository/files", gl.project);
    let (status, _, file) = gl.get(&format!("{files}/infra%2Fmain.tf?ref=main")).await;
    assert_eq!(status, 200);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(file["content"].as_str().unwrap())
            .unwrap(),
        b"# main\n"
    );
    assert_eq!(file["file_path"], "infra/main.tf");
    assert_eq!(file["last_commit_id"], gl.head("main").unwrap().as_str());
    let blob = &entries[0]["id"];
    assert_eq!(&file["blob_id"], blob);
    let (status, _, gone) = gl.get(&format!("{files}/infra%2Fnope.tf?ref=main")).await;
    assert_eq!(
        (status, gone["message"].as_str()),
        (404, Some("404 File Not Found"))
    );
    let (status, _, no_commit) = gl.get(&format!("{files}/infra%2Fmain.tf?ref=nope")).await;
    assert_eq!(
        (status, no_commit["message"].as_str()),
        (404, Some("404 Commit Not Found"))
    );
    let (status, _, no_ref) = gl.get(&format!("{files}/infra%2Fmain.tf")).await;
    assert_eq!(
        (status, no_ref["error"].as_str()),
        (400, Some("ref is missing"))
    );
    gl.assert_conformant();

    // GitLab needs the path encoded: a bare `/` is no documented route.
    let (status, _, _) = gl.get(&format!("{files}/infra/main.tf?ref=main")).await;
    assert_eq!(status, 400);
    assert_eq!(gl.fake.violations().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_commits_api_writes_actions_and_refuses_as_gitlab_does() {
    let gl = Gitlab::start().await;
    let seeded = gl.fake.git.commit(
        REPO,
        "main",
        &[
            ("infra/old.tf", Some(b"old\n".as_slice())),
            ("infra/keep.tf", Some(b"keep\n".as_slice())),
        ],
        "seed",
    );
    let actions = json!([
        {"action": "create", "file_path": "infra/main.tf", "content": b64(b"# main\n"), "encoding": "base64"},
        {"action": "update", "file_path": "infra/keep.tf", "content": "kept\n"},
        {"action": "delete", "file_path": "infra/old.tf"},
        {"action": "move", "previous_path": "README.md", "file_path": "docs/README.md"},
    ]);
    let (status, commit) = gl
        .commit(json!({"branch": "graft/infra", "start_branch": "main",
                       "commit_message": "graft: sync infra\n\nfour actions", "actions": actions}))
        .await;
    assert_eq!(status, 201, "{commit}");
    let sha = commit["id"].as_str().unwrap().to_string();
    assert_eq!(commit["title"], "graft: sync infra");
    assert_eq!(commit["parent_ids"], json!([seeded]));
    assert_eq!(commit["short_id"], &sha[..8]);
    assert_eq!(commit["author_name"], fake_gitlab::BOT_USERNAME);
    assert!(
        commit["web_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/-/commit/{sha}"))
    );
    assert_eq!(gl.head("graft/infra").as_deref(), Some(sha.as_str()));
    let read = |path: &str| gl.fake.git.file(REPO, &sha, path);
    assert_eq!(
        read("infra/main.tf").as_deref(),
        Some(b"# main\n".as_slice())
    );
    assert_eq!(read("infra/keep.tf").as_deref(), Some(b"kept\n".as_slice()));
    assert_eq!(
        read("docs/README.md").as_deref(),
        Some(b"# test project\n".as_slice())
    );
    assert!(read("infra/old.tf").is_none() && read("README.md").is_none());
    assert!(gl.fake.commit_is_verified(REPO, &sha));
    let fake = gl.fake.clone();
    eventually("the Push Hook", Duration::from_secs(10), || {
        let (fake, sha) = (fake.clone(), sha.clone());
        async move {
            fake.webhooks()
                .into_iter()
                .find(|h| h.event == "Push Hook" && h.body["after"] == sha.as_str())
        }
    })
    .await;

    let refused = |body: Value| {
        let gl = &gl;
        async move {
            let (status, answer) = gl.commit(body).await;
            (
                status,
                answer["message"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    let one = |action: Value| json!({"branch": "graft/infra", "commit_message": "m", "actions": [action]});
    assert_eq!(
        refused(one(
            json!({"action": "create", "file_path": "infra/main.tf", "content": "x"})
        ))
        .await,
        (400, "A file with this name already exists".to_string())
    );
    assert_eq!(
        refused(one(
            json!({"action": "update", "file_path": "nope.tf", "content": "x"})
        ))
        .await,
        (400, "A file with this name doesn't exist".to_string())
    );
    assert_eq!(
        refused(one(json!({"action": "delete", "file_path": "nope.tf"}))).await,
        (400, "A file with this name doesn't exist".to_string())
    );
    assert_eq!(
        refused(one(
            json!({"action": "update", "file_path": "infra/keep.tf", "content": "x",
                            "last_commit_id": seeded})
        ))
        .await,
        (
            400,
            "The file has changed since you started editing it: infra/keep.tf".to_string()
        )
    );
    let mut new_branch = one(json!({"action": "create", "file_path": "n.tf", "content": "n"}));
    new_branch["branch"] = json!("graft/new");
    assert_eq!(
        refused(new_branch).await,
        (
            400,
            "You can only create or edit files when you are on a branch".to_string()
        )
    );
    let rewrite = json!({"branch": "graft/infra", "start_branch": "main", "commit_message": "again",
                         "actions": [{"action": "create", "file_path": "infra/main.tf", "content": "v2"}]});
    assert_eq!(
        refused(rewrite.clone()).await,
        (
            400,
            "A branch called 'graft/infra' already exists. Switch to that branch in order to make changes"
                .to_string()
        )
    );
    assert_eq!(
        gl.head("graft/infra").as_deref(),
        Some(sha.as_str()),
        "nothing moved"
    );

    // `force`: the branch starts over from `main`.
    let mut forced = rewrite;
    forced["force"] = json!(true);
    let (status, again) = gl.commit(forced).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["parent_ids"], json!([seeded]));
    assert_eq!(gl.head("graft/infra").as_deref(), again["id"].as_str());

    gl.fake.protect_branch(REPO, "main");
    let mut protected = one(json!({"action": "create", "file_path": "p.tf", "content": "p"}));
    protected["branch"] = json!("main");
    assert_eq!(
        refused(protected.clone()).await,
        (
            403,
            "403 Forbidden - You are not allowed to push into this branch".to_string()
        )
    );
    gl.fake
        .set_access_level(gl.project, fake_gitlab::BOT_USERNAME, 20);
    assert_eq!(refused(protected).await.0, 403, "a Reporter may not push");
    let anonymous = reqwest::Client::new()
        .post(format!(
            "{}/api/v4/projects/{}/repository/commits",
            gl.fake.url, gl.project
        ))
        .json(&one(
            json!({"action": "delete", "file_path": "infra/keep.tf"}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    gl.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_push_rule_refuses_an_unsigned_push_but_not_api_commits() {
    let gl = Gitlab::start().await;
    gl.fake.reject_unsigned_commits(REPO);
    let work = tempfile::tempdir().unwrap();
    let url = gl.fake.git.clone_url(REPO);
    let (clone, _) = unsigned_commit(BOT_TOKEN, &url, work.path(), "a.tf").await;
    let head = gl.head("main");
    let pushed = git_client(
        BOT_TOKEN,
        &clone,
        &["push", "origin", "HEAD:refs/heads/graft/infra"],
    )
    .await;
    assert!(!pushed.status.success());
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    assert!(
        stderr.contains("remote: GitLab: Commit must be signed with a GPG key"),
        "{stderr}"
    );
    assert!(gl.head("graft/infra").is_none());
    assert_eq!(gl.head("main"), head);

    let (status, commit) = gl
        .commit(
            json!({"branch": "graft/infra", "start_branch": "main", "commit_message": "signed",
                       "actions": [{"action": "create", "file_path": "a.tf", "content": "a"}]}),
        )
        .await;
    assert_eq!(status, 201, "{commit}");
    assert!(
        gl.fake
            .commit_is_verified(REPO, commit["id"].as_str().unwrap())
    );

    gl.fake.faults(|f| f.fail = 1);
    let tree = format!("/projects/{}/repository/tree", gl.project);
    let anonymous = reqwest::get(format!("{}/api/v4{tree}", gl.fake.url))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "credentials before the fault");
    assert_eq!(gl.get(&tree).await.0, 502);
    assert_eq!(gl.get(&tree).await.0, 200);
    gl.assert_conformant();
}
