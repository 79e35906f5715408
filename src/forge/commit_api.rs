//! Commits written through a forge's API instead of a git push (commit
//! mode `api`): the forge creates and signs them, so they pass rules that
//! require signed commits. What one commit carries ([`ApiCommit`]) and the
//! size check a change must pass to go in one request ([`one_commit`]),
//! pure.

/// Where an API commit starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// On the branch's head, only while it is still `expected` (the lease).
    OnHead { expected: String },
    /// On `sha`: the branch is created there (`current` `None`), or moved
    /// to the new commit from `current`, rewriting it (what a force push
    /// with lease does in git mode). A branch not at `current` is left be.
    From {
        sha: String,
        current: Option<String>,
    },
}

/// One file change; `content` is the whole file (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    /// Path from the repository's root.
    pub path: String,
    pub content: Option<Vec<u8>>,
    /// Whether the file exists at the start (GitLab's `create`/`update`).
    pub existed: bool,
    /// Whether the written file is executable (mode 100755).
    pub executable: bool,
    /// Whether the file is executable at the start: an update keeps the
    /// old mode on both forges unless told otherwise.
    pub was_executable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCommit {
    pub branch: String,
    pub start: Start,
    pub message: String,
    pub files: Vec<FileWrite>,
}

/// What the forge answered an API commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// The new commit's SHA, now the branch's head.
    Head(String),
    /// The branch was not at the expected head: someone pushed.
    Moved,
    /// The branch's protection refused the commit (the forge's words): the
    /// same refusal a git push gets, so direct mode falls back to a PR.
    Protected(String),
}

/// GitHub's file size limit (also what it accepts in one
/// `createCommitOnBranch` addition): 100 MiB.
pub const MAX_FILE_BYTES: usize = 100 << 20;
/// The most file content graft sends in one API commit. Each change is one
/// request: a change split over several commits could stop part-way and
/// leave commits on the branch graft never recorded. GitHub documents no
/// request size for `createCommitOnBranch` (it times out on very large
/// ones); the request holds the content about four times over (the files,
/// base64, the JSON body), so this also bounds a sync's memory (~64 MiB).
pub const MAX_COMMIT_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    #[error(
        "`{path}` is {size} bytes; the forges' commit APIs take files up to {limit} bytes \
         (GitHub's file size limit of {} MiB): commit it with `commit_via` `git`, or make it smaller",
        MAX_FILE_BYTES >> 20
    )]
    File {
        path: String,
        size: usize,
        limit: usize,
    },
    #[error(
        "this sync changes {size} bytes of files; commit mode `api` sends a change in one \
         request of at most {limit} bytes (GitHub's file size limit is {} MiB per file, and \
         `createCommitOnBranch` times out on very large requests): sync with `commit_via` \
         `git`, or put fewer or smaller files before syncing",
        MAX_FILE_BYTES >> 20
    )]
    Commit { size: usize, limit: usize },
}

/// Checks that `files` fit in one API commit: no file over `max_file`
/// bytes, at most `max_commit` bytes of content in all (deletions weigh
/// nothing).
pub fn one_commit(
    files: Vec<FileWrite>,
    max_file: usize,
    max_commit: usize,
) -> Result<Vec<FileWrite>, TooLarge> {
    let mut size = 0usize;
    for file in &files {
        let len = file.content.as_ref().map_or(0, Vec::len);
        if len > max_file {
            return Err(TooLarge::File {
                path: file.path.clone(),
                size: len,
                limit: max_file,
            });
        }
        size = size.saturating_add(len);
    }
    if size > max_commit {
        return Err(TooLarge::Commit {
            size,
            limit: max_commit,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(path: &str, len: usize) -> FileWrite {
        FileWrite {
            path: path.into(),
            content: Some(vec![b'x'; len]),
            existed: false,
            executable: false,
            was_executable: false,
        }
    }

    #[test]
    fn changes_within_the_limits_are_one_commit_and_deletions_weigh_nothing() {
        let delete = FileWrite {
            path: "gone".into(),
            content: None,
            existed: true,
            executable: false,
            was_executable: false,
        };
        let files = vec![put("a", 4), delete, put("b", 6)];
        assert_eq!(one_commit(files.clone(), 10, 10).unwrap(), files);
        assert_eq!(one_commit(Vec::new(), 10, 10).unwrap(), Vec::new());
    }

    #[test]
    fn a_file_over_the_limit_is_refused_by_name() {
        let error = one_commit(vec![put("a", 3), put("big.bin", 11)], 10, 100).unwrap_err();
        assert!(matches!(&error, TooLarge::File { path, .. } if path == "big.bin"));
        let text = error.to_string();
        assert!(text.contains("`big.bin` is 11 bytes"), "{text}");
        assert!(text.contains("100 MiB"), "{text}");
    }

    #[test]
    fn a_change_over_the_request_limit_is_refused_with_the_limits() {
        let error = one_commit(vec![put("a", 6), put("b", 6)], 10, 10).unwrap_err();
        assert_eq!(
            error,
            TooLarge::Commit {
                size: 12,
                limit: 10
            }
        );
        let text = error.to_string();
        assert!(
            text.contains("12 bytes") && text.contains("at most 10 bytes"),
            "{text}"
        );
        assert!(text.contains("`commit_via` `git`"), "{text}");
    }
}
