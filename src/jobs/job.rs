//! Every kind of job graft runs, as one type. A job is stored as a kind
//! string and a JSON payload (the `kind` and `payload` columns); the enum
//! is adjacently tagged the same way, so rows written before it existed
//! decode unchanged. Keep the kind strings and payload field names.

use serde::{Deserialize, Serialize};

use crate::events::{Actor, Provider};
use crate::ids::{PrNumber, ProjectId};
use crate::slash::parse::{Command, CommandError};
use crate::store::jobs::NewJob;

pub use crate::store::jobs::kind::{
    COMMAND as COMMAND_JOB, PR_CLOSED as PR_CLOSED_JOB, RECONCILE as RECONCILE_JOB,
    SYNC as SYNC_JOB, WEBHOOK as WEBHOOK_JOB,
};

/// One job's work.
// A job is decoded once per run and never stored in bulk, so the size of
// its largest variant (a command with its comment) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum Job {
    /// Process a stored webhook delivery.
    Webhook { delivery: i64 },
    /// Commit the project's pending files.
    Sync(SyncRequest),
    /// Compare the project with its repository and settle the difference.
    Reconcile {
        /// Why it was queued, for the logs.
        #[serde(default)]
        reason: String,
    },
    /// graft's PR or MR was closed or merged.
    PullRequestClosed {
        number: PrNumber,
        #[serde(default)]
        merged: bool,
        #[serde(default)]
        merge_commit_sha: Option<String>,
    },
    /// Run the slash commands of one comment.
    Command(CommandJob),
}

/// A stored job that does not decode: an unknown kind or a bad payload.
#[derive(Debug, thiserror::Error)]
#[error("job of kind `{kind}` does not decode: {source}")]
pub struct DecodeError {
    pub kind: String,
    #[source]
    pub source: serde_json::Error,
}

impl Job {
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Webhook { .. } => WEBHOOK_JOB,
            Job::Sync(_) => SYNC_JOB,
            Job::Reconcile { .. } => RECONCILE_JOB,
            Job::PullRequestClosed { .. } => PR_CLOSED_JOB,
            Job::Command(_) => COMMAND_JOB,
        }
    }

    /// The `payload` column's JSON.
    pub fn payload(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut tagged)) => {
                tagged.remove("payload").unwrap_or_default()
            }
            // Every variant has fields, so this is unreachable.
            _ => serde_json::Value::Null,
        }
    }

    /// The job stored as `kind` with `payload`.
    pub fn decode(kind: &str, payload: &str) -> Result<Job, DecodeError> {
        let error = |source| DecodeError {
            kind: kind.to_string(),
            source,
        };
        let payload: serde_json::Value = serde_json::from_str(payload).map_err(error)?;
        serde_json::from_value(serde_json::json!({ "kind": kind, "payload": payload }))
            .map_err(error)
    }

    /// The row to store: this job for `project` (`None`: not tied to one),
    /// due `now`, with the kind's dedupe key. Callers adjust the rest.
    pub fn row(&self, project: Option<ProjectId>, now: i64) -> NewJob {
        let dedupe_key = match (self, project) {
            (Job::Sync(_), Some(p)) => Some(format!("sync:project:{p}")),
            (Job::Reconcile { .. }, Some(p)) => Some(format!("reconcile:project:{p}")),
            _ => None,
        };
        NewJob {
            project_id: project,
            dedupe_key,
            ..NewJob::new(self.kind(), self.payload(), now)
        }
    }
}

/// Which files a sync carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every pending file of the project.
    All,
    /// Only pending files flagged `sync_on_change` (configuration kind).
    Flagged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub scope: Scope,
    /// Resolve a conflict in graft's favour (`/graft sync --force`).
    #[serde(default)]
    pub force: bool,
    /// Recreate the sync branch from the target head (`/graft rebase`).
    #[serde(default)]
    pub rebase: bool,
    /// Who asked, for the audit log.
    #[serde(default)]
    pub actor: String,
    /// Queued by graft itself (a change of files, a refresh of the PR), not
    /// asked for: skipped while the project is paused or its auto-sync is
    /// held, even if it was queued before.
    #[serde(default)]
    pub automatic: bool,
}

impl SyncRequest {
    /// A sync someone asked for: the whole project.
    pub fn explicit(actor: &str) -> Self {
        SyncRequest {
            scope: Scope::All,
            force: false,
            rebase: false,
            actor: actor.to_string(),
            automatic: false,
        }
    }

    /// A sync graft queues on its own.
    pub fn automatic(scope: Scope, actor: &str) -> Self {
        SyncRequest {
            scope,
            automatic: true,
            ..SyncRequest::explicit(actor)
        }
    }
}

/// The broader of two requests for the same project.
pub fn merge_requests(queued: &SyncRequest, new: &SyncRequest) -> SyncRequest {
    SyncRequest {
        scope: if queued.scope == Scope::All || new.scope == Scope::All {
            Scope::All
        } else {
            Scope::Flagged
        },
        force: queued.force || new.force,
        rebase: queued.rebase || new.rebase,
        actor: if new.actor.is_empty() {
            queued.actor.clone()
        } else {
            new.actor.clone()
        },
        // Asked for by someone if either was.
        automatic: queued.automatic && new.automatic,
    }
}

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
    pub number: PrNumber,
    pub comment_id: i64,
    /// Who the run is for: the editor of an edit, else the author. Their
    /// permission is checked and the audit log names them.
    pub author: Actor,
    /// The comment's author, when the run is someone else's edit of it.
    #[serde(default)]
    pub written_by: Option<Actor>,
    /// `commands::intake::text_hash` of the text the commands were read from: a GitLab job
    /// re-reads the note and runs nothing when the note says otherwise.
    #[serde(default)]
    pub body_hash: Option<String>,
    /// The forge's id of the repository, as the webhook gave it.
    #[serde(default)]
    pub repo_id: Option<i64>,
    /// GitLab: the note's `updated_at` as the hook gave it. The job runs
    /// nothing unless GitLab's note is this very version.
    #[serde(default)]
    pub version: Option<String>,
    pub prefix: String,
    pub commands: Vec<QueuedCommand>,
    /// 👀 was added on receipt (by the webhook job), so the command job
    /// does not add it again.
    #[serde(default)]
    pub acknowledged: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(job: Job) {
        let row = job.row(Some(ProjectId(3)), 0);
        assert_eq!(
            Job::decode(&row.kind, &row.payload.to_string()).unwrap(),
            job
        );
    }

    #[test]
    fn every_kind_round_trips_through_its_row() {
        round_trip(Job::Webhook { delivery: 5 });
        round_trip(Job::Sync(SyncRequest::explicit("comment:a")));
        round_trip(Job::Reconcile {
            reason: "push".into(),
        });
        round_trip(Job::PullRequestClosed {
            number: PrNumber(7),
            merged: true,
            merge_commit_sha: Some("abc".into()),
        });
    }

    /// Rows as the version before the enum wrote them.
    #[test]
    fn rows_of_the_previous_shape_decode() {
        let cases = [
            (
                "webhook",
                r#"{"delivery":12}"#,
                Job::Webhook { delivery: 12 },
            ),
            (
                "sync",
                r#"{"scope":"flagged","force":true,"rebase":false,"actor":"token:gen"}"#,
                Job::Sync(SyncRequest {
                    scope: Scope::Flagged,
                    force: true,
                    rebase: false,
                    actor: "token:gen".into(),
                    automatic: false,
                }),
            ),
            (
                "reconcile",
                r#"{"reason":"poll"}"#,
                Job::Reconcile {
                    reason: "poll".into(),
                },
            ),
            (
                "pull_request_closed",
                r#"{"merged":false,"merge_commit_sha":null,"number":4}"#,
                Job::PullRequestClosed {
                    number: PrNumber(4),
                    merged: false,
                    merge_commit_sha: None,
                },
            ),
        ];
        for (kind, payload, job) in cases {
            assert_eq!(Job::decode(kind, payload).unwrap(), job, "{kind}");
        }
        let command = r#"{"provider":"github","repo":"o/r","number":3,"comment_id":9,
            "author":{"login":"ann","id":1,"is_bot":false},"prefix":"/graft",
            "commands":[{"run_id":2,"text":"/graft sync","result":{"Ok":{"command":"sync","force":false}}}]}"#;
        match Job::decode("command", command) {
            Ok(Job::Command(job)) => {
                assert_eq!(
                    (job.number, job.comment_id, job.commands.len()),
                    (PrNumber(3), 9, 1)
                );
                assert!(!job.acknowledged);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_webhook_job_has_the_payload_intake_matches_on() {
        // The delivery intake's batch insert finds its jobs by this text.
        assert_eq!(
            Job::Webhook { delivery: 42 }.payload().to_string(),
            r#"{"delivery":42}"#
        );
        // The store queues webhook jobs itself: the same row as the typed job's.
        assert_eq!(
            crate::store::deliveries::processing_job(42, 7),
            Job::Webhook { delivery: 42 }.row(None, 7)
        );
    }

    /// Each kind decodes under its own string, so the kind and the
    /// variant never drift apart.
    #[test]
    fn each_variant_is_stored_under_its_kind() {
        let kinds = [
            (Job::Webhook { delivery: 1 }, "webhook"),
            (Job::Sync(SyncRequest::explicit("a")), "sync"),
            (
                Job::Reconcile {
                    reason: String::new(),
                },
                "reconcile",
            ),
            (
                Job::PullRequestClosed {
                    number: PrNumber(1),
                    merged: false,
                    merge_commit_sha: None,
                },
                "pull_request_closed",
            ),
        ];
        for (job, kind) in kinds {
            assert_eq!(job.kind(), kind);
            assert_eq!(job.row(None, 0).kind, kind);
        }
    }

    #[test]
    fn unknown_kinds_and_bad_payloads_do_not_decode() {
        assert_eq!(Job::decode("nope", "{}").unwrap_err().kind, "nope");
        assert!(Job::decode("pull_request_closed", r#"{"merged":true}"#).is_err());
        assert!(Job::decode("sync", "not json").is_err());
    }
}
