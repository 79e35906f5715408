//! Commits written through a forge's API instead of a git push (commit
//! mode `api`): the forge creates and signs them, so they pass rules that
//! require signed commits. What one commit carries ([`ApiCommit`]) and how
//! a change is split to fit the forges' limits ([`batches`]), pure.

/// Where an API commit starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// On the branch's head, only while it is still `expected` (the lease).
    OnHead { expected: String },
    /// On `sha`: the branch is created there (`current` `None`), or moved
    /// back to it from `current` first, rewriting it (what a force push
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
}

/// GitHub's file size limit (also what it accepts in one
/// `createCommitOnBranch` addition): 100 MiB.
pub const MAX_FILE_BYTES: usize = 100 << 20;
/// The most file content graft sends in one API commit. GitHub documents
/// no request size for `createCommitOnBranch` but times out on very large
/// ones; larger changes are split into several commits.
pub const MAX_COMMIT_BYTES: usize = 32 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{path}` is {size} bytes; the forges' commit APIs take files up to {limit} bytes \
     (GitHub's file size limit of 100 MiB): commit it with `commit_via` `git`, or make it smaller"
)]
pub struct TooLarge {
    pub path: String,
    pub size: usize,
    pub limit: usize,
}

/// Splits `files` into commits of at most `max_commit` bytes of content
/// each, in order (deletions weigh nothing); a single file over `max_file`
/// is refused.
pub fn batches(
    files: Vec<FileWrite>,
    max_file: usize,
    max_commit: usize,
) -> Result<Vec<Vec<FileWrite>>, TooLarge> {
    let mut out: Vec<Vec<FileWrite>> = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for file in files {
        let len = file.content.as_ref().map_or(0, Vec::len);
        if len > max_file {
            return Err(TooLarge {
                path: file.path,
                size: len,
                limit: max_file,
            });
        }
        if !current.is_empty() && size + len > max_commit {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(file);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(path: &str, len: usize) -> FileWrite {
        FileWrite {
            path: path.into(),
            content: Some(vec![b'x'; len]),
            existed: false,
        }
    }

    fn paths(batches: &[Vec<FileWrite>]) -> Vec<Vec<&str>> {
        batches
            .iter()
            .map(|b| b.iter().map(|f| f.path.as_str()).collect())
            .collect()
    }

    #[test]
    fn small_changes_are_one_commit() {
        let files = vec![put("a", 3), put("b", 3)];
        assert_eq!(paths(&batches(files, 10, 10).unwrap()), [["a", "b"]]);
        assert_eq!(batches(Vec::new(), 10, 10).unwrap(), vec![Vec::new()]);
    }

    #[test]
    fn large_changes_are_split_in_order_and_deletions_weigh_nothing() {
        let delete = FileWrite {
            path: "gone".into(),
            content: None,
            existed: true,
        };
        let files = vec![put("a", 6), put("b", 6), delete, put("c", 4), put("d", 1)];
        assert_eq!(
            paths(&batches(files, 10, 10).unwrap()),
            vec![vec!["a"], vec!["b", "gone", "c"], vec!["d"]]
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_by_name() {
        let error = batches(vec![put("a", 3), put("big.bin", 11)], 10, 100).unwrap_err();
        assert_eq!(error.path, "big.bin");
        assert!(error.to_string().contains("100 MiB"), "{error}");
    }
}
