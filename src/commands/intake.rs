//! From a comment webhook to a queued `command` job. Runs inside the
//! webhook job, so it only decides and records; the job does the rest.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::app::AppState;
use crate::events::{Actor, CommentAction, CommentEvent, Provider};
use crate::forge::STATUS_MARKER;
use crate::jobs::JobError;
use crate::store::commands::{Accepted, CommentKey, NewCommandRun, RateLimit};
use crate::store::jobs::NewJob;
use crate::store::now_ms;

use super::parse::{Command, CommandError, Invocation, new_since, parse};
use super::{JOB_KIND, REPLY_MARKER};

/// One accepted command line, as the job runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedCommand {
    /// Its row in `command_runs`.
    pub run_id: i64,
    pub text: String,
    pub result: Result<Command, CommandError>,
}

/// The payload of a `command` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandJob {
    pub provider: Provider,
    /// The GitLab integration the comment came through (`None`: GitHub, or
    /// the default integration): replies go back through it.
    #[serde(default)]
    pub integration_id: Option<i64>,
    pub repo: String,
    pub number: i64,
    pub comment_id: i64,
    /// Who the run is for: the editor of an edit, else the author. Their
    /// permission is checked and the audit log names them.
    pub author: Actor,
    /// The comment's author, when the run is someone else's edit of it.
    #[serde(default)]
    pub written_by: Option<Actor>,
    /// [`text_hash`] of the text the commands were read from: a GitLab job
    /// re-reads the note and runs nothing when the note says otherwise.
    #[serde(default)]
    pub body_hash: Option<String>,
    /// The forge's id of the repository, as the webhook gave it.
    #[serde(default)]
    pub repo_id: Option<i64>,
    pub prefix: String,
    pub commands: Vec<QueuedCommand>,
    /// 👀 was added on receipt (by the webhook job), so the command job
    /// does not add it again.
    #[serde(default)]
    pub acknowledged: bool,
}

/// Whether graft wrote this text itself (its replies and status comment
/// carry hidden markers), whoever the forge says the author is.
pub fn written_by_graft(body: &str) -> bool {
    body.contains(REPLY_MARKER) || body.contains(STATUS_MARKER)
}

/// The repository path as graft keys what it remembers of comments: with
/// the integration, since the same path and comment id can exist on two
/// GitLab instances.
fn scoped_repo(path: &str, integration: Option<i64>) -> String {
    match integration {
        Some(id) => format!("{path}#integration-{id}"),
        None => path.to_string(),
    }
}

fn hash(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..8])
}

/// The full SHA-256 of a comment's text, to compare it with the forge's.
pub fn text_hash(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

/// At most this many command runs per person and PR per minute: room for
/// one full comment and some more ([`super::parse::MAX_COMMANDS`] lines and
/// the line saying the rest did not run).
pub const RATE_LIMIT: RateLimit = RateLimit {
    max_runs: 20,
    window_ms: 60_000,
};
const _: () = assert!(RATE_LIMIT.max_runs > super::parse::MAX_COMMANDS as i64 + 1);

/// How a person is keyed in `command_runs`: the login, or for a GitLab
/// editor the hook names by id only, the id.
pub fn person_key(actor: &Actor) -> String {
    match (actor.login.is_empty(), actor.id) {
        (true, Some(id)) => format!("user#{id}"),
        _ => actor.login.clone(),
    }
}

/// Which version of a comment: its text, and for an edit the text before
/// it and when the edit was made (the forge's `updated_at`).
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    pub body: &'a str,
    pub previous: Option<&'a str>,
    pub edited_at: Option<&'a str>,
}

/// The dedupe key of the command line at `index` of a comment version.
/// The same delivery twice gives the same key; an edit back to an earlier
/// text (`/graft pause` → `/graft resume` → `/graft pause`, and round
/// again) does not, since each edit has its own time.
pub fn dedupe_key(
    provider: Provider,
    repo: &str,
    comment_id: i64,
    index: usize,
    version: Version<'_>,
) -> String {
    let transition = match version.previous {
        Some(previous) => format!(
            "{}>{}@{}",
            hash(previous),
            hash(version.body),
            hash(version.edited_at.unwrap_or_default())
        ),
        None => hash(version.body),
    };
    format!(
        "{}:{repo}:{comment_id}:{index}:{transition}",
        provider.as_str()
    )
}

/// Which command lines of `current` run: all of them for a new comment,
/// the new ones for an edit (compared with the text before the edit).
pub fn to_run(
    action: CommentAction,
    current: &[Invocation],
    previous: Option<&str>,
    prefix: &str,
) -> Vec<usize> {
    match (action, previous) {
        (CommentAction::Edited, Some(before)) => new_since(current, &parse(before, prefix), prefix),
        _ => (0..current.len()).collect(),
    }
}

/// Handles a comment event: records its new commands and queues the job
/// that runs them. Bots, graft itself, comments on plain issues and on PRs
/// graft does not own are ignored (nothing is stored for them), and so is
/// a comment that would take its author over [`RATE_LIMIT`].
pub async fn on_comment(
    state: &AppState,
    provider: Provider,
    integration: Option<i64>,
    comment: &CommentEvent,
) -> Result<(), JobError> {
    if !comment.on_pull_request {
        return Ok(());
    }
    let actor = comment.actor();
    if comment.author.is_bot || actor.is_bot || written_by_graft(&comment.body) {
        debug!(author = %comment.author.login, "comment by a bot or by graft: not read for commands");
        return Ok(());
    }
    let prefix = state.commands.prefix.clone();
    let current = parse(&comment.body, &prefix);
    let store = &state.store;
    // Comment ids are per forge instance: what graft remembers of a comment
    // is kept under the integration it came through.
    let repo = scoped_repo(&comment.repo.path, integration);
    if current.is_empty() {
        // No commands (left): if graft saw this comment before, a command
        // written back in later is new. (Only a row that exists changes, so
        // GitLab edits that come without an action are covered too.)
        store
            .update_seen_comment_text(
                provider.as_str(),
                &repo,
                comment.comment_id,
                &comment.body,
                now_ms(),
            )
            .await
            .map_err(|e| JobError::retry(format!("database: {e}")))?;
        return Ok(());
    }
    let project = store
        .project_by_pull_request(
            &crate::store::projects::RepoKey {
                provider: provider.as_str(),
                integration_id: integration,
                repo: &comment.repo.path,
            },
            comment.number,
        )
        .await
        .map_err(|e| JobError::retry(format!("database: {e}")))?;
    let Some(project) = project else {
        // Not graft's PR: no job and no rows, however many such comments.
        debug!(
            number = comment.number,
            "commands on a PR graft does not own: ignored"
        );
        return Ok(());
    };
    let person = person_key(actor);
    let key = CommentKey {
        provider: provider.as_str(),
        repo: &repo,
        number: comment.number,
        comment_id: comment.comment_id,
        author: &person,
    };
    // A GitLab note is re-read by the job before anything shows on it:
    // the hook may be forged by someone who holds the secret.
    let acknowledge_now = provider == Provider::Github;
    let chosen = std::sync::Mutex::new(Vec::new());
    let plan = |stored: Option<String>| {
        // GitHub sends the text before an edit; for GitLab the last text
        // graft saw stands in. A comment graft has seen before is an edit
        // whatever the event says (GitLab before 16.11 sends no action).
        let action = match (&comment.previous_body, &stored) {
            (None, Some(_)) => CommentAction::Edited,
            _ => comment.action,
        };
        let previous = comment.previous_body.clone().or(stored);
        let previous = previous.filter(|_| action == CommentAction::Edited);
        let indexes = to_run(action, &current, previous.as_deref(), &prefix);
        let runs = indexes
            .iter()
            .map(|&i| NewCommandRun {
                dedupe_key: dedupe_key(
                    provider,
                    &repo,
                    comment.comment_id,
                    i,
                    Version {
                        body: &comment.body,
                        previous: previous.as_deref(),
                        edited_at: comment.updated_at.as_deref(),
                    },
                ),
                command: current[i].text.clone(),
            })
            .collect();
        *chosen.lock().unwrap_or_else(|e| e.into_inner()) = indexes;
        runs
    };
    let make_job = |accepted: &[(usize, i64)]| {
        let chosen = chosen.lock().unwrap_or_else(|e| e.into_inner());
        let commands = accepted
            .iter()
            .map(|&(position, run_id)| {
                let invocation = &current[chosen[position]];
                QueuedCommand {
                    run_id,
                    text: invocation.text.clone(),
                    result: invocation.result.clone(),
                }
            })
            .collect();
        let payload = CommandJob {
            provider,
            integration_id: integration,
            repo: comment.repo.path.clone(),
            number: comment.number,
            comment_id: comment.comment_id,
            author: actor.clone(),
            written_by: comment.editor.as_ref().map(|_| comment.author.clone()),
            body_hash: Some(text_hash(&comment.body)),
            repo_id: comment.repo.id,
            prefix: prefix.clone(),
            commands,
            acknowledged: acknowledge_now,
        };
        NewJob {
            project_id: Some(project.id),
            max_attempts: 5,
            ..NewJob::new(
                JOB_KIND,
                serde_json::to_value(&payload).unwrap_or_default(),
                now_ms(),
            )
        }
    };
    let queued = store
        .accept_commands(&key, &comment.body, plan, make_job, RATE_LIMIT, now_ms())
        .await
        .map_err(|e| JobError::retry(format!("database: {e}")))?;
    match queued {
        Accepted::Queued(job) => {
            info!(job, comment = comment.comment_id, author = %person, "slash commands queued");
            // 👀 before the job may start, so it never lands after the
            // job's final reaction.
            if acknowledge_now {
                acknowledge(state, &project, comment).await;
            }
            state.job_wake.notify_waiters();
        }
        Accepted::NothingNew => debug!(
            comment = comment.comment_id,
            "no new commands in the comment"
        ),
        Accepted::RateLimited { recent } => warn!(
            comment = comment.comment_id,
            author = %person,
            number = comment.number,
            recent,
            limit = RATE_LIMIT.max_runs,
            "slash commands ignored: too many runs by this person on this PR in the last minute"
        ),
    }
    Ok(())
}

/// 👀 on receipt, before the command job runs (it may wait behind a sync
/// of the same project). A courtesy: failures are logged only.
async fn acknowledge(
    state: &AppState,
    project: &crate::store::projects::Project,
    comment: &CommentEvent,
) {
    let reacted = async {
        let client = crate::sync::publish::client_for(state, project).await?;
        client
            .react(
                comment.number,
                comment.comment_id,
                crate::forge::Reaction::Eyes,
            )
            .await?;
        Ok::<_, crate::sync::errors::SyncError>(())
    }
    .await;
    if let Err(e) = reacted {
        tracing::warn!(comment = comment.comment_id, error = %e, "could not acknowledge the comment");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graft_never_reads_its_own_comments() {
        assert!(written_by_graft(&format!("{REPLY_MARKER}\n/graft sync")));
        assert!(written_by_graft(&format!(
            "{STATUS_MARKER}\n| `/graft sync` |"
        )));
        assert!(!written_by_graft("/graft sync"));
    }

    #[test]
    fn keys_change_with_the_text_the_position_and_the_edit() {
        let key = |provider, index, previous, body, edited_at| {
            let version = Version {
                body,
                previous,
                edited_at,
            };
            dedupe_key(provider, "o/r", 5, index, version)
        };
        let a = key(Provider::Github, 0, None, "/graft sync", None);
        assert_eq!(a, key(Provider::Github, 0, None, "/graft sync", None));
        assert_ne!(a, key(Provider::Github, 1, None, "/graft sync", None));
        assert_ne!(a, key(Provider::Github, 0, None, "/graft sync\n", None));
        assert_ne!(a, key(Provider::Gitlab, 0, None, "/graft sync", None));
        // The same text reached again by an edit is a new run; the same
        // edit delivered twice is not; the same edit made again later is.
        let t1 = Some("2026-12-01T10:00:00Z");
        let back = key(
            Provider::Github,
            0,
            Some("/graft status"),
            "/graft sync",
            t1,
        );
        assert_ne!(a, back);
        assert_eq!(
            back,
            key(
                Provider::Github,
                0,
                Some("/graft status"),
                "/graft sync",
                t1
            )
        );
        let later = Some("2026-12-01T10:00:07Z");
        let again = key(
            Provider::Github,
            0,
            Some("/graft status"),
            "/graft sync",
            later,
        );
        assert_ne!(back, again);
    }

    #[test]
    fn edits_without_a_previous_text_run_everything() {
        let current = parse("/graft status\n/graft sync", "/graft");
        assert_eq!(
            to_run(CommentAction::Edited, &current, None, "/graft"),
            vec![0, 1]
        );
        assert_eq!(
            to_run(
                CommentAction::Edited,
                &current,
                Some("/graft sync"),
                "/graft"
            ),
            vec![0]
        );
        assert_eq!(
            to_run(
                CommentAction::Created,
                &current,
                Some("/graft sync"),
                "/graft"
            ),
            vec![0, 1]
        );
    }
}
