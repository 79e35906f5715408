//! The push by the git CLI, for what graft does not send itself: the
//! credentials in `GIT_CONFIG_*` environment variables, prompts off.

use std::process::Stdio;
use std::time::Duration;

use super::{GitError, PushMode, PushRequest, classify_push_failure, timed_out};
use crate::git::scrub::scrub;

/// Pushes within `timeout` (what is left of the request's).
pub async fn push(request: &PushRequest<'_>, timeout: Duration) -> Result<(), GitError> {
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
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|e| GitError::Local(format!("git push: {e}")))?,
        Err(_) => return Err(timed_out(request)),
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
