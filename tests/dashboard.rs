//! The dashboard: login required (session cookie or bearer token), CSRF on
//! the forms, what a project in error shows, the project page.

mod support;

use graft::store::audit::NewEvent;
use graft::store::files::FileInput;
use graft::store::now_ms;
use support::ui::{
    client, cookie_pair, create_project, form, get_page, input_value, login, set_cookie,
};
use support::{TestApp, TestDb, default_settings};

const ERROR: &str = "GitHub denied the request: Resource not accessible by integration. \
                     Grant the app `pull_requests: write` and accept the new permissions <script>x</script>";

async fn login_is_required(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let project = create_project(&app, "acme/infra").await;
    for path in ["/", &format!("/projects/{}", project.id)] {
        let response = client().get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        let location = response.headers()["location"].to_str().unwrap();
        assert!(location.starts_with("/login?next="), "{location}");
    }
    // A forged or stale cookie is no session.
    let (status, _) = get_page(&app, "/", "graft_session=v1.1.99999999999999.00.ff").await;
    assert_eq!(status, 303);
    // A wrong bearer token is refused outright.
    let response = client()
        .get(app.url("/"))
        .bearer_auth("graft_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;
}

async fn login_checks_the_token_and_the_csrf_token(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("admin").await;
    let http = client();
    let page = http.get(app.url("/login")).send().await.unwrap();
    let set = set_cookie(&page, "graft_login").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let login_cookie = cookie_pair(&set);
    let html = page.text().await.unwrap();
    let csrf = input_value(&html, "csrf").unwrap();
    let post = |cookie: String, body: String| {
        http.post(app.url("/login"))
            .header("Cookie", cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // Without the CSRF token (or its cookie), no session.
    let r = post(
        login_cookie.clone(),
        form(&[("token", &token), ("csrf", "00")]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, "graft_session").is_none());
    let r = post(String::new(), form(&[("token", &token), ("csrf", &csrf)]))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A wrong token says so and sets no session.
    let r = post(
        login_cookie.clone(),
        form(&[("token", "graft_wrong"), ("csrf", &csrf)]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    assert!(set_cookie(&r, "graft_session").is_none());
    assert!(r.text().await.unwrap().contains("not valid"));
    // The right one: a signed, HttpOnly, SameSite=Strict session cookie.
    let r = post(
        login_cookie,
        form(&[("token", &token), ("csrf", &csrf), ("next", "/projects/1")]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/projects/1");
    let session = set_cookie(&r, "graft_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains(&token), "the token is not in the cookie");
    app.stop().await;
}

/// `next` after login stays on this site, however it is disguised: the
/// form carries `/` onward and a posted one redirects to `/`.
async fn login_never_redirects_off_site(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("admin").await;
    let http = client();
    let attacks = [
        "/\t/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
        "/\r\n/evil.example",
        "/%2F/evil.example",
    ];
    for next in attacks {
        let query = percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC);
        let page = http
            .get(app.url(&format!("/login?next={query}")))
            .send()
            .await
            .unwrap();
        let login_cookie = cookie_pair(&set_cookie(&page, "graft_login").unwrap());
        let html = page.text().await.unwrap();
        assert_eq!(input_value(&html, "next").as_deref(), Some("/"), "{next:?}");
        assert!(!html.contains("evil.example"), "{next:?}: {html}");
        let csrf = input_value(&html, "csrf").unwrap();
        let r = http
            .post(app.url("/login"))
            .header("Cookie", login_cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("token", &token), ("csrf", &csrf), ("next", next)]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{next:?}");
        assert_eq!(r.headers()["location"], "/", "{next:?}");
    }
    // The address from the report, exactly as sent.
    let page = http
        .get(app.url("/login?next=/%09/evil.example"))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert_eq!(input_value(&html, "next").as_deref(), Some("/"));
    app.stop().await;
}

async fn dashboard_shows_status_error_and_links(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("admin").await;
    let broken = create_project(&app, "acme/infra").await;
    let fine = create_project(&app, "acme/platform").await;
    let now = now_ms();
    app.store
        .record_sync_error(broken.id, ERROR, None, now)
        .await
        .unwrap();
    app.store
        .put_files(
            fine.id,
            &[FileInput {
                path: "main.tf".into(),
                content: b"a = 1\n".to_vec(),
                sync_on_change: None,
                executable: None,
                source: None,
            }],
            false,
            now,
        )
        .await
        .unwrap();
    app.store
        .record_pull(
            fine.id,
            Some("0123456789abcdef0123456789abcdef01234567"),
            now,
        )
        .await
        .unwrap();
    app.store
        .set_pull_request(
            fine.id,
            Some(graft::ids::PrNumber(12)),
            Some("https://github.com/acme/platform/pull/12"),
            now,
        )
        .await
        .unwrap();
    let cookie = login(&app, &token).await;
    let (status, html) = get_page(&app, "/", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"<meta http-equiv="refresh" content="15">"#),
        "auto-refresh"
    );
    // The fine project's row: its PR linked, one pending file.
    let row_start = html
        .find(&format!(r#"id="project-{}""#, fine.id))
        .expect("a row for the project");
    let row = &html[row_start..row_start + html[row_start..].find("</tr>").unwrap()];
    assert!(
        row.contains(r#"<a href="https://github.com/acme/platform/pull/12">#12</a>"#),
        "{row}"
    );
    assert!(row.contains("<td>1</td>"), "one pending file: {row}");
    assert!(html.contains(r#"data-status="error""#), "{html}");
    assert!(
        html.contains("Resource not accessible by integration"),
        "{html}"
    );
    assert!(html.contains("pull_requests: write"), "the hint is shown");
    assert!(
        html.contains("&lt;script&gt;x&lt;/script&gt;") && !html.contains("<script>x"),
        "escaped"
    );
    assert!(html.contains("1 project(s) in error"), "{html}");
    assert!(
        html.contains(
            "https://github.com/acme/platform/commit/0123456789abcdef0123456789abcdef01234567"
        ),
        "last synced SHA linked: {html}"
    );
    assert!(html.contains("acme/platform") && html.contains("just now"));
    assert!(html.contains(r#"action="/logout""#));
    // Bearer tokens work for scripts too.
    let response = client()
        .get(app.url("/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    app.stop().await;
}

async fn project_page_lists_files_and_audit_log(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("admin").await;
    let project = create_project(&app, "acme/infra").await;
    let now = now_ms();
    app.store
        .put_files(
            project.id,
            &[FileInput {
                path: "network/vpc.tf".into(),
                content: b"resource \"x\" \"y\" {}\n".to_vec(),
                sync_on_change: None,
                executable: None,
                source: None,
            }],
            false,
            now,
        )
        .await
        .unwrap();
    app.store
        .record_event(
            &NewEvent {
                project_id: Some(project.id),
                actor: "token:generator",
                kind: "files.put",
                message: "1 file changed",
                ..NewEvent::default()
            },
            now,
        )
        .await
        .unwrap();
    app.store
        .record_sync_error(project.id, ERROR, None, now)
        .await
        .unwrap();
    let cookie = login(&app, &token).await;
    let (status, html) = get_page(&app, &format!("/projects/{}", project.id), &cookie).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("network/vpc.tf") && html.contains("pending"),
        "{html}"
    );
    assert!(
        html.contains("files.put") && html.contains("1 file changed"),
        "{html}"
    );
    assert!(html.contains("token:generator"));
    assert!(html.contains("Resource not accessible by integration"));
    assert!(html.contains("infra/generated"));
    let (status, _) = get_page(&app, "/projects/999", &cookie).await;
    assert_eq!(status, 404);
    let (status, _) = get_page(&app, "/projects/x", &cookie).await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn logout_needs_csrf_and_revoked_tokens_end_sessions(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("admin").await;
    let cookie = login(&app, &token).await;
    let (_, html) = get_page(&app, "/", &cookie).await;
    let csrf = input_value(&html, "csrf").expect("logout form's csrf");
    let logout = |body: String| {
        client()
            .post(app.url("/logout"))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = logout(form(&[("csrf", "forged")])).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = logout(form(&[("csrf", &csrf)])).await.unwrap();
    assert_eq!(r.status(), 303);
    let cleared = set_cookie(&r, "graft_session").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // Revoking the token ends its sessions at once.
    let cookie = login(&app, &token).await;
    assert_eq!(get_page(&app, "/", &cookie).await.0, 200);
    app.store.revoke_token("admin", now_ms()).await.unwrap();
    assert_eq!(get_page(&app, "/", &cookie).await.0, 303);
    app.stop().await;
}

both_backends!(
    login_is_required,
    login_checks_the_token_and_the_csrf_token,
    login_never_redirects_off_site,
    dashboard_shows_status_error_and_links,
    project_page_lists_files_and_audit_log,
    logout_needs_csrf_and_revoked_tokens_end_sessions,
);
