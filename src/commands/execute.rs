//! The `command` job: acknowledge (👀), authorize, dispatch to the
//! command's handler ([`super::handlers`]), answer, react (👍 or 😕). Runs exclusively per project, like syncs. Each command's
//! outcome is stored as soon as it is known, so a job that is retried
//! (the forge was down when replying) neither repeats a command nor loses
//! what it did.

use tracing::{info, warn};

use crate::context::Context;
use crate::events::{Actor, Provider};
use crate::forge::{ForgeKind, Permission, Reaction, RepoClient, UserRef};
use crate::ids::ProjectId;
use crate::jobs::JobError;
use crate::slash::Command;
use crate::store::audit::NewEvent;
use crate::store::jobs::JobRow;
use crate::store::now_ms;
use crate::store::projects::Project;
use crate::sync::errors::SyncError;
use crate::sync::publish;

use super::handlers::{self, Call};
use super::intake::{self, CommandJob, QueuedCommand};
use super::reply::{self, Forge, Outcome, Verdict};
use super::verify::{self, Rejection};

fn store_error(error: crate::store::StoreError) -> JobError {
    JobError::retry(format!("database: {error}"))
}

fn forge_of(client: &RepoClient) -> Forge {
    match client.forge() {
        ForgeKind::Github => Forge::Github,
        ForgeKind::Gitlab => Forge::Gitlab,
    }
}

/// A client for the repository the comment is in: the project's, or for
/// a PR graft does not own, the forge's (GitLab: the integration the
/// comment came through).
async fn client_for(
    ctx: &Context,
    job: &CommandJob,
    project: Option<&Project>,
) -> Result<RepoClient, SyncError> {
    if let Some(project) = project {
        return publish::client_for(ctx, project).await;
    }
    let client = match job.provider {
        Provider::Github => ctx.forges.github(&job.repo).await?,
        Provider::Gitlab => ctx.forges.gitlab(job.integration_id, &job.repo).await?,
    };
    Ok(client)
}

/// Reactions are a courtesy: a failure is logged, never fatal.
async fn react(client: &RepoClient, job: &CommandJob, reaction: Reaction) {
    if let Err(e) = client.react(job.number, job.comment_id, reaction).await {
        warn!(comment = job.comment_id, error = %e, "could not react to the comment");
    }
}

/// The final reaction: 👍 when every command did its work, else 😕. Another
/// run on this comment (before an edit, or one retried after it) may have
/// ended the other way; graft takes its own opposite reaction back.
async fn verdict(client: &RepoClient, job: &CommandJob, done: bool) {
    let (verdict, stale) = if done {
        (Reaction::ThumbsUp, Reaction::Confused)
    } else {
        (Reaction::Confused, Reaction::ThumbsUp)
    };
    if let Err(e) = client.unreact(job.number, job.comment_id, stale).await {
        warn!(comment = job.comment_id, error = %e, "could not take back an earlier reaction");
    }
    react(client, job, verdict).await;
}

/// The note did not check out: nothing runs and nothing shows on it; the
/// log and (for a project graft owns) the audit log say why.
async fn reject(
    ctx: &Context,
    job: &CommandJob,
    project: Option<&Project>,
    ids: &[i64],
    rejection: &Rejection,
) -> Result<(), JobError> {
    let store = &ctx.store;
    warn!(
        comment = job.comment_id,
        number = job.number.get(),
        named = %job.author.login,
        reason = %rejection,
        "slash commands not run: the webhook does not match the forge"
    );
    let outcome = Outcome {
        verdict: Verdict::Refused,
        reply: false,
        ..Outcome::done("", rejection.to_string())
    };
    let json = serde_json::to_string(&outcome).unwrap_or_default();
    for id in ids {
        store
            .finish_command_run(*id, &json, now_ms())
            .await
            .map_err(store_error)?;
    }
    store
        .mark_command_runs_replied(ids)
        .await
        .map_err(store_error)?;
    if let Some(project) = project {
        // One entry a minute per project, counting the rest: forged hooks
        // must not grow the audit log without end.
        store
            .record_rejection(
                project.id,
                project.pull_request_url.as_deref(),
                &format!(
                    "commands in note {} on !{} not run: {rejection}",
                    job.comment_id, job.number
                ),
                now_ms(),
            )
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// The command rows of a job: those its payload names (GitHub), or for a
/// GitLab note those the job recorded once it verified the note.
async fn run_ids(
    ctx: &Context,
    job: &JobRow,
    command_job: &CommandJob,
) -> Result<Vec<i64>, JobError> {
    if command_job.provider == Provider::Gitlab {
        return ctx
            .store
            .command_run_ids_of_job(job.id)
            .await
            .map_err(store_error);
    }
    Ok(command_job.commands.iter().map(|c| c.run_id).collect())
}

pub async fn run(ctx: &Context, job: &JobRow, mut command_job: CommandJob) -> Result<(), JobError> {
    let store = &ctx.store;
    let mut ids = run_ids(ctx, job, &command_job).await?;
    let rows = store.command_runs(&ids).await.map_err(store_error)?;
    if !rows.is_empty() && rows.iter().all(|r| r.replied) {
        return Ok(()); // answered before a crash; nothing left to do
    }
    let project = match job.project_id {
        Some(id) => store.project(id).await.map_err(store_error)?,
        None => None,
    };
    // The project may have moved on to another PR since the comment.
    let project = project.filter(|p| p.pull_request_number == Some(command_job.number));
    let client = client_for(ctx, &command_job, project.as_ref())
        .await
        .map_err(SyncError::into_job_error)?;
    // Believe the forge, not the webhook, before anything runs or shows.
    let verified = verify::verify(&client, &command_job)
        .await
        .map_err(|e| SyncError::from(e).into_job_error())?;
    let (also, note) = match verified {
        Ok(verified) => {
            command_job.author = verified.actor;
            (verified.also, verified.note)
        }
        Err(rejection) => {
            return reject(ctx, &command_job, project.as_ref(), &ids, &rejection).await;
        }
    };
    // A GitLab note's commands are picked only now, from the verified text.
    let rows = match (command_job.provider, note) {
        (Provider::Gitlab, Some(note)) => {
            let any = intake::claim_note(ctx, &mut command_job, job.id, &note, now_ms()).await?;
            if !any {
                return Ok(());
            }
            ids = command_job.commands.iter().map(|c| c.run_id).collect();
            let rows = store.command_runs(&ids).await.map_err(store_error)?;
            if rows.iter().all(|r| r.replied) {
                return Ok(());
            }
            rows
        }
        (Provider::Gitlab, None) => {
            let rejection = Rejection::Unverifiable;
            return reject(ctx, &command_job, project.as_ref(), &ids, &rejection).await;
        }
        (Provider::Github, _) => rows,
    };
    let mut people = vec![command_job.author.clone()];
    people.extend(also);
    let prefix = command_job.prefix.clone();
    let Some(project) = project else {
        let body = reply::not_managed(&prefix, forge_of(&client));
        client
            .reply(command_job.number, &body)
            .await
            .map_err(|e| SyncError::from(e).into_job_error())?;
        store
            .mark_command_runs_replied(&ids)
            .await
            .map_err(store_error)?;
        return Ok(());
    };
    if !command_job.acknowledged && rows.iter().all(|r| r.outcome.is_none()) {
        react(&client, &command_job, Reaction::Eyes).await;
    }
    let mut permission: Option<(Permission, String)> = None;
    let mut outcomes = Vec::with_capacity(command_job.commands.len());
    for queued in &command_job.commands {
        let stored = rows
            .iter()
            .find(|r| r.id == queued.run_id)
            .and_then(|r| r.outcome.as_deref())
            .and_then(|o| serde_json::from_str::<Outcome>(o).ok());
        if let Some(outcome) = stored {
            outcomes.push(outcome);
            continue;
        }
        let outcome = one(
            ctx,
            &client,
            &project,
            &command_job,
            queued,
            &people,
            &mut permission,
        )
        .await?;
        let json = serde_json::to_string(&outcome).unwrap_or_default();
        store
            .finish_command_run(queued.run_id, &json, now_ms())
            .await
            .map_err(store_error)?;
        outcomes.push(outcome);
    }
    if let Some(body) = reply::render(&outcomes, &prefix) {
        client
            .reply(command_job.number, &body)
            .await
            .map_err(|e| SyncError::from(e).into_job_error())?;
    }
    store
        .mark_command_runs_replied(&ids)
        .await
        .map_err(store_error)?;
    let done = reply::all_done(&outcomes);
    verdict(&client, &command_job, done).await;
    info!(
        project = project.id.get(),
        comment = command_job.comment_id,
        commands = outcomes.len(),
        all_done = done,
        "slash commands answered"
    );
    Ok(())
}

/// The lowest access among `people` (who must all be allowed), and who
/// has it.
async fn access(client: &RepoClient, people: &[Actor]) -> Result<(Permission, String), JobError> {
    let mut lowest: Option<(Permission, String)> = None;
    for person in people {
        let level = client
            .permission(&UserRef {
                login: person.login.clone(),
                id: person.id,
            })
            .await
            .map_err(|e| SyncError::from(e).into_job_error())?;
        if lowest.as_ref().is_none_or(|(low, _)| level < *low) {
            lowest = Some((level, person.login.clone()));
        }
    }
    Ok(lowest.unwrap_or((Permission::None, String::new())))
}

/// Validates, authorizes and runs one command line. `people` must all
/// have write access for a command that changes anything.
async fn one(
    ctx: &Context,
    client: &RepoClient,
    project: &Project,
    job: &CommandJob,
    queued: &QueuedCommand,
    people: &[Actor],
    permission: &mut Option<(Permission, String)>,
) -> Result<Outcome, JobError> {
    let prefix = &job.prefix;
    let command = match &queued.result {
        Err(error) => return Ok(reply::invalid(&queued.text, error, prefix)),
        Ok(command) => *command,
    };
    if command.changes_anything() {
        let (level, who) = match permission {
            Some(known) => known.clone(),
            None => permission.insert(access(client, people).await?).clone(),
        };
        if level < Permission::Write {
            info!(user = %who, command = command.name(), "command refused: no write access");
            return Ok(reply::refusal(
                forge_of(client),
                &who,
                &job.repo,
                command,
                prefix,
            ));
        }
    }
    let usage = command.usage(prefix);
    let outcome = match act(ctx, client, project.id, command, job).await {
        Ok(outcome) => outcome,
        Err(error) if error.retry().is_some() => return Err(error.into_job_error()),
        Err(error) => Outcome::failed(
            &usage,
            format!("`{usage}` did not work: {}", error.describe()),
        ),
    };
    if outcome.verdict == Verdict::Done && command.changes_anything() {
        let _ = ctx
            .store
            .record_event(
                &NewEvent {
                    project_id: Some(project.id),
                    actor: &job.author.login,
                    kind: "command",
                    message: &format!("`{usage}` on #{}", job.number),
                    pull_request_url: project.pull_request_url.as_deref(),
                    ..NewEvent::default()
                },
                now_ms(),
            )
            .await;
    }
    Ok(outcome)
}

/// Runs a valid, authorized command: its module under [`super::handlers`]
/// does the work and words the reply.
async fn act(
    ctx: &Context,
    client: &RepoClient,
    project_id: ProjectId,
    command: Command,
    job: &CommandJob,
) -> Result<Outcome, SyncError> {
    let call = Call {
        ctx,
        client,
        project: ctx.store.require_project(project_id).await?,
        actor: &job.author.login,
        prefix: &job.prefix,
        usage: command.usage(&job.prefix),
        forge: forge_of(client),
        now: now_ms(),
    };
    match command {
        Command::Sync { force } => handlers::sync::run(&call, force).await,
        Command::Import => handlers::import::run(&call).await,
        Command::Rebase => handlers::rebase::run(&call).await,
        Command::Retry => handlers::retry::run(&call).await,
        Command::Pause => handlers::pause::run(&call).await,
        Command::Resume => handlers::resume::run(&call).await,
        Command::AutoMerge { on } => handlers::automerge::run(&call, on).await,
        Command::Status => handlers::status::run(&call).await,
        Command::Help => Ok(handlers::help::run(call.prefix)),
    }
}

/// The job failed for good: say so on the PR (best effort).
pub async fn gave_up(ctx: &Context, job: &JobRow, command_job: CommandJob, error: &str) {
    if command_job.provider == Provider::Gitlab {
        // Until a run has an outcome the note was never verified: a forged
        // hook must not get graft to write on the MR.
        let ids = run_ids(ctx, job, &command_job).await.unwrap_or_default();
        let runs = ctx.store.command_runs(&ids).await.unwrap_or_default();
        if runs.iter().all(|r| r.outcome.is_none()) {
            warn!(
                comment = command_job.comment_id,
                error, "a GitLab command job failed before its note was verified"
            );
            return;
        }
    }
    let project = match job.project_id {
        Some(id) => ctx.store.project(id).await.ok().flatten(),
        None => None,
    };
    let Ok(client) = client_for(ctx, &command_job, project.as_ref()).await else {
        return;
    };
    let body = format!(
        "{}\nSorry, graft could not finish your command: {}. Try again later; if it keeps \
         failing, check graft's logs or the project's status.\n",
        super::REPLY_MARKER,
        crate::forge::error::short(error)
    );
    if let Err(e) = client.reply(command_job.number, &body).await {
        warn!(error = %e, "could not tell the PR that a command failed");
    }
    verdict(&client, &command_job, false).await;
}
