//! GitLab note hooks are authenticated only by the integration's shared
//! secret, which anyone who can read a hook carrying it (a Maintainer of
//! one project) can use to forge deliveries. So a GitLab command job
//! re-reads the note through the integration's own API before anything
//! runs or shows on the note, and believes only what GitLab stores: the
//! note must exist on that merge request of that project, not be a system
//! note, have the author the hook named and the very text the commands
//! were read from.
//!
//! The note must also still be the version the hook describes: GitLab's
//! `updated_at` for it must be the hook's. What a verified version's
//! commands are measured against (the text graft verified before) and the
//! once-per-version rule live in the job, never in the unverified hook.
//!
//! GitLab's API does not say who edited a note; the hook's `updated_by_id`
//! is the only word on it. So an edit by someone other than the author
//! runs only what both of them may run (see [`Verified::also`]); since each
//! version runs at most once, naming an editor cannot run a version again.

use crate::events::gitlab::is_bot_username;
use crate::events::{Actor, Provider};
use crate::forge::gitlab::StoredNote;
use crate::forge::{ForgeError, ForgeKind, RepoClient};
use crate::ids::PrNumber;

use super::intake::{CommandJob, text_hash};

/// Why a comment's commands do not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("GitLab has no note {note} on merge request !{number} of this project")]
    NoSuchNote { note: i64, number: PrNumber },
    #[error("note {0} is a system note")]
    SystemNote(i64),
    #[error("the hook names project id {claimed}, but the project is {actual}")]
    WrongProject { claimed: i64, actual: i64 },
    #[error("note {0} is not on this merge request")]
    WrongMergeRequest(i64),
    #[error("the hook names @{claimed} as the author, but GitLab says @{actual} wrote note {note}")]
    WrongAuthor {
        note: i64,
        claimed: String,
        actual: String,
    },
    #[error("note {0} was written by a bot")]
    Bot(i64),
    #[error("the hook's text differs from note {0} as GitLab stores it")]
    TextDiffers(i64),
    #[error("the job does not say which text its commands came from")]
    Unverifiable,
    #[error("the hook names user id {0} as the editor, and GitLab has no such user")]
    UnknownEditor(i64),
    #[error("note {0} is not the version the hook describes (GitLab's updated_at differs)")]
    OtherVersion(i64),
    #[error("a {job} job cannot be checked with a {client} client")]
    WrongForge {
        job: &'static str,
        client: &'static str,
    },
}

/// Who a verified note's commands are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The person the run is for: the editor of an edit, else the author.
    pub actor: Actor,
    /// The note's author, when someone else edited it: they too must be
    /// allowed to run what changes anything.
    pub also: Option<Actor>,
    /// GitLab: the note as its API returned it.
    pub note: Option<StoredNote>,
}

/// A GitLab time in seconds since the epoch. Hooks write
/// `2026-12-01 10:00:00 UTC`, the API `2026-12-01T10:00:00.000Z`.
pub fn gitlab_seconds(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp());
    }
    if let Ok(time) = chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z") {
        return Some(time.timestamp());
    }
    let naive = text.strip_suffix(" UTC")?;
    chrono::NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// Whether the hook's `updated_at` names the version GitLab stores (to
/// the second: hooks carry no finer time).
fn same_version(hook: Option<&str>, stored: Option<&str>) -> bool {
    match (
        hook.and_then(gitlab_seconds),
        stored.and_then(gitlab_seconds),
    ) {
        (Some(hook), Some(stored)) => hook == stored,
        _ => false,
    }
}

fn same_person(claimed: &Actor, note: &StoredNote) -> bool {
    claimed.login == note.author && claimed.id.is_none_or(|id| id == note.author_id)
}

/// Checks the job against the note GitLab stores (`None`: there is none),
/// `project_id` being the project the integration's token resolves.
pub fn check_note(
    job: &CommandJob,
    project_id: i64,
    note: Option<&StoredNote>,
) -> Result<Verified, Rejection> {
    let id = job.comment_id;
    let note = note.ok_or(Rejection::NoSuchNote {
        note: id,
        number: job.number,
    })?;
    if let Some(claimed) = job.repo_id.filter(|claimed| *claimed != project_id) {
        return Err(Rejection::WrongProject {
            claimed,
            actual: project_id,
        });
    }
    if let Some(actual) = note.project_id.filter(|actual| *actual != project_id) {
        return Err(Rejection::WrongProject {
            claimed: actual,
            actual: project_id,
        });
    }
    if note.system {
        return Err(Rejection::SystemNote(id));
    }
    let elsewhere = note.id != id
        || note
            .noteable_type
            .as_deref()
            .is_some_and(|t| t != "MergeRequest")
        || note.noteable_iid.is_some_and(|iid| iid != job.number);
    if elsewhere {
        return Err(Rejection::WrongMergeRequest(id));
    }
    let claimed = job.written_by.as_ref().unwrap_or(&job.author);
    if !same_person(claimed, note) {
        return Err(Rejection::WrongAuthor {
            note: id,
            claimed: claimed.login.clone(),
            actual: note.author.clone(),
        });
    }
    if is_bot_username(&note.author) {
        return Err(Rejection::Bot(id));
    }
    match &job.body_hash {
        None => return Err(Rejection::Unverifiable),
        Some(hash) if *hash != text_hash(&note.body) => return Err(Rejection::TextDiffers(id)),
        Some(_) => {}
    }
    if !same_version(job.version.as_deref(), note.updated_at.as_deref()) {
        return Err(Rejection::OtherVersion(id));
    }
    let author = Actor {
        login: note.author.clone(),
        id: Some(note.author_id),
        is_bot: false,
    };
    Ok(match &job.written_by {
        Some(_) => Verified {
            actor: job.author.clone(),
            also: Some(author),
            note: Some(note.clone()),
        },
        None => Verified {
            actor: author,
            also: None,
            note: Some(note.clone()),
        },
    })
}

/// Fails closed: a job is only ever checked with its own forge's client
/// (a GitLab job must never pass as a GitHub one, unread).
fn pairing(job: Provider, client: ForgeKind) -> Result<(), Rejection> {
    let client = match client {
        ForgeKind::Github => Provider::Github,
        ForgeKind::Gitlab => Provider::Gitlab,
    };
    if job == client {
        Ok(())
    } else {
        Err(Rejection::WrongForge {
            job: job.as_str(),
            client: client.as_str(),
        })
    }
}

/// Re-reads the job's note through `client` and checks it. GitHub
/// deliveries are signed with the App's own secret and pass as they are.
/// The outer error is the forge failing (retry); the inner, a rejection.
pub async fn verify(
    client: &RepoClient,
    job: &CommandJob,
) -> Result<Result<Verified, Rejection>, ForgeError> {
    if let Err(rejection) = pairing(job.provider, client.forge()) {
        return Ok(Err(rejection));
    }
    let gitlab = match client.as_gitlab() {
        Some(gitlab) => gitlab,
        None => {
            return Ok(Ok(Verified {
                actor: job.author.clone(),
                also: None,
                note: None,
            }));
        }
    };
    let project_id = gitlab.project_id().await?;
    let note = gitlab.note(job.number, job.comment_id).await?;
    let mut verified = match check_note(job, project_id, note.as_ref()) {
        Ok(verified) => verified,
        Err(rejection) => return Ok(Err(rejection)),
    };
    // The hook names an editor by id only.
    if verified.actor.login.is_empty() {
        let Some(id) = verified.actor.id else {
            return Ok(Err(Rejection::Unverifiable));
        };
        match gitlab.username(id).await? {
            Some(login) => {
                verified.actor.is_bot = is_bot_username(&login);
                verified.actor.login = login;
            }
            None => return Ok(Err(Rejection::UnknownEditor(id))),
        }
    }
    Ok(Ok(verified))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(login: &str, id: i64) -> Actor {
        Actor {
            login: login.into(),
            id: Some(id),
            is_bot: false,
        }
    }

    fn job(body: &str) -> CommandJob {
        CommandJob {
            provider: Provider::Gitlab,
            integration_id: Some(3),
            repo: "group/app".into(),
            number: PrNumber(4),
            comment_id: 90,
            author: actor("dev", 7),
            written_by: None,
            body_hash: Some(text_hash(body)),
            repo_id: Some(11),
            version: Some("2026-12-01 10:00:00 UTC".into()),
            prefix: "/graft".into(),
            commands: Vec::new(),
            acknowledged: false,
        }
    }

    fn note(body: &str) -> StoredNote {
        StoredNote {
            id: 90,
            body: body.into(),
            author_id: 7,
            author: "dev".into(),
            system: false,
            project_id: Some(11),
            noteable_type: Some("MergeRequest".into()),
            noteable_iid: Some(PrNumber(4)),
            created_at: Some("2026-12-01T09:00:00.000Z".into()),
            updated_at: Some("2026-12-01T10:00:00.000Z".into()),
        }
    }

    #[test]
    fn the_stored_note_decides() {
        let body = "/graft sync";
        let verified = check_note(&job(body), 11, Some(&note(body))).unwrap();
        assert_eq!(verified.actor, actor("dev", 7));
        assert_eq!(verified.also, None);
        assert_eq!(verified.note, Some(note(body)));

        let cases: Vec<(CommandJob, Option<StoredNote>, Rejection)> = vec![
            (
                job(body),
                None,
                Rejection::NoSuchNote {
                    note: 90,
                    number: PrNumber(4),
                },
            ),
            (
                CommandJob {
                    author: actor("admin", 1),
                    ..job(body)
                },
                Some(note(body)),
                Rejection::WrongAuthor {
                    note: 90,
                    claimed: "admin".into(),
                    actual: "dev".into(),
                },
            ),
            (
                // The right name with another user's id.
                CommandJob {
                    author: actor("dev", 1),
                    ..job(body)
                },
                Some(note(body)),
                Rejection::WrongAuthor {
                    note: 90,
                    claimed: "dev".into(),
                    actual: "dev".into(),
                },
            ),
            (
                job("/graft sync --force"),
                Some(note(body)),
                Rejection::TextDiffers(90),
            ),
            (
                CommandJob {
                    body_hash: None,
                    ..job(body)
                },
                Some(note(body)),
                Rejection::Unverifiable,
            ),
            (
                CommandJob {
                    repo_id: Some(12),
                    ..job(body)
                },
                Some(note(body)),
                Rejection::WrongProject {
                    claimed: 12,
                    actual: 11,
                },
            ),
            (
                job(body),
                Some(StoredNote {
                    system: true,
                    ..note(body)
                }),
                Rejection::SystemNote(90),
            ),
            (
                job(body),
                Some(StoredNote {
                    noteable_iid: Some(PrNumber(5)),
                    ..note(body)
                }),
                Rejection::WrongMergeRequest(90),
            ),
            (
                CommandJob {
                    author: actor("project_3_bot_ab", 7),
                    ..job(body)
                },
                Some(StoredNote {
                    author: "project_3_bot_ab".into(),
                    ..note(body)
                }),
                Rejection::Bot(90),
            ),
            (
                // The real text under another time: not the version
                // GitLab stores (an old text replayed as a new edit).
                CommandJob {
                    version: Some("2026-12-01 10:00:05 UTC".into()),
                    ..job(body)
                },
                Some(note(body)),
                Rejection::OtherVersion(90),
            ),
            (
                CommandJob {
                    version: None,
                    ..job(body)
                },
                Some(note(body)),
                Rejection::OtherVersion(90),
            ),
            (
                job(body),
                Some(StoredNote {
                    updated_at: None,
                    ..note(body)
                }),
                Rejection::OtherVersion(90),
            ),
        ];
        for (job, note, expected) in cases {
            assert_eq!(
                check_note(&job, 11, note.as_ref()),
                Err(expected.clone()),
                "{expected}"
            );
        }
    }

    #[test]
    fn an_edit_by_someone_else_needs_both() {
        let body = "/graft pause";
        let editor = Actor {
            login: String::new(),
            id: Some(8),
            is_bot: false,
        };
        let edited = CommandJob {
            author: editor.clone(),
            written_by: Some(actor("dev", 7)),
            ..job(body)
        };
        let verified = check_note(&edited, 11, Some(&note(body))).unwrap();
        assert_eq!(verified.actor, editor);
        assert_eq!(verified.also, Some(actor("dev", 7)));
    }

    #[test]
    fn hook_and_api_times_compare_to_the_second() {
        let api = gitlab_seconds("2026-12-01T10:00:00.000Z");
        assert!(api.is_some());
        assert_eq!(gitlab_seconds("2026-12-01 10:00:00 UTC"), api);
        assert_eq!(gitlab_seconds("2026-12-01T11:00:00.000+01:00"), api);
        assert_eq!(gitlab_seconds("2026-12-01 10:00:00 +0000"), api);
        assert_eq!(gitlab_seconds("yesterday"), None);
        assert!(same_version(
            Some("2026-12-01 10:00:00 UTC"),
            Some("2026-12-01T10:00:00.456Z")
        ));
        assert!(!same_version(Some("nonsense"), Some("nonsense")));
    }

    #[test]
    fn a_job_is_checked_only_with_its_own_forge() {
        assert_eq!(pairing(Provider::Gitlab, ForgeKind::Gitlab), Ok(()));
        assert_eq!(pairing(Provider::Github, ForgeKind::Github), Ok(()));
        assert_eq!(
            pairing(Provider::Gitlab, ForgeKind::Github),
            Err(Rejection::WrongForge {
                job: "gitlab",
                client: "github"
            })
        );
        assert!(pairing(Provider::Github, ForgeKind::Gitlab).is_err());
    }
}
