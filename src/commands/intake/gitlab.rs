//! GitLab notes: a note hook queues a job that checks the note first
//! ([`on_note`]), and that job, once GitLab confirmed the note, picks the
//! command lines to run ([`claim_note`]). Hooks are believed only after
//! that check, so nothing here remembers a note's text from a hook.

use std::sync::OnceLock;

use tracing::{debug, info, warn};

use crate::commands::verify;
use crate::context::Context;
use crate::events::{CommentAction, CommentEvent, Provider};
use crate::forge::gitlab::StoredNote;
use crate::jobs::{Job, JobError};
use crate::slash::parse::{Invocation, parse};
use crate::store::commands::{Accepted, Claimed, CommandRun, CommentKey, NewCommandRun, RateLimit};
use crate::store::jobs::NewJob;
use crate::store::now_ms;

use super::{
    CommandJob, QueuedCommand, RATE_LIMIT, database, hash, owning_project, payload, person_key,
    queued_commands, scoped_repo, text_hash, to_run,
};

/// At most this many GitLab command jobs per merge request (graft owns
/// one per project) per minute, whoever the hooks claim wrote the notes:
/// hooks are checked only in the job, so a holder of the webhook secret
/// could otherwise queue jobs (and GitLab API calls) without end.
pub const NOTE_JOBS: RateLimit = RateLimit {
    max_runs: 12,
    window_ms: 60_000,
};

/// A GitLab note graft has no earlier text of runs commands only if it was
/// written within this many days. What graft remembers of a note may be
/// pruned after that, so an old note, replayed, runs nothing again.
pub const NOTE_MAX_AGE_DAYS: u64 = 7;

/// The dedupe key of the command line at `index` of a verified GitLab
/// note version (`version`: GitLab's `updated_at` for it): each version
/// of a note runs at most once, whatever hooks arrive.
pub fn version_key(repo: &str, note: i64, index: usize, version: &str) -> String {
    format!("gitlab:{repo}:{note}:{index}@{}", hash(version))
}

/// A GitLab note hook: believed only once the job has re-read the note,
/// so nothing is remembered from it here. A job is queued when the hook
/// would have new commands (compared with the last text graft verified),
/// or when a note that had commands now has none (so the job can verify
/// that and a command written back later counts as new), at most
/// [`NOTE_JOBS`] per merge request and minute.
pub(super) async fn on_note(
    ctx: &Context,
    integration: Option<i64>,
    comment: &CommentEvent,
) -> Result<(), JobError> {
    let provider = Provider::Gitlab;
    let prefix = ctx.commands.prefix.clone();
    let store = &ctx.store;
    let repo = scoped_repo(&comment.repo.path, integration);
    let current = parse(&comment.body, &prefix);
    let remembered = store
        .comment_text(provider.as_str(), &repo, comment.comment_id)
        .await
        .map_err(database)?;
    let worth_checking = match &remembered {
        None => !current.is_empty(),
        Some(before) if current.is_empty() => !parse(before, &prefix).is_empty(),
        Some(before) => !to_run(CommentAction::Edited, &current, Some(before), &prefix).is_empty(),
    };
    if !worth_checking {
        debug!(comment = comment.comment_id, "no new commands in the note");
        return Ok(());
    }
    let Some(project) = owning_project(ctx, provider, integration, comment).await? else {
        return Ok(());
    };
    let payload = CommandJob {
        version: comment.updated_at.clone(),
        ..payload(provider, integration, comment, &prefix)
    };
    // The same hook again (any delivery id) while its job waits: one job.
    let same = text_hash(&format!(
        "{repo}\n{}\n{}\n{}",
        comment.comment_id,
        comment.updated_at.as_deref().unwrap_or_default(),
        comment.body
    ));
    let now = now_ms();
    let job = NewJob {
        max_attempts: 5,
        dedupe_key: Some(format!("command:gitlab:{same}")),
        ..Job::Command(payload).row(Some(project.id), now)
    };
    let queued = ctx
        .jobs
        .submit(
            store.queue_limited(&job, project.id, NOTE_JOBS, now),
            |queued| matches!(queued, Accepted::Queued(_)),
        )
        .await
        .map_err(database)?;
    match queued {
        Accepted::Queued(job) => {
            info!(
                job,
                note = comment.comment_id,
                "GitLab note queued for checking"
            );
        }
        Accepted::NothingNew => debug!(
            note = comment.comment_id,
            "the same note hook is already queued"
        ),
        Accepted::RateLimited { recent } => warn!(
            note = comment.comment_id,
            number = comment.number.get(),
            recent,
            limit = NOTE_JOBS.max_runs,
            "GitLab note ignored: too many command jobs on this merge request in the last minute"
        ),
    }
    Ok(())
}

/// In the `command` job of a GitLab note, once [`crate::commands::verify`] found the
/// note as GitLab stores it to be the hook's version: remembers its text
/// and picks the command lines to run (new since the text graft verified
/// before; each version at most once), or finds those this job picked
/// before a retry. Fills `job.commands`; `false` when nothing is to run.
pub async fn claim_note(
    ctx: &Context,
    job: &mut CommandJob,
    job_id: i64,
    note: &StoredNote,
    now: i64,
) -> Result<bool, JobError> {
    let prefix = job.prefix.clone();
    let current = parse(&note.body, &prefix);
    let repo = scoped_repo(&job.repo, job.integration_id);
    let version = note.updated_at.clone().unwrap_or_default();
    let recent = note
        .created_at
        .as_deref()
        .and_then(verify::gitlab_seconds)
        .is_some_and(|written| {
            let age = (now / 1000).saturating_sub(written);
            age <= i64::try_from(NOTE_MAX_AGE_DAYS * 86_400).unwrap_or(i64::MAX)
        });
    let person = person_key(&job.author);
    let key = CommentKey {
        provider: Provider::Gitlab.as_str(),
        repo: &repo,
        number: job.number,
        comment_id: job.comment_id,
        author: &person,
    };
    let chosen = OnceLock::new();
    let plan = |remembered: Option<String>| {
        let indexes = match remembered.as_deref() {
            Some(before) => to_run(CommentAction::Edited, &current, Some(before), &prefix),
            // Never seen: all of a recent note; nothing of an old one
            // (graft may have forgotten that it ran it).
            None if recent => (0..current.len()).collect(),
            None => Vec::new(),
        };
        let runs = indexes
            .iter()
            .map(|&i| NewCommandRun {
                dedupe_key: version_key(&repo, job.comment_id, i, &version),
                command: current[i].text.clone(),
            })
            .collect();
        let _ = chosen.set(indexes);
        runs
    };
    let claimed = ctx
        .store
        .accept_verified(&key, &note.body, plan, job_id, RATE_LIMIT, now)
        .await
        .map_err(database)?;
    let commands: Vec<QueuedCommand> = match claimed {
        Claimed::Runs(accepted) => {
            let chosen = chosen.get().map(Vec::as_slice).unwrap_or_default();
            queued_commands(&accepted, chosen, &current)
        }
        Claimed::Resumed(rows) => resumed(&rows, &current),
        Claimed::NothingNew => Vec::new(),
        Claimed::RateLimited { recent } => {
            warn!(
                note = job.comment_id,
                author = %person,
                recent,
                limit = RATE_LIMIT.max_runs,
                "slash commands ignored: too many runs by this person on this MR in the last minute"
            );
            Vec::new()
        }
    };
    job.commands = commands;
    Ok(!job.commands.is_empty())
}

/// The commands a retried job recorded, matched in order to the lines of
/// the (unchanged, verified) note they came from.
fn resumed(rows: &[CommandRun], current: &[Invocation]) -> Vec<QueuedCommand> {
    let mut from = 0;
    rows.iter()
        .filter_map(|row| {
            let at = from + current[from..].iter().position(|i| i.text == row.command)?;
            from = at + 1;
            Some(QueuedCommand {
                run_id: row.id,
                text: row.command.clone(),
                result: current[at].result.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, command: &str) -> CommandRun {
        CommandRun {
            id,
            command: command.into(),
            outcome: None,
            replied: false,
        }
    }

    #[test]
    fn a_retry_finds_its_runs_in_the_note_s_lines_in_order() {
        let current = parse(
            "/graft sync
/graft status
/graft sync",
            "/graft",
        );
        // The second `sync` run matches the third line, not the first again.
        let rows = [row(4, "/graft status"), row(5, "/graft sync")];
        let queued = resumed(&rows, &current);
        let found: Vec<_> = queued.iter().map(|q| (q.run_id, q.text.as_str())).collect();
        assert_eq!(found, vec![(4, "/graft status"), (5, "/graft sync")]);
        // A recorded run the note no longer has is left out.
        assert!(resumed(&[row(6, "/graft pause")], &current).is_empty());
    }
}
