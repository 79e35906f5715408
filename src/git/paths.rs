//! Path safety for managed files and base paths: every path graft writes is
//! checked here first, as plain text, before any object is touched. The
//! checks against the base tree (symlinks, submodules, file/directory
//! swaps) live in `overlay`, which has the tree at hand.

/// Longest path graft accepts (bytes), well under what forges and
/// filesystems allow.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest folder or file name (NAME_MAX of common file systems), so the
/// tree can be checked out (the check command, every clone).
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("`{0}` is absolute; give a path relative to the base path")]
    Absolute(String),
    #[error("`{0}` contains a backslash; use `/` between folders")]
    Backslash(String),
    #[error("`{0}` contains a NUL or control character")]
    Control(String),
    #[error("`{0}` has an empty component (`//`, or a leading or trailing `/`)")]
    EmptyComponent(String),
    #[error("`{0}` contains `.` or `..`; give a normalized path inside the base path")]
    DotComponent(String),
    #[error("`{0}` has a `.git` component; graft never writes git's own files")]
    GitComponent(String),
    #[error("`{0}` looks like a Windows drive path")]
    Drive(String),
    #[error("`{path}` is {len} bytes long; the limit is {MAX_PATH_LEN}")]
    TooLong { path: String, len: usize },
    #[error(
        "`{path}` has a name of {len} bytes; file systems take at most {MAX_NAME_LEN} per folder or file name"
    )]
    NameTooLong { path: String, len: usize },
}

/// Checks a managed file path (relative to the project's base path).
pub fn validate_file_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    validate(path)
}

/// Checks a project base path; `""` means the repository root.
pub fn validate_base_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Ok(());
    }
    validate(path)
}

fn validate(path: &str) -> Result<(), PathError> {
    let owned = || path.to_string();
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong {
            path: truncated(path),
            len: path.len(),
        });
    }
    if path.chars().any(char::is_control) {
        return Err(PathError::Control(path.escape_default().to_string()));
    }
    if path.contains('\\') {
        return Err(PathError::Backslash(owned()));
    }
    if path.starts_with('/') || path.starts_with('~') {
        return Err(PathError::Absolute(owned()));
    }
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(PathError::Drive(owned()));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(PathError::EmptyComponent(owned())),
            "." | ".." => return Err(PathError::DotComponent(owned())),
            _ if is_git_dir_name(component) => return Err(PathError::GitComponent(owned())),
            _ if component.len() > MAX_NAME_LEN => {
                return Err(PathError::NameTooLong {
                    path: truncated(path),
                    len: component.len(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks the repository path a managed path lands on under `base_path`
/// (the two may each be fine and too long together).
pub fn validate_in_base(base_path: &str, path: &str) -> Result<(), PathError> {
    validate_file_path(path)?;
    let full = repo_path(base_path, path);
    if full.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong {
            path: truncated(&full),
            len: full.len(),
        });
    }
    Ok(())
}

/// Checks a path found in the repository before it is written to disk
/// (the check command's worktree). Unlike managed paths, anything git and
/// the file system allow is fine (`~$draft.docx`, `a\b.txt`): only what
/// would land outside the folder or in git's own files is refused.
pub fn validate_checkout_path(path: &str) -> Result<(), PathError> {
    if path.starts_with('/') {
        return Err(PathError::Absolute(path.to_string()));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(PathError::EmptyComponent(path.to_string())),
            "." | ".." => return Err(PathError::DotComponent(path.to_string())),
            _ if is_git_dir_name(component) => {
                return Err(PathError::GitComponent(path.to_string()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The first 64 characters of a long path, for messages.
fn truncated(path: &str) -> String {
    path.chars().take(64).collect::<String>() + "…"
}

/// `.git` in any case, and the forms filesystems treat as `.git`: trailing
/// dots or spaces (Windows) and the 8.3 short name `git~1`.
fn is_git_dir_name(component: &str) -> bool {
    let lower = component.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches(['.', ' ']);
    trimmed == ".git" || lower == "git~1"
}

/// Joins a base path and a managed path into a repository path.
pub fn repo_path(base_path: &str, path: &str) -> String {
    if base_path.is_empty() {
        path.to_string()
    } else {
        format!("{base_path}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths_are_checked_out_unless_they_escape() {
        for ok in [
            "~$draft.docx",
            "a\\b.txt",
            "c:notes",
            "dir/.gitignore",
            "x/.github/y",
        ] {
            assert_eq!(validate_checkout_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            ".git/config",
            "a/.GIT/hooks",
            "./a",
        ] {
            assert!(validate_checkout_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_whole_paths_have_limits() {
        let long_name = "a".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            validate_file_path(&format!("dir/{long_name}")),
            Err(PathError::NameTooLong { len, .. }) if len == MAX_NAME_LEN + 1
        ));
        let name = "a".repeat(200);
        let path = [name.as_str(); 4].join("/");
        assert!(validate_file_path(&path).is_ok());
        let base = [name.as_str(); 2].join("/");
        assert!(matches!(
            validate_in_base(&base, &path),
            Err(PathError::TooLong { .. })
        ));
        assert!(validate_in_base("", &path).is_ok());
    }

    #[test]
    fn accepts_ordinary_paths() {
        for ok in [
            "main.tf",
            "modules/vpc/main.tf",
            "k8s/deploy.yaml",
            ".github/workflows/x.yml",
            "a b/ç.tf",
            ".gitignore",
            "x.git",
            "git",
        ] {
            assert_eq!(validate_file_path(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_base_path(""), Ok(()));
    }

    type Expect = fn(&PathError) -> bool;

    #[test]
    fn refuses_every_unsafe_form_with_a_typed_error() {
        let long = "a/".repeat(600) + "b";
        let cases: Vec<(&str, Expect)> = vec![
            ("", |e| matches!(e, PathError::Empty)),
            ("/etc/passwd", |e| matches!(e, PathError::Absolute(_))),
            ("~/x", |e| matches!(e, PathError::Absolute(_))),
            ("C:/x.tf", |e| matches!(e, PathError::Drive(_))),
            ("a\\b.tf", |e| matches!(e, PathError::Backslash(_))),
            ("..\\x", |e| matches!(e, PathError::Backslash(_))),
            ("a\0b", |e| matches!(e, PathError::Control(_))),
            ("a\nb", |e| matches!(e, PathError::Control(_))),
            ("a//b", |e| matches!(e, PathError::EmptyComponent(_))),
            ("a/", |e| matches!(e, PathError::EmptyComponent(_))),
            ("../x", |e| matches!(e, PathError::DotComponent(_))),
            ("a/../../x", |e| matches!(e, PathError::DotComponent(_))),
            ("./a", |e| matches!(e, PathError::DotComponent(_))),
            (".git/config", |e| matches!(e, PathError::GitComponent(_))),
            ("a/.GIT/hooks/pre-commit", |e| {
                matches!(e, PathError::GitComponent(_))
            }),
            ("a/.git./x", |e| matches!(e, PathError::GitComponent(_))),
            ("a/.git /x", |e| matches!(e, PathError::GitComponent(_))),
            ("GIT~1/config", |e| matches!(e, PathError::GitComponent(_))),
            (long.as_str(), |e| matches!(e, PathError::TooLong { .. })),
        ];
        for (path, expected) in cases {
            let err = validate_file_path(path).expect_err(path);
            assert!(expected(&err), "{path:?}: {err:?}");
            let message = err.to_string();
            assert!(!message.is_empty());
        }
    }

    #[test]
    fn errors_name_the_path() {
        let message = validate_file_path("x/../../etc").unwrap_err().to_string();
        assert!(message.contains("x/../../etc"), "{message}");
    }

    #[test]
    fn joins_base_and_file_paths() {
        assert_eq!(repo_path("", "a.tf"), "a.tf");
        assert_eq!(repo_path("infra/gen", "a.tf"), "infra/gen/a.tf");
    }
}
