//! The clone-and-overlay pipeline in steps the sync engine composes:
//! [`fetch`] (bring the mirror up to date, keep it locked), [`build`]
//! (overlay → validate → check → commit, on whichever head the engine
//! chose) and then [`super::push::push`] with the push mode the engine
//! decides. [`prepare`] is fetch + build on one branch. Nothing here
//! decides policy.

use std::collections::{BTreeMap, HashSet};

use gix::ObjectId;

use super::check::{self, Check};
use super::mirror::{Mirror, MirrorCache, Want};
use super::overlay::{self, CommitInfo, ManagedFile, Overlay, OverlayInput};
use super::push::Advertised;
use super::read::commit_tree;
use super::validate::{self, Finding};
use super::{GitAuth, GitError, Identity, local};

/// A fetched mirror, still locked for this job.
#[derive(Debug)]
pub struct Fetched {
    pub mirror: Mirror,
    /// Every branch head as fetched.
    pub heads: BTreeMap<String, ObjectId>,
    pub objects_received: u64,
    /// Where the mirror came from, to fetch more of it later.
    origin: Option<(String, GitAuth)>,
    /// The push's ref advertisement, read beside the fetch; the first push
    /// takes it.
    early_push: std::sync::Mutex<Option<Advertised>>,
}

impl Fetched {
    pub fn head(&self, branch: &str) -> Option<ObjectId> {
        self.heads.get(branch).copied()
    }

    /// Keeps `advertised` for the first push from this fetch.
    pub fn with_push_advertisement(self, advertised: Option<Advertised>) -> Self {
        if let Ok(mut early) = self.early_push.lock() {
            *early = advertised;
        }
        self
    }

    /// The advertisement read beside the fetch, once.
    pub fn take_push_advertisement(&self) -> Option<Advertised> {
        self.early_push.lock().ok()?.take()
    }

    /// Runs blocking gix work on the mirror on a blocking thread. An object
    /// that should be there and is not (a corrupt mirror) makes the next
    /// fetch re-create the mirror instead of trusting it; other local
    /// failures (a full disk) leave the mirror be.
    pub async fn with_repo<T: Send + 'static>(
        &self,
        work: impl FnOnce(&gix::Repository) -> Result<T, GitError> + Send + 'static,
    ) -> Result<T, GitError> {
        let path = self.mirror.path.clone();
        let result = tokio::task::spawn_blocking(move || {
            let repo = super::mirror::open(&path)?;
            work(&repo)
        })
        .await
        .map_err(local)?;
        if let Err(GitError::MissingObject(message)) = &result {
            tracing::warn!(mirror = %self.mirror.path.display(), error = %message, "mirror unreadable; it is re-created on the next fetch");
            super::mirror::mark_untrusted(&self.mirror.path);
        }
        result
    }
}

/// Fetches every branch of the repository with its whole history.
pub async fn fetch(
    cache: &MirrorCache,
    key: &str,
    url: &str,
    auth: &GitAuth,
) -> Result<Fetched, GitError> {
    let mirror = cache.lock(key).await;
    let (path, url, auth) = (mirror.path.clone(), url.to_string(), auth.clone());
    let fetched =
        tokio::task::spawn_blocking(move || super::mirror::fetch_path(&path, &url, &auth))
            .await
            .map_err(local)??;
    Ok(Fetched {
        mirror,
        heads: fetched.heads,
        objects_received: fetched.objects_received,
        origin: None,
        early_push: Default::default(),
    })
}

/// Fetches what a sync needs: the `want`ed branches' heads (shallow) and
/// the earlier commits it will compare with. See [`super::mirror::Want`].
pub async fn fetch_wanted(
    cache: &MirrorCache,
    key: &str,
    url: &str,
    auth: &GitAuth,
    want: Want,
) -> Result<Fetched, GitError> {
    let started = std::time::Instant::now();
    let mirror = cache.lock(key).await;
    let (path, url_owned, auth_owned) = (mirror.path.clone(), url.to_string(), auth.clone());
    let fetched = tokio::task::spawn_blocking(move || {
        super::mirror::fetch_wanted(&path, &url_owned, &auth_owned, &want)
    })
    .await
    .map_err(local)??;
    tracing::debug!(
        phase = "fetch",
        elapsed_ms = started.elapsed().as_millis() as u64,
        objects = fetched.objects_received,
        created = fetched.created,
        "sync phase done"
    );
    Ok(Fetched {
        mirror,
        heads: fetched.heads,
        objects_received: fetched.objects_received,
        origin: Some((url.to_string(), auth.clone())),
        early_push: Default::default(),
    })
}

impl Fetched {
    /// Makes sure the mirror holds every commit of `branch` that is not on
    /// `base` (a shallow fetch has only the head), before reading who
    /// committed there. Best effort: without it the walk sees less.
    pub async fn deepen(&self, branch: &str, base: &str) {
        let Some((url, auth)) = self.origin.clone() else {
            return; // fetched with the whole history
        };
        let started = std::time::Instant::now();
        let (path, branch, base) = (
            self.mirror.path.clone(),
            branch.to_string(),
            base.to_string(),
        );
        let result = tokio::task::spawn_blocking(move || {
            super::mirror::deepen_branch(&path, &url, &auth, &branch, &base)
        })
        .await;
        match result {
            Ok(Ok(objects)) => tracing::debug!(
                phase = "deepen",
                elapsed_ms = started.elapsed().as_millis() as u64,
                objects,
                "sync phase done"
            ),
            Ok(Err(e)) => tracing::debug!(error = %e, "could not deepen the branch"),
            Err(e) => tracing::debug!(error = %e, "could not deepen the branch"),
        }
    }
}

/// Runs `work` as the sync phase `phase` (fetch, build, push, publish...),
/// in a span of that name, and logs its duration at debug: where a sync's
/// time goes.
pub async fn phase<T>(phase: &'static str, work: impl std::future::Future<Output = T>) -> T {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let out = work
        .instrument(tracing::debug_span!("sync_phase", phase))
        .await;
    tracing::debug!(
        phase,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "sync phase done"
    );
    out
}

/// What to overlay and how to describe it.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The commit to build on (`None`: an empty branch).
    pub parent: Option<ObjectId>,
    pub base_path: String,
    pub files: Vec<ManagedFile>,
    pub deletions: Vec<String>,
    pub previously_managed: HashSet<String>,
    pub identity: Identity,
    pub project: String,
    pub source: Option<String>,
    /// Extra paragraph for the commit message.
    pub note: Option<String>,
    /// Admin-configured check command and its limits.
    pub check: Option<Check>,
}

#[derive(Debug, Clone)]
pub struct Built {
    pub parent: Option<ObjectId>,
    pub overlay: Overlay,
    /// `None` when the overlay changed nothing.
    pub commit: Option<ObjectId>,
    pub findings: Vec<Finding>,
}

pub async fn build(fetched: &Fetched, spec: BuildSpec) -> Result<Built, GitError> {
    let check_command = spec.check.clone();
    let base_path = spec.base_path.clone();
    let built = fetched
        .with_repo(move |repo| {
            let overlay = overlay::build(
                repo,
                OverlayInput {
                    base_tree: commit_tree(repo, spec.parent)?,
                    base_path: &spec.base_path,
                    files: &spec.files,
                    deletions: &spec.deletions,
                    previously_managed: &spec.previously_managed,
                },
            )?;
            let findings = validate::validate(repo, overlay.tree, &spec.base_path, &spec.files)?;
            let commit = if overlay.is_empty() {
                None
            } else {
                let message = overlay::commit_message(
                    &overlay,
                    &CommitInfo {
                        project: &spec.project,
                        source: spec.source.as_deref(),
                        extra: spec.note.as_deref(),
                    },
                );
                Some(overlay::commit(
                    repo,
                    &overlay,
                    spec.parent,
                    &spec.identity,
                    &message,
                )?)
            };
            Ok(Built {
                parent: spec.parent,
                overlay,
                commit,
                findings,
            })
        })
        .await?;
    let mut built = built;
    if let Some(check) = check_command {
        built
            .findings
            .extend(run_check(&fetched.mirror, built.overlay.tree, &base_path, &check).await?);
    }
    Ok(built)
}

/// Everything [`prepare`] needs: where to fetch from and what to build.
#[derive(Debug, Clone)]
pub struct Request {
    /// Mirror key, e.g. `github/owner/name`.
    pub key: String,
    pub url: String,
    pub auth: GitAuth,
    /// The branch whose head the overlay is built on.
    pub build_on: String,
    pub base_path: String,
    pub files: Vec<ManagedFile>,
    pub deletions: Vec<String>,
    pub previously_managed: HashSet<String>,
    pub identity: Identity,
    pub project: String,
    pub source: Option<String>,
    pub check: Option<Check>,
}

#[derive(Debug)]
pub struct Prepared {
    /// Held until the push is done, so no other job moves the mirror.
    pub mirror: Mirror,
    pub heads: BTreeMap<String, ObjectId>,
    pub parent: Option<ObjectId>,
    pub overlay: Overlay,
    pub commit: Option<ObjectId>,
    pub findings: Vec<Finding>,
    pub objects_received: u64,
}

/// Fetch, then build on the head of `request.build_on`.
pub async fn prepare(cache: &MirrorCache, request: Request) -> Result<Prepared, GitError> {
    let fetched = fetch(cache, &request.key, &request.url, &request.auth).await?;
    let built = build(
        &fetched,
        BuildSpec {
            parent: fetched.head(&request.build_on),
            base_path: request.base_path,
            files: request.files,
            deletions: request.deletions,
            previously_managed: request.previously_managed,
            identity: request.identity,
            project: request.project,
            source: request.source,
            note: None,
            check: request.check,
        },
    )
    .await?;
    Ok(Prepared {
        mirror: fetched.mirror,
        heads: fetched.heads,
        parent: built.parent,
        overlay: built.overlay,
        commit: built.commit,
        findings: built.findings,
        objects_received: fetched.objects_received,
    })
}

/// Materializes the overlaid tree in a temporary folder and runs the
/// check command there, unable to read the mirrors (graft's work folder)
/// or the folder graft runs in (its data by default).
async fn run_check(
    mirror: &Mirror,
    tree: ObjectId,
    base_path: &str,
    check: &Check,
) -> Result<Option<Finding>, GitError> {
    let path = mirror.path.clone();
    let mut private = vec![path.clone()];
    private.extend(std::env::current_dir().ok());
    let workspace = tokio::task::spawn_blocking(move || {
        let repo = super::mirror::open(&path)?;
        let mut workspace = check::Workspace::new()?;
        workspace.materialize(&repo, tree)?;
        Ok::<_, GitError>(workspace)
    })
    .await
    .map_err(local)??;
    let outcome = check::run(check, &workspace, base_path, &private).await?;
    Ok(outcome.finding(&check.command))
}
