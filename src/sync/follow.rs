//! Following the target branch: what a push to a project's target branch
//! asks of graft. Every such push moves the head graft has seen; most (a
//! README edit in a monorepo) provably change nothing below the project's
//! base path, and for those recording the new head is all there is to do —
//! no fetch, no job. Anything graft cannot prove from the webhook alone is
//! left to a reconcile, which reads the commits itself.

use crate::events::PushEvent;
use crate::store::projects::Project;

/// What a push to its target branch means for one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Record `after` as the head graft has seen (compare-and-set on
    /// `before`): nothing below the base path changed.
    Advance,
    /// Queue a reconcile: the push may have changed the project's files, or
    /// the webhook alone cannot tell.
    Reconcile,
    /// Nothing to do: not a branch, or a head graft has already seen.
    Ignore,
}

/// The project fields the decision reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectHead<'a> {
    pub base_path: &'a str,
    pub last_synced_commit_sha: Option<&'a str>,
}

impl<'a> ProjectHead<'a> {
    pub fn of(project: &'a Project) -> Self {
        ProjectHead {
            base_path: &project.base_path,
            last_synced_commit_sha: project.last_synced_commit_sha.as_deref(),
        }
    }
}

/// Decides for a push to `project`'s target branch.
pub fn follow(push: &PushEvent, project: &ProjectHead<'_>) -> Follow {
    if push.branch.is_none() {
        return Follow::Ignore;
    }
    if push.deleted {
        // The reconcile finds the branch gone and says so.
        return Follow::Reconcile;
    }
    if project.last_synced_commit_sha == Some(push.after.as_str()) {
        // graft's own direct push once its sync recorded it, or a
        // redelivery: graft has seen this head.
        return Follow::Ignore;
    }
    let provably_elsewhere = project.last_synced_commit_sha == Some(push.before.as_str())
        // A rewrite drops commits the list does not show.
        && push.forced != Some(true)
        && push.paths_complete
        // A push that lists no commits but moves the branch went back to
        // an older commit: what it undid is not listed either.
        && push.commit_count > 0
        && !touches(&push.changed_paths, project.base_path);
    if provably_elsewhere {
        Follow::Advance
    } else {
        Follow::Reconcile
    }
}

/// Whether any of `paths` lies below `base_path` (`""`: the whole
/// repository). A folder's name prefix is not the folder.
pub fn touches(paths: &[String], base_path: &str) -> bool {
    let base = base_path.trim_matches('/');
    if base.is_empty() {
        return !paths.is_empty();
    }
    paths.iter().any(|path| {
        path == base
            || path
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RepoRef;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    /// A README-only fast-forward push from A to B, fully listed.
    fn push(paths: &[&str]) -> PushEvent {
        PushEvent {
            repo: RepoRef {
                path: "acme/infra".into(),
                id: None,
            },
            branch: Some("main".into()),
            before: A.into(),
            after: B.into(),
            changed_paths: paths.iter().map(|p| p.to_string()).collect(),
            deleted: false,
            pusher: None,
            forced: Some(false),
            commit_count: 1,
            paths_complete: true,
        }
    }

    fn at(last: Option<&'static str>, base_path: &'static str) -> ProjectHead<'static> {
        ProjectHead {
            base_path,
            last_synced_commit_sha: last,
        }
    }

    #[test]
    fn decisions() {
        let readme = push(&["README.md"]);
        let cases: Vec<(&str, PushEvent, ProjectHead, Follow)> = vec![
            (
                "before matches, paths elsewhere",
                readme.clone(),
                at(Some(A), "infra"),
                Follow::Advance,
            ),
            (
                "before is not the head graft saw",
                readme.clone(),
                at(Some("cccccccccccccccccccccccccccccccccccccccc"), "infra"),
                Follow::Reconcile,
            ),
            (
                "graft never saw a head",
                readme.clone(),
                at(None, "infra"),
                Follow::Reconcile,
            ),
            (
                "a path below the base path",
                push(&["README.md", "infra/main.tf"]),
                at(Some(A), "infra"),
                Follow::Reconcile,
            ),
            (
                "the base path itself (a file where the folder was)",
                push(&["infra"]),
                at(Some(A), "infra"),
                Follow::Reconcile,
            ),
            (
                "a sibling sharing the name's prefix",
                push(&["infra-old/main.tf"]),
                at(Some(A), "infra"),
                Follow::Advance,
            ),
            (
                "base path written with slashes",
                push(&["infra/main.tf"]),
                at(Some(A), "/infra/"),
                Follow::Reconcile,
            ),
            (
                "the repository root sees every file",
                readme.clone(),
                at(Some(A), ""),
                Follow::Reconcile,
            ),
            (
                "the repository root and an empty commit",
                push(&[]),
                at(Some(A), ""),
                Follow::Advance,
            ),
            (
                "commit list cut short",
                PushEvent {
                    paths_complete: false,
                    ..readme.clone()
                },
                at(Some(A), "infra"),
                Follow::Reconcile,
            ),
            (
                "forced push",
                PushEvent {
                    forced: Some(true),
                    ..readme.clone()
                },
                at(Some(A), "infra"),
                Follow::Reconcile,
            ),
            (
                "forge does not say whether forced (GitLab)",
                PushEvent {
                    forced: None,
                    ..readme.clone()
                },
                at(Some(A), "infra"),
                Follow::Advance,
            ),
            (
                "no commits listed: the branch went back",
                PushEvent {
                    commit_count: 0,
                    ..push(&[])
                },
                at(Some(A), "infra"),
                Follow::Reconcile,
            ),
            (
                "branch deleted",
                PushEvent {
                    after: ZERO.into(),
                    deleted: true,
                    commit_count: 0,
                    ..push(&[])
                },
                at(Some(A), "infra"),
                Follow::Reconcile,
            ),
            (
                "graft's own push, already recorded",
                push(&["infra/main.tf"]),
                at(Some(B), "infra"),
                Follow::Ignore,
            ),
            (
                "a tag",
                PushEvent {
                    branch: None,
                    ..readme.clone()
                },
                at(Some(A), "infra"),
                Follow::Ignore,
            ),
        ];
        for (name, push, project, expected) in cases {
            assert_eq!(follow(&push, &project), expected, "{name}");
        }
    }

    #[test]
    fn touches_by_folder() {
        let changed = vec![
            "apps/web/index.ts".to_string(),
            "infra/gen/main.tf".to_string(),
        ];
        assert!(touches(&changed, "infra/gen"));
        assert!(touches(&changed, "infra"));
        assert!(!touches(&changed, "infra/other"));
        assert!(!touches(&changed, "infra/ge"), "prefix of a name");
        assert!(touches(&changed, ""));
        assert!(!touches(&[], ""), "nothing listed touches nothing");
    }
}
