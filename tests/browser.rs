//! The dashboard in a real browser: headless Chromium driven through
//! chromedriver's WebDriver HTTP API signs in with an API token and reads
//! the status and error of a project in `error`. A screenshot is kept in
//! `target/test-artifacts/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`.ci/run`
//! installs them). Without them the test fails in CI (`CI` set) and is
//! skipped, saying so, elsewhere.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::ui::create_project;
use support::{TestApp, TestDb, default_settings, eventually};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const ERROR: &str = "GitHub denied the request: Resource not accessible by integration (HTTP \
                     403). Grant the app `pull_requests: write` in its settings, then accept the \
                     new permissions on the installation";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// The port chromedriver reports binding: "ChromeDriver was started
/// successfully on port N." (chromedriver 128 and later; older ones cannot
/// pick their own port). Its later output is drained so it never blocks
/// on a full pipe.
async fn reported_port(driver: &mut tokio::process::Child) -> u16 {
    use tokio::io::AsyncBufReadExt;
    let stdout = driver.stdout.take().expect("chromedriver stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut printed = String::new();
    let port = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            printed.push_str(&line);
            printed.push('\n');
            if let Some(port) = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
            {
                return Some(port);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(port) = port.filter(|p| *p != 0) else {
        panic!(
            "chromedriver did not report the port it bound within 20 s (it needs version \
             128 or later for --port=0): {printed}"
        );
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    port
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or(Path::new("target"))
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver with one Chromium session; both end when dropped.
struct Browser {
    driver: tokio::process::Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Option<Browser> {
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
        let chromedriver = find_program(&["chromedriver"]);
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "the browser test needs chromium and chromedriver: apt-get install chromium \
                 chromium-driver (.ci/run installs them)"
            );
            eprintln!("chromium/chromedriver not installed: browser test skipped");
            return None;
        };
        // chromedriver binds a free port itself (`--port=0`) and says which:
        // a port reserved here and released would be free for anyone to take
        // before chromedriver binds it.
        let mut driver = tokio::process::Command::new(chromedriver)
            .arg("--port=0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let port = reported_port(&mut driver).await;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually("chromedriver ready", Duration::from_secs(20), || async {
            let status = http.get(format!("{base}/status")).send().await.ok()?;
            let body: Value = status.json().await.ok()?;
            body["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args},
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        Some(Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            answer["value"].get("error").is_none(),
            "WebDriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        let text = self
            .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await;
        text.as_str().unwrap_or_default().to_string()
    }

    async fn current_url(&self) -> String {
        let url = self.call(reqwest::Method::GET, "/url", None).await;
        url.as_str().unwrap_or_default().to_string()
    }

    async fn screenshot(&self, file: &Path) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"));
        std::fs::write(file, bytes).unwrap();
    }

    async fn quit(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        self.session.clear();
        let _ = self.driver.kill().await;
    }
}

impl Drop for Browser {
    /// After a failed assertion: end the session so chromedriver closes
    /// Chromium (killing chromedriver alone would leave it running).
    fn drop(&mut self) {
        if self.session.is_empty() {
            return;
        }
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build();
            if let Ok(client) = client {
                let _ = client.delete(url).send();
            }
        })
        .join();
    }
}

async fn dashboard_in_a_browser_shows_the_error(db: TestDb) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("admin").await;
    let project = create_project(&app, "acme/infra").await;
    app.store
        .record_sync_error(project.id, ERROR, None, graft::store::now_ms())
        .await
        .unwrap();

    browser.go(&app.url("/")).await;
    // Not signed in: the browser lands on the login form.
    let on_login = eventually("login page", Duration::from_secs(10), || async {
        Some(browser.current_url().await).filter(|u| u.contains("/login"))
    })
    .await;
    assert!(on_login.contains("next="), "{on_login}");
    let field = browser.element("input[name=token]").await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{field}/value"),
            Some(json!({ "text": token })),
        )
        .await;
    let submit = browser.element("button[type=submit]").await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{submit}/click"),
            Some(json!({})),
        )
        .await;
    eventually("dashboard after login", Duration::from_secs(10), || async {
        Some(browser.current_url().await).filter(|u| *u == app.url("/"))
    })
    .await;

    let status = browser
        .text(&format!("#project-{} .badge", project.id))
        .await;
    assert_eq!(status, "error");
    let error = browser.text(".sync-error").await;
    assert!(error.contains("Resource not accessible"), "{error}");
    assert!(error.contains("accept the new permissions"), "{error}");
    let alert = browser.text("[role=alert]").await;
    assert!(alert.contains("1 project(s) in error"), "{alert}");

    let name = match db.backend {
        support::Backend::Sqlite => "dashboard.png",
        support::Backend::Postgres => "dashboard-postgres.png",
    };
    let file = artifacts_dir().join(name);
    browser.screenshot(&file).await;
    eprintln!("screenshot: {}", file.display());

    // The project page, one click away.
    let link = browser.element(&format!("#project-{} a", project.id)).await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{link}/click"),
            Some(json!({})),
        )
        .await;
    let page = app.url(&format!("/projects/{}", project.id));
    eventually("project page", Duration::from_secs(10), || async {
        Some(browser.current_url().await).filter(|u| *u == page)
    })
    .await;
    assert!(
        browser
            .text(".sync-error")
            .await
            .contains("Resource not accessible")
    );
    browser.quit().await;
    app.stop().await;
}

both_backends!(dashboard_in_a_browser_shows_the_error);
