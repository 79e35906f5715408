//! From a comment webhook to a queued `command` job. Runs inside the
//! webhook job, so it only decides and records; the job does the rest.
//! A GitHub comment's commands are recorded here; a GitLab note is
//! checked with GitLab first (`gitlab`).

use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::events::{Actor, CommentAction, CommentEvent, Provider};
use crate::forge::STATUS_MARKER;
use crate::ids::ProjectId;
use crate::jobs::{Job, JobError};
use crate::slash::parse::{Invocation, MAX_COMMANDS, new_since, parse};
use crate::store::commands::{Accepted, CommentKey, NewCommandRun, RateLimit};
use crate::store::jobs::NewJob;
use crate::store::now_ms;

use super::REPLY_MARKER;

mod gitlab;

pub use crate::jobs::job::{CommandJob, QueuedCommand};
pub use gitlab::{NOTE_JOBS, NOTE_MAX_AGE_DAYS, claim_note, version_key};

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
/// one full comment and some more ([`MAX_COMMANDS`] lines and the line
/// saying the rest did not run).
pub const RATE_LIMIT: RateLimit = RateLimit {
    max_runs: 20,
    window_ms: 60_000,
};
const _: () = assert!(RATE_LIMIT.max_runs > MAX_COMMANDS as i64 + 1);

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
/// that runs them (a GitLab note: queues the job that checks it first).
/// Bots, graft itself, comments on plain issues and on PRs graft does not
/// own are ignored (nothing is stored for them), and so is a comment that
/// would take its author over [`RATE_LIMIT`].
pub async fn on_comment(
    ctx: &Context,
    provider: Provider,
    integration: Option<i64>,
    comment: &CommentEvent,
) -> Result<(), JobError> {
    if !read_for_commands(comment) {
        return Ok(());
    }
    if provider == Provider::Gitlab {
        return gitlab::on_note(ctx, integration, comment).await;
    }
    let prefix = ctx.commands.prefix.clone();
    let current = parse(&comment.body, &prefix);
    // Comment ids are per forge instance: what graft remembers of a comment
    // is kept under the integration it came through.
    let repo = scoped_repo(&comment.repo.path, integration);
    if current.is_empty() {
        return remember_text(ctx, provider, &repo, comment).await;
    }
    let Some(project) = owning_project(ctx, provider, integration, comment).await? else {
        return Ok(());
    };
    let person = person_key(comment.actor());
    let key = CommentKey {
        provider: provider.as_str(),
        repo: &repo,
        number: comment.number,
        comment_id: comment.comment_id,
        author: &person,
    };
    let reading = Reading {
        provider,
        integration,
        repo: &repo,
        comment,
        current: &current,
        prefix: &prefix,
    };
    // The lines `runs` picked, for `job` (the store calls one, then the other).
    let chosen = OnceLock::new();
    let runs = |stored| {
        let (indexes, runs) = reading.runs(stored);
        let _ = chosen.set(indexes);
        runs
    };
    let job = |accepted: &[(usize, i64)]| {
        let chosen = chosen.get().map(Vec::as_slice).unwrap_or_default();
        reading.job(queued_commands(accepted, chosen, &current), project.id)
    };
    let queued = ctx
        .store
        .accept_commands(&key, &comment.body, runs, job, RATE_LIMIT, now_ms())
        .await
        .map_err(database)?;
    match queued {
        Accepted::Queued(job) => {
            info!(job, comment = comment.comment_id, author = %person, "slash commands queued");
            // 👀 before the job may start, so it never lands after the
            // job's final reaction: the workers are woken only now.
            acknowledge(ctx, &project, comment).await;
            ctx.jobs.wake();
        }
        Accepted::NothingNew => debug!(
            comment = comment.comment_id,
            "no new commands in the comment"
        ),
        Accepted::RateLimited { recent } => warn!(
            comment = comment.comment_id,
            author = %person,
            number = comment.number.get(),
            recent,
            limit = RATE_LIMIT.max_runs,
            "slash commands ignored: too many runs by this person on this PR in the last minute"
        ),
    }
    Ok(())
}

fn database(error: crate::store::StoreError) -> JobError {
    JobError::retry(format!("database: {error}"))
}

/// Whether a comment may hold commands: on a PR/MR, by a person (not a
/// bot), and not written by graft.
fn read_for_commands(comment: &CommentEvent) -> bool {
    if !comment.on_pull_request {
        return false;
    }
    let by_machine = comment.author.is_bot || comment.actor().is_bot;
    if by_machine || written_by_graft(&comment.body) {
        debug!(author = %comment.author.login, "comment by a bot or by graft: not read for commands");
        return false;
    }
    true
}

/// A comment without commands (left): if graft saw it before, a command
/// written back in later is new. (Only a row that exists changes, so
/// GitLab edits that come without an action are covered too.)
async fn remember_text(
    ctx: &Context,
    provider: Provider,
    repo: &str,
    comment: &CommentEvent,
) -> Result<(), JobError> {
    ctx.store
        .update_seen_comment_text(
            provider.as_str(),
            repo,
            comment.comment_id,
            &comment.body,
            now_ms(),
        )
        .await
        .map_err(database)
}

/// A GitHub comment with commands, being read into runs and a job.
struct Reading<'a> {
    provider: Provider,
    integration: Option<i64>,
    /// [`scoped_repo`].
    repo: &'a str,
    comment: &'a CommentEvent,
    current: &'a [Invocation],
    prefix: &'a str,
}

impl Reading<'_> {
    /// The command lines to run (their indexes in `current`) and their
    /// rows. `stored`: the last text graft saw of the comment.
    fn runs(&self, stored: Option<String>) -> (Vec<usize>, Vec<NewCommandRun>) {
        let comment = self.comment;
        // GitHub sends the text before an edit; when it does not, the last
        // text graft saw stands in. A comment graft has seen before is an
        // edit whatever the event says.
        let action = match (&comment.previous_body, &stored) {
            (None, Some(_)) => CommentAction::Edited,
            _ => comment.action,
        };
        let previous = comment.previous_body.clone().or(stored);
        let previous = previous.filter(|_| action == CommentAction::Edited);
        let indexes = to_run(action, self.current, previous.as_deref(), self.prefix);
        let version = Version {
            body: &comment.body,
            previous: previous.as_deref(),
            edited_at: comment.updated_at.as_deref(),
        };
        let runs = indexes
            .iter()
            .map(|&i| NewCommandRun {
                dedupe_key: dedupe_key(self.provider, self.repo, comment.comment_id, i, version),
                command: self.current[i].text.clone(),
            })
            .collect();
        (indexes, runs)
    }

    /// The `command` job that runs `commands` for `project`.
    fn job(&self, commands: Vec<QueuedCommand>, project: ProjectId) -> NewJob {
        let payload = CommandJob {
            commands,
            // GitHub signs its deliveries: 👀 right away.
            acknowledged: true,
            ..payload(self.provider, self.integration, self.comment, self.prefix)
        };
        NewJob {
            max_attempts: 5,
            ..Job::Command(payload).row(Some(project), now_ms())
        }
    }
}

/// A `command` job's payload for `comment`, with no commands yet.
fn payload(
    provider: Provider,
    integration: Option<i64>,
    comment: &CommentEvent,
    prefix: &str,
) -> CommandJob {
    CommandJob {
        provider,
        integration_id: integration,
        repo: comment.repo.path.clone(),
        number: comment.number,
        comment_id: comment.comment_id,
        author: comment.actor().clone(),
        written_by: comment.editor.as_ref().map(|_| comment.author.clone()),
        body_hash: Some(text_hash(&comment.body)),
        repo_id: comment.repo.id,
        version: None,
        prefix: prefix.to_string(),
        commands: Vec::new(),
        acknowledged: false,
    }
}

/// The commands of the runs the store accepted: each pairs a position in
/// `chosen` (the indexes of the lines picked in `current`) with its run id.
fn queued_commands(
    accepted: &[(usize, i64)],
    chosen: &[usize],
    current: &[Invocation],
) -> Vec<QueuedCommand> {
    accepted
        .iter()
        .filter_map(|&(position, run_id)| {
            let invocation = current.get(*chosen.get(position)?)?;
            Some(QueuedCommand {
                run_id,
                text: invocation.text.clone(),
                result: invocation.result.clone(),
            })
        })
        .collect()
}

/// The project whose PR/MR the comment is on; `None` (logged) when graft
/// does not own it: such comments create no job and no rows, however many.
async fn owning_project(
    ctx: &Context,
    provider: Provider,
    integration: Option<i64>,
    comment: &CommentEvent,
) -> Result<Option<crate::store::projects::Project>, JobError> {
    let project = ctx
        .store
        .project_by_pull_request(
            &crate::store::projects::RepoKey {
                provider: provider.as_str(),
                integration_id: integration,
                repo: &comment.repo.path,
            },
            comment.number,
        )
        .await
        .map_err(database)?;
    if project.is_none() {
        debug!(
            number = comment.number.get(),
            "commands on a pull/merge request graft does not own: ignored"
        );
    }
    Ok(project)
}

/// 👀 on receipt, before the command job runs (it may wait behind a sync
/// of the same project). A courtesy: failures are logged only.
async fn acknowledge(
    ctx: &Context,
    project: &crate::store::projects::Project,
    comment: &CommentEvent,
) {
    let reacted = async {
        let client = crate::sync::publish::client_for(ctx, project).await?;
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

    fn comment(body: &str) -> CommentEvent {
        CommentEvent {
            repo: crate::events::RepoRef {
                path: "o/r".into(),
                id: Some(1),
            },
            action: CommentAction::Created,
            number: crate::ids::PrNumber(3),
            on_pull_request: true,
            comment_id: 5,
            body: body.into(),
            previous_body: None,
            updated_at: None,
            author: Actor {
                login: "ann".into(),
                id: Some(2),
                is_bot: false,
            },
            editor: None,
        }
    }

    #[test]
    fn only_people_s_comments_on_prs_are_read() {
        assert!(read_for_commands(&comment("/graft sync")));
        let mut on_issue = comment("/graft sync");
        on_issue.on_pull_request = false;
        assert!(!read_for_commands(&on_issue));
        let mut by_bot = comment("/graft sync");
        by_bot.author.is_bot = true;
        assert!(!read_for_commands(&by_bot));
        let mut edited_by_bot = comment("/graft sync");
        edited_by_bot.editor = Some(Actor {
            login: "ci[bot]".into(),
            id: Some(9),
            is_bot: true,
        });
        assert!(!read_for_commands(&edited_by_bot));
        assert!(!read_for_commands(&comment(&format!(
            "{REPLY_MARKER}\n/graft sync"
        ))));
    }

    #[test]
    fn a_comment_graft_saw_before_is_read_as_an_edit() {
        let event = comment("/graft status\n/graft sync");
        let current = parse(&event.body, "/graft");
        let reading = Reading {
            provider: Provider::Github,
            integration: None,
            repo: "o/r",
            comment: &event,
            current: &current,
            prefix: "/graft",
        };
        let (fresh, runs) = reading.runs(None);
        assert_eq!(fresh, vec![0, 1]);
        assert_eq!(runs[1].command, "/graft sync");
        // The "created" event arrives again after graft saw a version of
        // the comment: only the line that is new since then runs.
        let (again, runs) = reading.runs(Some("/graft sync".into()));
        assert_eq!(again, vec![0]);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].command, "/graft status");
        assert_ne!(runs[0].dedupe_key, reading.runs(None).1[0].dedupe_key);
    }

    #[test]
    fn accepted_runs_become_the_lines_they_were_picked_from() {
        let current = parse("/graft status\n/graft snyc\n/graft sync", "/graft");
        let queued = queued_commands(&[(0, 11), (1, 12)], &[1, 2], &current);
        let texts: Vec<_> = queued.iter().map(|q| (q.run_id, q.text.as_str())).collect();
        assert_eq!(texts, vec![(11, "/graft snyc"), (12, "/graft sync")]);
        assert!(queued[0].result.is_err() && queued[1].result.is_ok());
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
