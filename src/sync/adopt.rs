//! Adopting existing files: what is under the base path at the target
//! head becomes managed and `synced`, with no commit. Which paths qualify
//! is decided by [`choose`] (pure); reading and storing them is
//! [`adopt`]'s.

use std::collections::{BTreeMap, HashSet};

use gix::ObjectId;
use serde::Serialize;

use crate::context::Context;
use crate::file_set::{MAX_FILE_BYTES, MAX_REQUEST_BYTES};
use crate::git::pipeline::Fetched;
use crate::git::read::{self, TreeFile};
use crate::store::adopt::{AdoptStoreError, FoundFile};
use crate::store::now_ms;
use crate::store::projects::Project;
use crate::validation;

use super::errors::SyncError;
use super::upstream::fetch_for;

/// At most this many files are adopted by one request (the files API's
/// per-request limit).
pub const MAX_ADOPT_FILES: usize = crate::file_set::MAX_FILES;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adopted {
    pub path: String,
    pub blob_sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Adoption {
    pub adopted: Vec<Adopted>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error(
        "{count} files qualify for adoption; the limit is {MAX_ADOPT_FILES} per request: \
         name the paths to adopt in several requests"
    )]
    TooMany { count: usize },
    #[error(
        "the target branch moved since graft last followed it (graft recorded {recorded}, the \
         head is {head}); queue a sync (`POST /api/v1/projects/{{id}}/sync`) so that graft \
         takes in upstream changes first, then adopt again"
    )]
    Moved { head: String, recorded: String },
    #[error(transparent)]
    Sync(#[from] SyncError),
}

pub const ALREADY_MANAGED: &str = "already managed by graft";
pub const NOT_IN_REPOSITORY: &str = "no such file under the base path at the target branch head";
pub const NOT_UTF8: &str = "the file name is not UTF-8; graft manages only UTF-8 paths";

/// Why a file past the per-request total is skipped.
fn over_total() -> String {
    format!(
        "the files before it reach the limit of {MAX_REQUEST_BYTES} bytes per request; \
         adopt it in another request (name its path)"
    )
}

/// The files to read from the target: every file in `listing` (`None`
/// requested) or the requested ones, less those graft manages and those
/// whose path graft could not manage (a generator could not send it).
/// Returns the candidates and the skipped paths with their reasons.
pub fn choose(
    listing: &BTreeMap<String, TreeFile>,
    managed: &HashSet<String>,
    requested: Option<&[String]>,
) -> (Vec<(String, TreeFile)>, Vec<Skipped>) {
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    let skip = |path: &str, reason: &str| Skipped {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let wanted: Vec<&String> = match requested {
        Some(paths) => paths.iter().collect(),
        None => listing.keys().collect(),
    };
    let mut seen = HashSet::new();
    for path in wanted {
        if !seen.insert(path.as_str()) {
            continue;
        }
        if managed.contains(path) {
            skipped.push(skip(path, ALREADY_MANAGED));
        } else if let Some(file) = listing.get(path) {
            match validation::file_path(path) {
                Ok(()) => candidates.push((path.clone(), *file)),
                Err(e) => skipped.push(skip(path, &format!("not a path graft manages: {e}"))),
            }
        } else {
            skipped.push(skip(path, NOT_IN_REPOSITORY));
        }
    }
    (candidates, skipped)
}

/// The reason a file of `size` bytes is not adopted, if it is too large.
fn too_large(size: usize) -> Option<String> {
    (size > MAX_FILE_BYTES)
        .then(|| format!("{size} bytes; graft manages files of at most {MAX_FILE_BYTES} bytes"))
}

/// Reads the target head and adopts the files `requested` (all under the
/// base path when `None`).
pub async fn adopt(
    ctx: &Context,
    project: &Project,
    requested: Option<&[String]>,
    actor: &str,
) -> Result<Adoption, AdoptError> {
    let remote = super::remote::remote_for(ctx, project).await?;
    let fetched = fetch_for(ctx, project, &remote).await?;
    let target = fetched.head(&project.branch);
    let base_path = project.base_path.clone();
    let (listing, not_utf8) = fetched
        .with_repo(move |repo| {
            read::list_subtree_utf8(repo, read::commit_tree(repo, target)?, &base_path)
        })
        .await
        .map_err(SyncError::from)?;
    let managed: HashSet<String> = ctx
        .store
        .file_listing(project.id)
        .await
        .map_err(SyncError::from)?
        .into_iter()
        .map(|f| f.path)
        .collect();
    let (candidates, mut skipped) = choose(&listing, &managed, requested);
    if requested.is_none() {
        skipped.extend(not_utf8.into_iter().map(|path| Skipped {
            path,
            reason: NOT_UTF8.to_string(),
        }));
    }
    if candidates.len() > MAX_ADOPT_FILES {
        return Err(AdoptError::TooMany {
            count: candidates.len(),
        });
    }
    let adopted = match target {
        Some(head) => {
            take(
                ctx,
                project,
                &fetched,
                head,
                candidates,
                actor,
                &mut skipped,
            )
            .await?
        }
        None => Vec::new(),
    };
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Adoption { adopted, skipped })
}

/// Reads `candidates` at `head` and stores them as adopted; what is
/// skipped on the way (too large, past the request's total, managed
/// meanwhile) joins `skipped`.
async fn take(
    ctx: &Context,
    project: &Project,
    fetched: &Fetched,
    head: ObjectId,
    candidates: Vec<(String, TreeFile)>,
    actor: &str,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Adopted>, AdoptError> {
    // Sizes come from the object headers, so what is skipped is never read,
    // and what is read stays within one request's total.
    let (found, left) = fetched
        .with_repo(move |repo| {
            let mut found = Vec::new();
            let mut left = Vec::new();
            let mut total = 0usize;
            let mut full = false;
            for (path, file) in candidates {
                if full {
                    left.push(Skipped {
                        path,
                        reason: over_total(),
                    });
                    continue;
                }
                let header = repo.find_header(file.blob).map_err(crate::git::missing)?;
                let size = usize::try_from(header.size()).unwrap_or(usize::MAX);
                if let Some(reason) = too_large(size) {
                    left.push(Skipped { path, reason });
                } else if total + size > MAX_REQUEST_BYTES {
                    // Stop here: this file and every one after it wait.
                    full = true;
                    left.push(Skipped {
                        path,
                        reason: over_total(),
                    });
                } else {
                    total += size;
                    found.push(FoundFile {
                        content: read::read_blob(repo, file.blob)?,
                        path,
                        executable: file.executable,
                    });
                }
            }
            Ok((found, left))
        })
        .await
        .map_err(SyncError::from)?;
    skipped.extend(left);
    if found.is_empty() {
        // Nothing to store: no transaction, no audit event.
        return Ok(Vec::new());
    }
    let stored = ctx
        .store
        .adopt_files(project.id, &head.to_string(), &found, actor, now_ms())
        .await
        .map_err(|e| match e {
            AdoptStoreError::Moved { head, recorded } => AdoptError::Moved { head, recorded },
            AdoptStoreError::Store(e) => AdoptError::Sync(e.into()),
        })?;
    skipped.extend(stored.raced.into_iter().map(|path| Skipped {
        path,
        reason: ALREADY_MANAGED.to_string(),
    }));
    Ok(stored
        .adopted
        .into_iter()
        .map(|(path, blob_sha)| Adopted { path, blob_sha })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(paths: &[&str]) -> BTreeMap<String, TreeFile> {
        paths
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    TreeFile {
                        blob: read::blob_id(p.as_bytes()),
                        executable: false,
                    },
                )
            })
            .collect()
    }

    fn names(candidates: &[(String, TreeFile)]) -> Vec<&str> {
        candidates.iter().map(|(p, _)| p.as_str()).collect()
    }

    #[test]
    fn without_paths_every_unmanaged_file_qualifies() {
        let managed: HashSet<String> = ["b.tf".to_string()].into();
        let (candidates, skipped) = choose(&listing(&["a.tf", "b.tf", "m/c.tf"]), &managed, None);
        assert_eq!(names(&candidates), vec!["a.tf", "m/c.tf"]);
        assert_eq!(
            skipped,
            vec![Skipped {
                path: "b.tf".into(),
                reason: ALREADY_MANAGED.into()
            }]
        );
    }

    #[test]
    fn named_paths_are_checked_one_by_one() {
        let managed: HashSet<String> = ["b.tf".to_string()].into();
        let requested = ["a.tf", "b.tf", "gone.tf", "a.tf"].map(String::from);
        let (candidates, skipped) = choose(
            &listing(&["a.tf", "b.tf", "c.tf"]),
            &managed,
            Some(&requested),
        );
        assert_eq!(names(&candidates), vec!["a.tf"]);
        let reasons: Vec<(&str, &str)> = skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![("b.tf", ALREADY_MANAGED), ("gone.tf", NOT_IN_REPOSITORY)]
        );
    }

    #[test]
    fn repository_paths_graft_could_not_manage_are_skipped() {
        let (candidates, skipped) = choose(
            &listing(&["ok.tf", "tab\there.tf", "back\\slash.tf"]),
            &HashSet::new(),
            None,
        );
        assert_eq!(names(&candidates), vec!["ok.tf"]);
        let skipped: Vec<&str> = skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(skipped, vec!["back\\slash.tf", "tab\there.tf"]);
    }

    #[test]
    fn files_over_the_file_limit_are_too_large() {
        assert_eq!(too_large(MAX_FILE_BYTES), None);
        assert!(too_large(MAX_FILE_BYTES + 1).is_some_and(|r| r.contains("at most")));
    }
}
