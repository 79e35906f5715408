//! Why a sync or reconcile failed, in graft's failure classes (lost
//! permission, protected branch, upstream moved, conflict, rate limit or
//! outage, validation), each with the message users see in `sync_error`
//! and on the PR, and whether the job should be retried.

use std::time::Duration;

use crate::forge::ForgeError;
use crate::git::GitError;
use crate::git::validate::Finding;
use crate::jobs::JobError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Forge(#[from] ForgeError),
    #[error("{0}")]
    Git(#[from] GitError),
    #[error("conflict: {} changed upstream and has pending changes in graft", .0.join(", "))]
    Conflict(Vec<String>),
    #[error("validation failed")]
    Validation(Vec<Finding>),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
}

/// "Validation failed with N error(s); `consequence`." and the first one.
pub fn validation_failed(findings: &[Finding], consequence: &str) -> String {
    let first = findings
        .first()
        .map(|f| match f.line {
            Some(line) => format!(" First: {}:{line}: {}", f.file, f.message),
            None => format!(" First: {} {}", f.file, f.message),
        })
        .unwrap_or_default();
    format!(
        "Validation failed with {} error(s); {consequence}.{first}",
        findings.len()
    )
}

impl SyncError {
    /// `Some(wait)` when another attempt may succeed (rate limit, 5xx,
    /// network, the remote moved).
    pub fn retry(&self) -> Option<Option<Duration>> {
        match self {
            SyncError::Forge(e) if e.is_retryable() => Some(e.retry_after()),
            // MissingObject: the mirror is re-created on the next attempt.
            SyncError::Git(
                GitError::Network(_)
                | GitError::NonFastForward(_)
                | GitError::Local(_)
                | GitError::MissingObject(_),
            ) => Some(None),
            SyncError::Store(_) => Some(None),
            _ => None,
        }
    }

    /// The message with its recovery hint, for `sync_error` and the PR.
    pub fn describe(&self) -> String {
        match self {
            SyncError::Conflict(paths) => format!(
                "Conflict: {} changed upstream while graft has pending changes. Nothing was \
                 overwritten. Comment `/graft sync --force` to keep graft's version, or \
                 `/graft import` to take the repository's.",
                paths
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            SyncError::Validation(findings) => validation_failed(
                findings,
                "direct mode does not push until the generated files validate",
            ),
            SyncError::Git(GitError::Auth(message)) => format!(
                "The git server refused graft's credentials ({message}). Check that the GitHub \
                 App is installed on the repository with `contents: write`, or that the GitLab \
                 token has the `write_repository` scope."
            ),
            SyncError::Git(GitError::NotFound(message)) => format!(
                "The repository or branch was not found ({message}). Check the project's repo \
                 and branch, and that graft can see the repository."
            ),
            SyncError::Git(error @ (GitError::Path(_) | GitError::Unsafe(_))) => format!(
                "{error}. Change the generator's output (or the project's base path); graft \
                 will not write there."
            ),
            SyncError::Git(GitError::Network(message)) => format!(
                "Network error talking to the git server ({message}). graft retries with \
                 backoff; `/graft retry` tries again now."
            ),
            SyncError::Git(GitError::ProtectedBranch(message)) => format!(
                "The git server refused graft's push ({message}). If graft's own branch is \
                 protected (or a push rule refuses it), allow graft to push `graft/*` branches or \
                 give the project another `sync_branch`, then comment `/graft retry`."
            ),
            SyncError::Git(GitError::NonFastForward(message)) => format!(
                "The branch kept moving while graft pushed ({message}), also after fetching \
                 again. The next change syncs again; `/graft sync` tries now."
            ),
            SyncError::Git(
                error @ (GitError::Other(_) | GitError::Local(_) | GitError::MissingObject(_)),
            ) => {
                format!("{error}. `/graft retry` tries again; graft's log has the details.")
            }
            SyncError::Forge(error) if error.is_retryable() => format!(
                "{error}. graft retried with backoff and gave up for now; `/graft retry` tries again."
            ),
            other => other.to_string(),
        }
    }

    pub fn into_job_error(self) -> JobError {
        match self.retry() {
            Some(after) => JobError::Retry {
                message: self.describe(),
                after,
            },
            None => JobError::Fatal(self.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_the_paths_and_both_ways_out() {
        let message = SyncError::Conflict(vec!["a.tf".into(), "b/c.tf".into()]).describe();
        for needle in [
            "`a.tf`",
            "`b/c.tf`",
            "/graft sync --force",
            "/graft import",
            "Nothing was overwritten",
        ] {
            assert!(message.contains(needle), "{message}");
        }
    }

    #[test]
    fn every_git_failure_says_what_to_do() {
        for error in [
            GitError::ProtectedBranch("pre-receive hook declined".into()),
            GitError::NonFastForward("stale info".into()),
            GitError::Other("exit status 128".into()),
            GitError::Local("disk full".into()),
        ] {
            let message = SyncError::Git(error).describe();
            assert!(message.contains("/graft"), "{message}");
        }
    }

    #[test]
    fn retry_classes() {
        assert!(
            SyncError::Git(GitError::Network("x".into()))
                .retry()
                .is_some()
        );
        assert!(
            SyncError::Git(GitError::NonFastForward("x".into()))
                .retry()
                .is_some()
        );
        assert!(SyncError::Git(GitError::Auth("x".into())).retry().is_none());
        assert!(SyncError::Conflict(vec![]).retry().is_none());
    }

    /// Which forge failures go back to the queue is decided here, not in
    /// the forge: transient ones wait as long as the forge asked.
    #[test]
    fn forge_failures_retry_only_when_transient() {
        let forge = crate::forge::ForgeKind::Github;
        let limited = SyncError::Forge(ForgeError::RateLimited {
            forge,
            primary: true,
            retry_after: Some(Duration::from_secs(3)),
        });
        assert!(matches!(
            limited.into_job_error(),
            JobError::Retry { after: Some(after), .. } if after == Duration::from_secs(3)
        ));
        let denied = SyncError::Forge(ForgeError::NoPermission {
            forge,
            message: "no".into(),
            permission: None,
            hint: String::new(),
        });
        assert!(matches!(denied.into_job_error(), JobError::Fatal(_)));
    }
}
