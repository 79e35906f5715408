//! Pushing a commit from the mirror with the git CLI (gix cannot push yet).
//! The credentials travel in `GIT_CONFIG_*` environment variables, never in
//! argv or the URL; prompts are off; a timeout bounds the call; failures
//! are sorted into graft's classes with the remote's message kept and
//! credentials scrubbed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

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
}

pub async fn push(request: PushRequest<'_>) -> Result<(), GitError> {
    let refname = format!("refs/heads/{}", request.branch);
    let mut command = tokio::process::Command::new("git");
    command
        .arg("-C")
        .arg(request.mirror)
        .args(["push", "--porcelain", "--no-verify"]);
    if let PushMode::ForceWithLease { expected } = request.mode {
        let expected = expected.map(|id| id.to_string()).unwrap_or_default();
        command.arg(format!("--force-with-lease={refname}:{expected}"));
    }
    command
        .arg(request.url)
        .arg(format!("{}:{refname}", request.commit))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", request.mirror)
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env("GIT_CONFIG_VALUE_0", request.auth.header())
        // No redirect may carry the token header to another host.
        .env("GIT_CONFIG_KEY_1", "http.followRedirects")
        .env("GIT_CONFIG_VALUE_1", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let secrets = request.auth.secrets();
    let child = command
        .spawn()
        .map_err(|e| GitError::Local(format!("cannot run git: {e}")))?;
    let output = match tokio::time::timeout(request.timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|e| GitError::Local(format!("git push: {e}")))?,
        Err(_) => {
            return Err(GitError::Network(format!(
                "git push to {} timed out after {}s",
                scrub(request.url, &secrets),
                request.timeout.as_secs()
            )));
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    Err(classify_push_failure(&scrub(text.trim(), &secrets)))
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
