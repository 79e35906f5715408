//! Recovering webhooks that never reached graft (it was down, or the
//! network was): at start-up and then every interval.
//!
//! - GitHub keeps every delivery attempt of the App's webhook for three
//!   days. graft lists them and asks GitHub to redeliver each event
//!   (guid) that no attempt delivered and that graft has not stored. The
//!   redelivery comes in as an ordinary webhook with the same guid, so
//!   intake's dedupe keeps it exactly-once; each guid is asked for once.
//! - GitLab redelivers nothing and disables a hook that keeps failing.
//!   graft reads the health of the hooks that point at it, re-enables a
//!   disabled one with a test request (GitLab's documented way), queues a
//!   reconcile of the projects concerned (pushes, MR state), and reads the
//!   notes written on its open MRs since the last pass into the normal
//!   command intake, whose dedupe runs each command once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::events::{Actor, CommentAction, CommentEvent, Provider, RepoRef};
use crate::forge::ForgeError;
use crate::forge::github::deliveries::{HookDelivery, RETENTION_MS};
use crate::forge::gitlab::GitlabRepo;
use crate::forge::gitlab::hooks::{HookHealth, ProjectHook};
use crate::ids::PrNumber;
use crate::store::deliveries::WebhookHealth;
use crate::store::projects::Project;
use crate::store::{StoreError, now_ms};

/// Deliveries and notes this close to the last pass's newest are read
/// again: a listing may show an event a little after its time.
const OVERLAP_MS: i64 = 10 * 60 * 1000;

const GITHUB_MARK: &str = "github_deliveries";

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Forge(#[from] ForgeError),
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// GitHub events whose redelivery graft asked for.
    pub redeliveries: usize,
    /// GitLab hooks re-enabled.
    pub hooks_enabled: usize,
    /// GitLab notes read into the command intake.
    pub notes: usize,
    /// Steps that failed (logged); the next pass tries them again.
    pub failures: usize,
}

/// One GitHub event to ask again: its guid and the attempt to redeliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub guid: String,
    pub attempt: i64,
    pub event: String,
}

/// The events among `deliveries` that no attempt delivered, whose newest
/// attempt is at or after `since` (Unix ms), oldest first. Pure: whether
/// graft stored or already asked for them is checked by the caller.
pub fn missed(deliveries: &[HookDelivery], since: i64) -> Vec<Missed> {
    let mut by_guid: BTreeMap<&str, Vec<&HookDelivery>> = BTreeMap::new();
    for d in deliveries {
        by_guid.entry(&d.guid).or_default().push(d);
    }
    let mut out: Vec<(i64, Missed)> = by_guid
        .into_values()
        .filter(|attempts| !attempts.iter().any(|a| a.succeeded()))
        .filter_map(|attempts| {
            let newest = attempts
                .iter()
                .max_by_key(|a| (a.delivered_ms().unwrap_or(i64::MIN), a.id))?;
            let at = newest.delivered_ms()?;
            (at >= since).then(|| {
                (
                    at,
                    Missed {
                        guid: newest.guid.clone(),
                        attempt: newest.id,
                        event: newest.event.clone(),
                    },
                )
            })
        })
        .collect();
    out.sort_by_key(|(at, m)| (*at, m.attempt));
    out.into_iter().map(|(_, m)| m).collect()
}

/// Where a scan starts: the last pass's newest (less an overlap), but no
/// further back than `window`.
pub fn scan_start(now: i64, mark: Option<i64>, window: i64) -> i64 {
    let oldest = now.saturating_sub(window);
    mark.map_or(oldest, |m| m.saturating_sub(OVERLAP_MS).max(oldest))
}

/// Whether `hook_url` is graft's GitLab webhook: exactly
/// `{public_url}/webhooks/gitlab`, or without a public URL any URL ending
/// in `/webhooks/gitlab`.
pub fn is_graft_hook(hook_url: &str, public_url: Option<&str>) -> bool {
    let url = hook_url.trim_end_matches('/');
    match public_url {
        Some(root) => url == format!("{}/webhooks/gitlab", root.trim_end_matches('/')),
        None => url.ends_with("/webhooks/gitlab"),
    }
}

/// How the dashboard shows a project's webhook health.
pub fn describe_health(health: &WebhookHealth) -> String {
    match health.state.as_str() {
        "ok" => "ok".to_string(),
        "temporarily_disabled" => match health
            .disabled_until
            .and_then(chrono::DateTime::from_timestamp_millis)
        {
            Some(until) => format!(
                "temporarily disabled by GitLab until {}",
                until.format("%Y-%m-%d %H:%M UTC")
            ),
            None => "temporarily disabled by GitLab".to_string(),
        },
        "disabled" => "disabled by GitLab after failures; graft could not re-enable it".to_string(),
        "missing" => "no webhook on the project points at graft".to_string(),
        other => other.to_string(),
    }
}

/// One pass over both forges.
pub async fn run_once(ctx: &Context) -> Recovered {
    let mut done = Recovered::default();
    match recover_github(ctx, &mut done).await {
        Ok(()) => {}
        Err(e) => {
            done.failures += 1;
            warn!(error = %e, "recovery: could not check GitHub's webhook deliveries");
        }
    }
    recover_gitlab(ctx, &mut done).await;
    if done != Recovered::default() {
        info!(
            redeliveries = done.redeliveries,
            hooks_enabled = done.hooks_enabled,
            notes = done.notes,
            failures = done.failures,
            "recovery pass over missed webhooks"
        );
    }
    done
}

async fn recover_github(ctx: &Context, done: &mut Recovered) -> Result<(), RecoveryError> {
    let Some(app) = ctx.forges.github_app() else {
        return Ok(());
    };
    let store = &ctx.store;
    let now = now_ms();
    let since = scan_start(now, store.recovery_mark(GITHUB_MARK).await?, RETENTION_MS);
    let deliveries = app.hook_deliveries_since(since).await?;
    let mut failed = false;
    for m in missed(&deliveries, since) {
        let (stored, asked) = store.delivery_known("github", &m.guid).await?;
        if stored || asked || !store.claim_redelivery("github", &m.guid, now).await? {
            continue;
        }
        match app.redeliver(m.attempt).await {
            Ok(()) => {
                done.redeliveries += 1;
                debug!(guid = %m.guid, event = %m.event, "recovery: asked GitHub to redeliver");
            }
            Err(e) => {
                failed = true;
                done.failures += 1;
                warn!(guid = %m.guid, error = %e, "recovery: GitHub would not redeliver");
                store.release_redelivery("github", &m.guid).await?;
            }
        }
    }
    // A failed request is tried again next pass only if the scan reaches
    // back to it: the mark stays.
    if !failed && let Some(newest) = deliveries.iter().filter_map(|d| d.delivered_ms()).max() {
        store.advance_recovery_mark(GITHUB_MARK, newest).await?;
    }
    store
        .prune_redelivery_requests(now.saturating_sub(RETENTION_MS + OVERLAP_MS))
        .await?;
    Ok(())
}

async fn recover_gitlab(ctx: &Context, done: &mut Recovered) {
    let projects = match ctx.store.list_projects().await {
        Ok(projects) => projects,
        Err(e) => {
            done.failures += 1;
            warn!(error = %e, "recovery: could not list projects");
            return;
        }
    };
    // Several projects may share a repository (and so its hooks).
    let mut checked: HashMap<(Option<i64>, String), HookHealth> = HashMap::new();
    for project in projects.iter().filter(|p| p.provider == Provider::Gitlab) {
        if let Err(e) = recover_project(ctx, project, &mut checked, done).await {
            done.failures += 1;
            warn!(project = project.id.get(), error = %e, "recovery: could not check the GitLab project");
        }
    }
}

async fn recover_project(
    ctx: &Context,
    project: &Project,
    checked: &mut HashMap<(Option<i64>, String), HookHealth>,
    done: &mut Recovered,
) -> Result<(), RecoveryError> {
    let repo = ctx
        .forges
        .gitlab_repo(project.integration_id, &project.repo)
        .await?;
    let store = &ctx.store;
    let key = (project.integration_id, project.repo.clone());
    let health = match checked.get(&key) {
        Some(health) => Some(*health),
        None => {
            let health = heal_hooks(ctx, &repo, done).await?;
            if let Some(h) = health {
                checked.insert(key, h);
            }
            health
        }
    };
    let now = now_ms();
    let (name, until) = match health {
        None => ("missing", None),
        Some(HookHealth::TemporarilyDisabled { until }) => ("temporarily_disabled", until),
        Some(h) => (h.as_str(), None),
    };
    store
        .set_webhook_health(project.id, name, until, now)
        .await?;
    if let Some(number) = project.pull_request_number {
        read_missed_notes(ctx, project, &repo, number, done).await?;
    }
    Ok(())
}

/// Re-enables graft's disabled hooks on the project and queues a
/// reconcile of its projects when one was; returns the health of graft's
/// hooks afterwards (the worst), `None` when no hook points at graft.
async fn heal_hooks(
    ctx: &Context,
    repo: &GitlabRepo,
    done: &mut Recovered,
) -> Result<Option<HookHealth>, RecoveryError> {
    let public_url = ctx.operator.public_url.as_deref();
    let ours = |hooks: Vec<ProjectHook>| -> Vec<ProjectHook> {
        hooks
            .into_iter()
            .filter(|h| is_graft_hook(&h.url, public_url))
            .collect()
    };
    let hooks = ours(repo.hooks(now_ms()).await?);
    if hooks.is_empty() {
        return Ok(None);
    }
    let sick: Vec<&ProjectHook> = hooks.iter().filter(|h| !h.health.is_ok()).collect();
    if sick.is_empty() {
        return Ok(Some(HookHealth::Ok));
    }
    for hook in &sick {
        match repo.test_hook(hook.id).await {
            Ok(()) => {
                done.hooks_enabled += 1;
                info!(
                    hook = hook.id,
                    was = hook.health.as_str(),
                    "recovery: GitLab webhook re-enabled"
                );
            }
            Err(e) => {
                done.failures += 1;
                warn!(hook = hook.id, error = %e, "recovery: could not re-enable the GitLab webhook");
            }
        }
    }
    // Pushes and MR changes GitLab held back: a reconcile reads them.
    let path = repo.path().to_string();
    for project in ctx.store.list_projects().await? {
        if project.provider == Provider::Gitlab && project.repo == path {
            crate::sync::schedule::enqueue_reconcile(
                &ctx.jobs,
                project.id,
                "webhook re-enabled",
                now_ms(),
            )
            .await?;
        }
    }
    let after = ours(repo.hooks(now_ms()).await?);
    Ok(after.iter().map(|h| h.health).max_by_key(|h| severity(*h)))
}

fn severity(health: HookHealth) -> u8 {
    match health {
        HookHealth::Ok => 0,
        HookHealth::TemporarilyDisabled { .. } => 1,
        HookHealth::Disabled => 2,
    }
}

/// Feeds the notes of MR `number` written since the last pass into the
/// command intake (oldest first, as they were written).
async fn read_missed_notes(
    ctx: &Context,
    project: &Project,
    repo: &GitlabRepo,
    number: PrNumber,
    done: &mut Recovered,
) -> Result<(), RecoveryError> {
    let store = &ctx.store;
    let mark_name = format!("gitlab_notes:{}:{number}", project.id);
    let since = scan_start(
        now_ms(),
        store.recovery_mark(&mark_name).await?,
        RETENTION_MS,
    );
    let mut notes = repo.notes_since(number, since).await?;
    if notes.is_empty() {
        return Ok(());
    }
    notes.reverse();
    let repo_id = repo.project_id().await.ok();
    let mut newest = since;
    for note in notes {
        newest = newest.max(note.updated_at);
        let event = CommentEvent {
            repo: RepoRef {
                path: project.repo.clone(),
                id: repo_id,
            },
            action: CommentAction::Created,
            number,
            on_pull_request: true,
            comment_id: note.id,
            previous_body: None,
            updated_at: Some(note.updated_at_text),
            author: Actor {
                is_bot: crate::events::gitlab::is_bot_username(&note.author_username),
                login: note.author_username,
                id: Some(note.author_id),
            },
            body: note.body,
            editor: None,
        };
        crate::commands::intake::on_comment(ctx, Provider::Gitlab, project.integration_id, &event)
            .await
            .map_err(|e| {
                RecoveryError::Forge(ForgeError::Config(format!(
                    "note {} could not be read for commands: {e}",
                    event.comment_id
                )))
            })?;
        done.notes += 1;
    }
    store.advance_recovery_mark(&mark_name, newest).await?;
    Ok(())
}

/// The row of recovery in `periodic_tasks`.
pub const TASK: &str = "delivery_recovery";

/// Runs a pass at start-up, then one per interval across all replicas,
/// until `shutdown`.
pub async fn run(
    ctx: Context,
    interval: Duration,
    holder: String,
    shutdown: watch::Receiver<bool>,
) {
    // At start-up whenever the last pass ran: the events missed while this
    // process was down are what recovery is for. Replicas starting
    // together may each run it; they ask for each redelivery once.
    let now = now_ms();
    if let Err(e) = ctx.store.claim_periodic(TASK, &holder, now, 0).await {
        warn!(error = %e, "recovery: could not record the start-up pass");
    }
    run_once(&ctx).await;
    let task = crate::periodic::Periodic {
        name: TASK,
        interval,
        holder,
    };
    let store = ctx.store.clone();
    crate::periodic::run(store, task, shutdown, || {
        let ctx = ctx.clone();
        async move {
            run_once(&ctx).await;
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(id: i64, guid: &str, at: &str, code: i64) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.into(),
            delivered_at: at.into(),
            redelivery: false,
            status: String::new(),
            status_code: code,
            event: "issue_comment".into(),
            action: Some("created".into()),
            installation_id: Some(1),
            repository_id: Some(2),
        }
    }

    fn ms(at: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn only_events_no_attempt_delivered_are_missed() {
        let list = vec![
            attempt(9, "c", "2026-12-01T10:09:00Z", 0),
            // `b` failed, then a redelivery got through.
            attempt(8, "b", "2026-12-01T10:08:00Z", 202),
            attempt(7, "b", "2026-12-01T10:07:00Z", 502),
            // `a` failed twice (the original and a redelivery).
            attempt(6, "a", "2026-12-01T10:06:00Z", 0),
            attempt(5, "a", "2026-12-01T10:05:00Z", 503),
            attempt(4, "ok", "2026-12-01T10:04:00Z", 200),
            // Too old for this scan.
            attempt(3, "old", "2026-12-01T09:00:00Z", 0),
        ];
        let got = missed(&list, ms("2026-12-01T10:00:00Z"));
        let ids: Vec<(&str, i64)> = got.iter().map(|m| (m.guid.as_str(), m.attempt)).collect();
        assert_eq!(ids, vec![("a", 6), ("c", 9)]);
    }

    #[test]
    fn scans_overlap_the_last_pass_within_the_window() {
        let now = 10 * 24 * 3600 * 1000;
        let window = 3 * 24 * 3600 * 1000;
        assert_eq!(scan_start(now, None, window), now - window);
        assert_eq!(
            scan_start(now, Some(now - 60_000), window),
            now - 60_000 - OVERLAP_MS
        );
        assert_eq!(scan_start(now, Some(1), window), now - window);
    }

    #[test]
    fn graft_hook_is_recognised_by_its_url() {
        let public = Some("https://graft.example.com");
        assert!(is_graft_hook(
            "https://graft.example.com/webhooks/gitlab",
            public
        ));
        assert!(is_graft_hook(
            "https://graft.example.com/webhooks/gitlab/",
            public
        ));
        assert!(!is_graft_hook(
            "https://other.example.com/webhooks/gitlab",
            public
        ));
        assert!(!is_graft_hook("https://graft.example.com/ci", public));
        assert!(is_graft_hook("http://10.0.0.5:8080/webhooks/gitlab", None));
        assert!(!is_graft_hook("http://10.0.0.5:8080/hook", None));
    }
}
