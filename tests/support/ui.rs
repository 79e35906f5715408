//! Acting as an admin in a browser without one: the login form (its CSRF
//! cookie and field), the session cookie, reading values out of pages.

use graft::store::projects::{Kind, Mode, NewProject, Project};

use super::TestApp;

/// An HTTP client that does not follow redirects (so tests see them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Posts `fields` as a form to `path` with a session cookie, as the
/// browser does: (status, `Location`, body).
pub async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let response = client()
        .post(app.url(path))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(fields))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, response.text().await.unwrap())
}

/// The `value` of the first `<input name="NAME" ...>` in `html`.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let start = html[..at].rfind("<input")?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let value_at = tag.find("value=\"")? + "value=\"".len();
    let value = &tag[value_at..];
    Some(unescape(&value[..value.find('"')?]))
}

/// The `action`s of the `<form method="post" ...>`s in `html`.
pub fn post_form_actions(html: &str) -> Vec<String> {
    html.match_indices("<form")
        .filter_map(|(at, _)| {
            let tag = &html[at..at + html[at..].find('>')?];
            if !tag.contains("method=\"post\"") {
                return None;
            }
            let value = &tag[tag.find("action=\"")? + "action=\"".len()..];
            Some(unescape(&value[..value.find('"')?]))
        })
        .collect()
}

pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// `name=value` of cookie `name` among a response's `Set-Cookie` headers.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

/// Signs in with `token` through the login form; returns the `Cookie`
/// header value of the session.
pub async fn login(app: &TestApp, token: &str) -> String {
    let http = client();
    let page = http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let login_cookie = cookie_pair(&set_cookie(&page, "graft_login").expect("login cookie"));
    let html = page.text().await.unwrap();
    let csrf = input_value(&html, "csrf").expect("csrf field");
    let response = http
        .post(app.url("/login"))
        .header("Cookie", login_cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("token", token), ("csrf", &csrf), ("next", "/")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "login should redirect");
    cookie_pair(&set_cookie(&response, "graft_session").expect("session cookie"))
}

pub async fn get_page(app: &TestApp, path: &str, cookie: &str) -> (u16, String) {
    let response = client()
        .get(app.url(path))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

pub fn new_project(repo: &str) -> NewProject {
    NewProject {
        provider: graft::ids::Provider::Github,
        integration_id: None,
        repo: repo.into(),
        branch: "main".into(),
        base_path: "infra/generated".into(),
        kind: Kind::Iac,
        mode: Mode::PullRequest,
        auto_sync: true,
        auto_merge: false,
        sync_branch: None,
        commit_via: Default::default(),
    }
}

pub async fn create_project(app: &TestApp, repo: &str) -> Project {
    app.store
        .create_project(&new_project(repo), graft::store::now_ms())
        .await
        .unwrap()
}
