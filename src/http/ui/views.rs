//! The dashboard's HTML (maud escapes every value). Small, readable pages
//! with inline CSS and no scripts.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{Admin, HttpState};
use crate::ids::Provider;
use crate::store::audit::AuditEvent;
use crate::store::files::FileMeta;
use crate::store::projects::{Project, SyncStatus};

/// Seconds between automatic reloads of the dashboard pages.
pub const REFRESH_SECS: u32 = 15;

const CSS: &str = "
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--red:#cf222e;--green:#1a7f37;
--blue:#0969da;--amber:#9a6700}
*{box-sizing:border-box}
body{font:14px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);margin:0;background:#fff}
header{display:flex;align-items:center;gap:1rem;padding:.6rem 1.2rem;border-bottom:1px solid var(--line);background:var(--bg)}
header .brand{font-weight:700;font-size:1.1rem;color:var(--fg);text-decoration:none}
header nav{margin-left:auto;display:flex;gap:.8rem;align-items:center;color:var(--muted)}
main{padding:1rem 1.2rem;max-width:80rem}
h1{font-size:1.3rem;margin:.2rem 0 1rem}h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:.85rem}
code,.sha{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}
a{color:var(--blue)}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.8rem;font-weight:600;border:1px solid}
.badge.idle{color:var(--muted)}.badge.syncing{color:var(--blue)}.badge.success{color:var(--green)}
.badge.error{color:#fff;background:var(--red);border-color:var(--red)}.badge.paused{color:var(--amber)}
.error-text{color:var(--red);white-space:pre-wrap}
tr.error-row td{border-top:0;padding-top:0}
.box{border:1px solid var(--line);border-radius:6px;padding:.8rem 1rem;margin:.8rem 0;background:var(--bg)}
.box.error{border-color:var(--red);background:#ffebe9}
.box.ok{border-color:var(--green);background:#dafbe1}
.muted{color:var(--muted)}
form.inline{display:inline}
button,input[type=submit]{font:inherit;padding:.3rem .8rem;border-radius:6px;border:1px solid var(--line);background:#fff;cursor:pointer}
input[type=password],input[type=text]{font:inherit;padding:.35rem .5rem;border:1px solid var(--line);border-radius:6px;width:100%;max-width:28rem}
label{display:block;margin:.6rem 0 .2rem;font-weight:600}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
";

/// A plain page with a title and a message.
pub struct Page<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub error: bool,
}

impl<'a> Page<'a> {
    pub fn error(title: &'a str, message: &'a str) -> Self {
        Page {
            title,
            message,
            error: true,
        }
    }
}

/// Who is signed in, for the header (and the sign-out form's CSRF token).
pub struct Nav {
    pub user: String,
    pub csrf: Option<String>,
}

impl Nav {
    pub fn of(admin: &Admin, state: &HttpState) -> Self {
        Nav {
            user: admin.token.name.clone(),
            csrf: admin.session.as_ref().map(|_| admin.csrf(state)),
        }
    }
}

pub fn layout(title: &str, refresh: bool, nav: Option<&Nav>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh { meta http-equiv="refresh" content=(REFRESH_SECS); }
                title { (title) " · graft" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a.brand href="/" { "graft" }
                    @if let Some(nav) = nav {
                        nav {
                            a href="/" { "Projects" }
                            a href="/repositories" { "Repositories" }
                            a href="/setup/github" { "GitHub App" }
                            span { "signed in as " strong { (nav.user) } }
                            @if let Some(csrf) = &nav.csrf {
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn message_page(status: StatusCode, page: Page<'_>) -> Response {
    let body = html! {
        h1 { (page.title) }
        div.box.error[page.error].ok[!page.error] { p { (page.message) } }
        p { a href="/" { "Back to the dashboard" } }
    };
    (
        status,
        Html(layout(page.title, false, None, body).into_string()),
    )
        .into_response()
}

pub fn login(csrf: &str, next: &str, error: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(error) = error { div.box.error role="alert" { (error) } }
        form method="post" action="/login" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value=(next);
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            p.muted { "Any active API token signs in. Create one on the server with "
                code { "graft token create --name YOUR-NAME" } "." }
            button type="submit" { "Sign in" }
        }
    };
    layout("Sign in", false, None, body)
}

pub fn status_badge(status: SyncStatus) -> Markup {
    html! { span class={"badge " (status.as_str())} data-status=(status.as_str()) { (status.as_str()) } }
}

/// `2024-05-01 12:34 UTC`.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "?".into())
}

/// `5 min ago`, with the exact time as a tooltip.
pub fn ago(now: i64, ms: Option<i64>) -> Markup {
    let Some(ms) = ms else {
        return html! { span.muted { "never" } };
    };
    let secs = (now - ms).max(0) / 1000;
    let text = match secs {
        0..=59 => "just now".to_string(),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    };
    html! { time datetime=(time(ms)) title=(time(ms)) { (text) } }
}

fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn sha_link(sha: Option<&str>, url: Option<&str>) -> Markup {
    html! {
        @match (sha, url) {
            (Some(sha), Some(url)) => a.sha href=(url) title=(sha) { (short_sha(sha)) },
            (Some(sha), None) => span.sha title=(sha) { (short_sha(sha)) },
            _ => span.muted { "—" },
        }
    }
}

fn pr_link(project: &Project) -> Markup {
    html! {
        @match (&project.pull_request_url, project.pull_request_number) {
            (Some(url), number) => a href=(url) {
                @if let Some(n) = number { (if project.provider == Provider::Gitlab { "!" } else { "#" }) (n) } @else { "open" }
            },
            _ => span.muted { "—" },
        }
    }
}

pub struct Overview {
    pub github_app: Option<String>,
    pub gitlab_integrations: usize,
    pub encryption_key: bool,
    pub durable_sessions: bool,
    pub public_url: Option<String>,
}

pub struct ProjectRow {
    pub project: Project,
    pub pending: i64,
    pub commit_url: Option<String>,
}

fn overview_box(o: &Overview) -> Markup {
    html! {
        div.box {
            dl.facts {
                dt { "GitHub App" }
                dd { @if let Some(app) = &o.github_app { (app) } @else {
                    "not configured — " a href="/setup/github" { "register one" } } }
                dt { "GitLab" }
                dd { (o.gitlab_integrations) " integration(s)" }
                dt { "ENCRYPTION_KEY" }
                dd { @if o.encryption_key { "set" } @else {
                    span.error-text { "not set: graft cannot store forge credentials" } } }
                dt { "Public URL" }
                dd { @if let Some(url) = &o.public_url { code { (url) } } @else {
                    "GRAFT_PUBLIC_URL not set" } }
                @if !o.durable_sessions {
                    dt { "Sessions" }
                    dd { "signed with a per-process key (set ENCRYPTION_KEY to keep them across restarts)" }
                }
            }
        }
    }
}

fn events_table(events: &[AuditEvent], with_project: bool, now: i64) -> Markup {
    html! {
        @if events.is_empty() { p.muted { "No events yet." } } @else {
            table.events {
                thead { tr {
                    th { "When" }
                    @if with_project { th { "Project" } }
                    th { "Who" } th { "What" } th { "Message" } th { "Commit" } th { "PR" }
                } }
                tbody {
                    @for e in events {
                        tr {
                            td { (ago(now, Some(e.created_at))) }
                            @if with_project { td { @if let Some(id) = e.project_id {
                                a href={"/projects/" (id)} { (id) } } @else { span.muted { "—" } } } }
                            td { (e.actor) }
                            td { code { (e.kind) } }
                            td { (e.message) }
                            td { (sha_link(e.commit_sha.as_deref(), None)) }
                            td { @if let Some(url) = &e.pull_request_url { a href=(url) { "link" } } }
                        }
                    }
                }
            }
        }
    }
}

pub fn dashboard(
    nav: &Nav,
    overview: &Overview,
    rows: &[ProjectRow],
    events: &[AuditEvent],
    now: i64,
) -> Markup {
    let failing = rows
        .iter()
        .filter(|r| r.project.sync_status == SyncStatus::Error)
        .count();
    let body = html! {
        h1 { "Projects" }
        @if failing > 0 {
            div.box.error role="alert" { strong { (failing) " project(s) in error." }
                " The error and how to recover are under each one." }
        }
        @if rows.is_empty() {
            p.muted { "No projects yet. Create one with " code { "POST /api/v1/projects" }
                " (see the README's first-project steps)." }
        } @else {
            table.projects {
                thead { tr {
                    th { "Project" } th { "Status" } th { "Last synced" } th { "PR/MR" }
                    th { "Pending files" } th { "Last pulled" }
                } }
                tbody {
                    @for row in rows {
                        @let p = &row.project;
                        tr id={"project-" (p.id)} {
                            td {
                                a href={"/projects/" (p.id)} { (p.repo) }
                                br;
                                span.muted { (p.provider) " · " code { (p.branch) }
                                    @if !p.base_path.is_empty() { " · " code { (p.base_path) } } }
                            }
                            td { (status_badge(p.sync_status)) }
                            td { (sha_link(p.last_synced_commit_sha.as_deref(), row.commit_url.as_deref())) }
                            td { (pr_link(p)) }
                            td { (row.pending) }
                            td { (ago(now, p.last_pulled_at)) }
                        }
                        @if let Some(error) = p.sync_error.as_deref().filter(|_| p.sync_status == SyncStatus::Error) {
                            tr.error-row { td colspan="6" { div.error-text.sync-error { (error) } } }
                        }
                    }
                }
            }
        }
        h2 { "Recent events" }
        (events_table(events, true, now))
        h2 { "Set-up" }
        (overview_box(overview))
        p.muted { "This page reloads every " (REFRESH_SECS) " seconds." }
    };
    layout("Projects", true, Some(nav), body)
}

pub struct ProjectView<'a> {
    pub project: &'a Project,
    pub repo_url: Option<&'a str>,
    pub commit_url: Option<&'a str>,
    pub files: &'a [FileMeta],
    pub events: &'a [AuditEvent],
    /// The GitLab webhook's health, when graft has read it.
    pub webhook: Option<&'a str>,
}

pub fn project(nav: &Nav, view: &ProjectView<'_>, now: i64) -> Markup {
    let p = view.project;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let body = html! {
        h1 { (p.repo) " " (status_badge(p.sync_status)) }
        @if let Some(error) = p.sync_error.as_deref().filter(|_| p.sync_status == SyncStatus::Error) {
            div.box.error role="alert" { strong { "Last error" } div.error-text.sync-error { (error) } }
        }
        @if let Some(conflicts) = p.conflicts.as_ref().filter(|c| !c.is_empty()) {
            div.box.error { strong { "Conflicting files" }
                ul { @for path in conflicts { li { code { (path) } } } }
                "Comment " code { "/graft sync --force" } " to keep graft's version or "
                code { "/graft import" } " to take the repository's." }
        }
        dl.facts {
            dt { "Repository" } dd { @if let Some(url) = view.repo_url { a href=(url) { (p.repo) } } @else { (p.repo) } " (" (p.provider) ")" }
            dt { "Branch" } dd { code { (p.branch) } }
            dt { "Base path" } dd { @if p.base_path.is_empty() { span.muted { "(repository root)" } } @else { code { (p.base_path) } } }
            dt { "Kind / mode" } dd { (p.kind.as_str()) " / " (p.mode.as_str()) }
            dt { "Auto-sync / auto-merge / paused" } dd { (yes_no(p.auto_sync)) " / " (yes_no(p.auto_merge)) " / " (yes_no(p.paused)) }
            dt { "Sync branch" } dd { code { (p.sync_branch) } }
            dt { "PR/MR" } dd { (pr_link(p)) }
            dt { "Last synced commit" } dd { (sha_link(p.last_synced_commit_sha.as_deref(), view.commit_url)) }
            dt { "Last pulled" } dd { (ago(now, p.last_pulled_at)) }
            @if let Some(webhook) = view.webhook { dt { "Webhook" } dd.webhook { (webhook) } }
            @if let Some(source) = &p.source { dt { "Generator" } dd { (source) } }
        }
        h2 { "Files (" (view.files.len()) ")" }
        @if view.files.is_empty() { p.muted { "No managed files." } } @else {
            table.files {
                thead { tr { th { "Path" } th { "State" } th { "Size" } th { "Blob" } th { "Sync on change" } th { "Source" } } }
                tbody { @for f in view.files { tr {
                    td { code { (f.path) } }
                    td { (f.state.as_str()) }
                    td { (f.size) }
                    td { span.sha { (short_sha(&f.blob_sha)) } }
                    td { (yes_no(f.sync_on_change)) }
                    td { (f.source.as_str()) }
                } } }
            }
        }
        h2 { "Audit log" }
        (events_table(view.events, false, now))
    };
    layout(&p.repo, true, Some(nav), body)
}
