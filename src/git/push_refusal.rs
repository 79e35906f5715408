//! Recognising a push the forge refused because its commits are not
//! signed (GitHub's GH006 protection or GH013 ruleset "verified
//! signatures", GitLab's "must be signed" push rule), from the scrubbed
//! push error: such a sync falls back to commits through the forge's API.

use super::GitError;

/// Whether git's (scrubbed) output says the remote wants signed commits.
pub fn wants_signed_commits(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    let github = (lower.contains("gh006") || lower.contains("gh013"))
        && (lower.contains("verified signatures") || lower.contains("valid signatures"));
    let gitlab = lower.contains("must be signed");
    github || gitlab
}

/// [`wants_signed_commits`] for a push's error.
pub fn is_signature_refusal(error: &GitError) -> bool {
    match error {
        GitError::ProtectedBranch(m)
        | GitError::Other(m)
        | GitError::Auth(m)
        | GitError::NonFastForward(m) => wants_signed_commits(m),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_forges_signature_refusals_only() {
        let cases = [
            (
                "remote: error: GH013: Repository rule violations found for refs/heads/graft/infra.\n\
                 remote: - Commits must have verified signatures.\n\
                 remote:   Found 1 violation:\n ! [remote rejected] HEAD -> graft/infra (push declined due to repository rule violations)",
                true,
            ),
            (
                "remote: error: GH006: Protected branch update failed for refs/heads/main.\n\
                 remote: error: Commits must have valid signatures.\n ! [remote rejected] HEAD -> main (protected branch hook declined)",
                true,
            ),
            (
                "remote: GitLab: Commit must be signed with a GPG key\n ! [remote rejected] HEAD -> graft/infra (pre-receive hook declined)",
                true,
            ),
            (
                "remote: error: GH006: Protected branch update failed for refs/heads/main.\n\
                 remote: error: At least 1 approving review is required by reviewers with write access.",
                false,
            ),
            (
                "remote: GitLab: You are not allowed to push code to protected branches on this project.",
                false,
            ),
            ("! [rejected] abc -> graft/x (stale info)", false),
            ("signatures are nice", false),
        ];
        for (message, expected) in cases {
            assert_eq!(wants_signed_commits(message), expected, "{message}");
        }
        let refused = GitError::ProtectedBranch(cases[1].0.to_string());
        assert!(is_signature_refusal(&refused));
        assert!(!is_signature_refusal(&GitError::Network(cases[0].0.into())));
    }
}
