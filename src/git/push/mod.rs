//! Pushing a commit from the mirror. graft sends the usual push itself
//! over smart HTTP ([`native`]); the git CLI takes the rest ([`cli`]).
//! Either way the credentials travel in one header, never in argv or the
//! URL, no redirect is followed, a timeout bounds the push, and failures
//! are sorted into graft's classes with the remote's message kept and
//! credentials scrubbed.

mod cli;
mod native;
mod pack;
mod plan;
mod wire;

use std::path::Path;
use std::time::{Duration, Instant};

use gix::ObjectId;

use super::scrub::scrub;
use super::{GitAuth, GitError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushMode {
    /// Plain push: the remote refuses anything but a fast-forward.
    FastForward,
    /// Rewrite the branch, but only if it is still at `expected` (`None`:
    /// only if it does not exist yet).
    ForceWithLease { expected: Option<ObjectId> },
}

#[derive(Debug, Clone)]
pub struct PushRequest<'a> {
    pub mirror: &'a Path,
    pub url: &'a str,
    pub auth: &'a GitAuth,
    pub commit: ObjectId,
    pub branch: &'a str,
    pub mode: PushMode,
    pub timeout: Duration,
    /// The server's advertisement, read while the sync fetched
    /// ([`advertise`]); `None`: the push reads it first.
    pub advertised: Option<Advertised>,
}

pub use native::Advertised;

/// Reads the receive-pack advertisement of `url` ahead of a push, so the
/// push can start with its pack (one round trip less); run beside the
/// fetch. `None` where graft's own push would not use it. Bounded by
/// `timeout`.
pub async fn advertise(url: &str, auth: &GitAuth, timeout: Duration) -> Option<Advertised> {
    tokio::time::timeout(timeout, native::advertise(url, auth))
        .await
        .ok()
        .flatten()
}

pub async fn push(request: PushRequest<'_>) -> Result<(), GitError> {
    let started = Instant::now();
    match tokio::time::timeout(request.timeout, native::push(&request)).await {
        Ok(Ok(native::Outcome::Done)) => return Ok(()),
        Ok(Ok(native::Outcome::Cli(reason))) => {
            tracing::debug!(reason, "push: the git CLI takes it");
        }
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err(timed_out(&request)),
    }
    let left = request.timeout.saturating_sub(started.elapsed());
    cli::push(&request, left).await
}

fn timed_out(request: &PushRequest<'_>) -> GitError {
    GitError::Network(format!(
        "git push to {} timed out after {}s",
        scrub(request.url, &request.auth.secrets()),
        request.timeout.as_secs()
    ))
}

/// Sorts what `git push` printed into graft's failure classes.
pub fn classify_push_failure(message: &str) -> GitError {
    let lower = message.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(needle);
    let message = message.to_string();
    if has("gh006")
        || has("protected branch")
        || has("pre-receive hook declined")
        || has("not allowed to push code to protected branches")
        || has("not allowed to force push")
    {
        GitError::ProtectedBranch(message)
    } else if has("stale info")
        || has("non-fast-forward")
        || has("fetch first")
        || has("[rejected]")
    {
        GitError::NonFastForward(message)
    } else if has("authentication failed")
        || has("could not read username")
        || has("terminal prompts disabled")
        || has("invalid username or token")
        || has("error: 401")
        || has("error: 403")
        || has("returned error: 403")
        || has("returned error: 401")
        || has("permission to")
    {
        GitError::Auth(message)
    } else if has("repository not found") || has("not found") || has("error: 404") {
        GitError::NotFound(message)
    } else if has("could not resolve host")
        || has("failed to connect")
        || has("connection refused")
        || has("timed out")
        || has("connection reset")
        || has("error: 50")
        || has("the remote end hung up")
    {
        GitError::Network(message)
    } else {
        GitError::Other(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Expect = fn(&GitError) -> bool;

    #[test]
    fn classifies_real_git_messages() {
        let cases: [(&str, Expect); 9] = [
            (
                "remote: error: GH006: Protected branch update failed for refs/heads/main.\n ! [remote rejected] x -> main (protected branch hook declined)",
                |e| matches!(e, GitError::ProtectedBranch(_)),
            ),
            (
                "remote: GitLab: You are not allowed to push code to protected branches on this project.",
                |e| matches!(e, GitError::ProtectedBranch(_)),
            ),
            ("! [rejected] abc -> graft/x (stale info)", |e| {
                matches!(e, GitError::NonFastForward(_))
            }),
            ("! [rejected] abc -> main (non-fast-forward)", |e| {
                matches!(e, GitError::NonFastForward(_))
            }),
            (
                "fatal: could not read Username for 'https://h': terminal prompts disabled",
                |e| matches!(e, GitError::Auth(_)),
            ),
            (
                "fatal: unable to access 'https://h/r.git/': The requested URL returned error: 403",
                |e| matches!(e, GitError::Auth(_)),
            ),
            ("remote: Repository not found.", |e| {
                matches!(e, GitError::NotFound(_))
            }),
            (
                "fatal: unable to access 'http://127.0.0.1:1/r.git/': Failed to connect to 127.0.0.1 port 1",
                |e| matches!(e, GitError::Network(_)),
            ),
            ("something odd", |e| matches!(e, GitError::Other(_))),
        ];
        for (message, expected) in cases {
            let error = classify_push_failure(message);
            assert!(expected(&error), "{message} → {error:?}");
        }
    }
}
