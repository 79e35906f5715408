//! Validation of what generators and admins send: repository paths, branch
//! names (git's ref-format rules), base paths. Pure functions; each error
//! names what to fix.

use crate::events::Provider;
use crate::git::paths;
use crate::ids::RepoPath;

/// `owner/name` on GitHub; `group/sub/name` (two or more parts) on GitLab.
pub fn repo_path(provider: Provider, repo: &str) -> Result<(), String> {
    RepoPath::parse(provider, repo).map(|_| ())
}

/// Git's rules for a branch name (`git check-ref-format --branch`).
pub fn branch_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "branch `{name}` is not a valid git branch name: {why}"
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    if name == "@" {
        return bad("`@` alone is not allowed");
    }
    if name == "HEAD" {
        return bad("`HEAD` is git's own name for the current branch");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return bad("it has an empty component");
    }
    if name.starts_with('-') {
        return bad("it starts with `-`");
    }
    if name.ends_with('.') {
        return bad("it ends with `.`");
    }
    if name.contains("..") || name.contains("@{") {
        return bad("it contains `..` or `@{`");
    }
    if name
        .chars()
        .any(|c| c.is_ascii_control() || c == ' ' || "~^:?*[\\".contains(c))
    {
        return bad("it contains a space, control character or one of ~ ^ : ? * [ \\");
    }
    for component in name.split('/') {
        if component.starts_with('.') {
            return bad("a component starts with `.`");
        }
        if component.ends_with(".lock") {
            return bad("a component ends with `.lock`");
        }
    }
    Ok(())
}

pub fn base_path(path: &str) -> Result<(), String> {
    paths::validate_base_path(path).map_err(|e| format!("base_path: {e}"))
}

pub fn file_path(path: &str) -> Result<(), String> {
    paths::validate_file_path(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths() {
        assert!(repo_path(Provider::Github, "acme/infra").is_ok());
        assert!(repo_path(Provider::Github, "acme/sub/infra").is_err());
        assert!(repo_path(Provider::Github, "acme").is_err());
        assert!(repo_path(Provider::Github, "acme/../x").is_err());
        assert!(repo_path(Provider::Github, "acme/in fra").is_err());
        assert!(repo_path(Provider::Gitlab, "group/sub/name").is_ok());
        assert!(repo_path(Provider::Gitlab, "group//name").is_err());
        // The organisation-wide `.github` repository exists.
        assert!(repo_path(Provider::Github, "acme/.github").is_ok());
        assert!(repo_path(Provider::Github, ".acme/infra").is_err());
        assert!(repo_path(Provider::Github, "acme/..").is_err());
        assert!(repo_path(Provider::Gitlab, "group/.name").is_err());
    }

    #[test]
    fn branch_names_follow_git() {
        for ok in ["main", "release/1.2", "graft/infra-gen", "feature_x", "a.b"] {
            assert!(branch_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "/a", "a/", "a//b",
            ".a", "a/.b", "a.lock", "a/b.lock", "a.", "@", "a@{1}", "-a", "a\u{7}", "HEAD",
        ] {
            assert!(branch_name(bad).is_err(), "{bad:?}");
        }
    }
}
