//! `graft pull --project ID DIR`: the inverse of `graft push`. Downloads
//! the project's export (a tar.gz of its managed files) and writes each
//! file under DIR; a file graft wrote there before and the server no
//! longer has is removed. A file in DIR that differs both from the
//! server's version and from what graft wrote (remembered in the
//! [`manifest`]) is a local change: the pull refuses before writing
//! anything unless `--force`. Paths are checked like the API's, every
//! directory on the way must be a real directory (no symlink is
//! followed), and files are replaced by rename, so nothing is written
//! outside DIR.

mod manifest;

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;

use crate::cli::config::PullArgs;
use crate::cli::remote::Remote;
use crate::git::read::blob_id;
use crate::validation;

pub use manifest::{MANIFEST, Manifest};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not there, or as graft last wrote it: write the server's version.
    Write,
    /// Already the server's version, or gone on both sides.
    Keep,
    /// graft wrote it and the server no longer has it: remove it.
    Remove,
    /// Changed in DIR since graft wrote it.
    LocalChange,
}

/// What to do with one file, from the blob ids of the local file (if
/// any), the server's (if it has the file) and those graft wrote there.
pub fn decide(
    local: Option<&str>,
    server: Option<&str>,
    written: &[String],
    force: bool,
) -> Action {
    let graft_wrote = |local: &str| force || written.iter().any(|w| w == local);
    match (local, server) {
        (None, Some(_)) => Action::Write,
        (None, None) => Action::Keep,
        (Some(local), Some(server)) if local == server => Action::Keep,
        (Some(local), Some(_)) if graft_wrote(local) => Action::Write,
        (Some(local), None) if graft_wrote(local) => Action::Remove,
        (Some(_), _) => Action::LocalChange,
    }
}

/// `dir`/`path` after checking that `path` is a relative path graft
/// accepts and that no existing component below `dir` is a symlink (or,
/// before the last, anything but a directory).
fn target(dir: &Path, path: &str) -> Result<PathBuf> {
    validation::file_path(path).map_err(|e| anyhow!("refusing the path `{path}`: {e}"))?;
    let mut at = dir.to_path_buf();
    let parts: Vec<&str> = path.split('/').collect();
    for (index, part) in parts.iter().enumerate() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                bail!(
                    "`{}` is a symbolic link; graft pull does not follow links",
                    at.display()
                )
            }
            Ok(meta) if index + 1 < parts.len() && !meta.is_dir() => {
                bail!(
                    "`{}` is in the way of `{path}` and is not a directory",
                    at.display()
                )
            }
            Ok(meta) if index + 1 == parts.len() && !meta.is_file() => {
                bail!("`{}` is not a regular file", at.display())
            }
            _ => {}
        }
    }
    Ok(at)
}

/// The blob id of the file at `path`, if there is one.
fn local_blob(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(content) => Ok(Some(blob_id(&content).to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `content` at `path` through a temporary file and a rename.
fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let parent = path.parent().context("a file path has a parent")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    file.write_all(content)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode & 0o777))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.persist(path)
        .map_err(|e| anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// One file the pull looked at before downloading: where it goes, what
/// DIR holds there (read once) and what the listing said to do.
struct Planned {
    at: PathBuf,
    local: Option<String>,
    action: Action,
}

/// Looks once at every file the server has or graft wrote before, and
/// decides what to do with it.
fn plan(
    dir: &Path,
    server: &BTreeMap<String, String>,
    manifest: &Manifest,
    force: bool,
) -> Result<BTreeMap<String, Planned>> {
    let mut planned = BTreeMap::new();
    for path in server.keys().chain(manifest.paths()) {
        if planned.contains_key(path) {
            continue;
        }
        let at = target(dir, path)?;
        let local = local_blob(&at)?;
        let on_server = server.get(path).map(String::as_str);
        let action = decide(local.as_deref(), on_server, manifest.written(path), force);
        planned.insert(path.clone(), Planned { at, local, action });
    }
    Ok(planned)
}

pub async fn pull(args: &PullArgs) -> Result<()> {
    let remote = Remote::new(&args.remote)?;
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let listing = remote
        .send(remote.request(Method::GET, &format!("/projects/{}/files", args.project)))
        .await?;
    // What the export holds: files pending deletion are left out.
    let server: BTreeMap<String, String> = listing["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|file| file["state"] != "deleted_pending")
        .filter_map(|file| {
            Some((
                file["path"].as_str()?.into(),
                file["blob_sha"].as_str()?.into(),
            ))
        })
        .collect();
    let mut manifest = Manifest::read(dir);
    // Refuse before downloading anything when DIR has local changes.
    let mut planned = plan(dir, &server, &manifest, args.force)?;
    let changed: Vec<&String> = planned
        .iter()
        .filter(|(_, plan)| plan.action == Action::LocalChange)
        .map(|(path, _)| path)
        .collect();
    if !changed.is_empty() {
        for path in &changed {
            eprintln!("changed locally: {path}");
        }
        bail!(
            "{} file(s) in {} changed since graft wrote them; nothing was written (--force \
             overwrites or removes them)",
            changed.len(),
            dir.display()
        );
    }

    let mut archive = download(&remote, args.project).await?;
    // Before any file is replaced, its new version counts as graft's too.
    let mut news = false;
    for (path, plan) in &planned {
        if let (Action::Write, Some(blob)) = (plan.action, server.get(path)) {
            news |= manifest.expect(path, blob);
        }
    }
    if news {
        manifest.save(dir)?;
    }

    let progress = ProgressBar::new(server.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("writing [{bar:30}] {pos}/{len} file(s)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let (mut wrote, mut kept, mut removed) = (0usize, 0usize, 0usize);
    archive.rewind()?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().context("the export is not a tar.gz")? {
        let mut entry = entry.context("the export is damaged")?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            bail!("the export holds something other than a regular file");
        }
        let path = entry
            .path()?
            .to_str()
            .context("a path in the export is not UTF-8")?
            .to_string();
        let mode = entry.header().mode().unwrap_or(0o644);
        let size = entry.header().size().context("the export is damaged")?;
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        // A short archive reads as a short file: never write it.
        if u64::try_from(content.len()).ok() != Some(size) {
            bail!("the export is damaged: `{path}` is cut short; nothing more was written");
        }
        let blob = blob_id(&content).to_string();
        // A file the listing did not have yet is looked at now.
        let (at, local) = match planned.remove(&path) {
            Some(plan) => (plan.at, plan.local),
            None => {
                let at = target(dir, &path)?;
                let local = local_blob(&at)?;
                (at, local)
            }
        };
        let written = manifest.written(&path);
        match decide(local.as_deref(), Some(&blob), written, args.force) {
            Action::Write => {
                // The export is newer than the listing: record it first.
                if manifest.expect(&path, &blob) {
                    manifest.save(dir)?;
                }
                write_file(&at, &content, mode)?;
                wrote += 1;
            }
            Action::Keep => kept += 1,
            Action::Remove | Action::LocalChange => {
                manifest.save(dir)?;
                bail!(
                    "{path} changed on the server while pulling and differs locally; run the \
                     pull again"
                )
            }
        }
        manifest.settle(&path, &blob);
        progress.inc(1);
    }
    progress.finish_and_clear();
    // What is left is not in the export: gone from the server.
    for (path, plan) in planned {
        match decide(
            plan.local.as_deref(),
            None,
            manifest.written(&path),
            args.force,
        ) {
            Action::Remove => {
                remove_file(dir, &plan.at)?;
                removed += 1;
                manifest.forget(&path);
            }
            Action::Keep => manifest.forget(&path),
            // Deleted on the server between the listing and the export.
            Action::Write | Action::LocalChange => {
                eprintln!("kept {path}: the server no longer has it, but it changed locally");
            }
        }
    }
    manifest.save(dir)?;
    println!(
        "project {} → {}: {wrote} file(s) written, {removed} removed, {kept} unchanged",
        args.project,
        dir.display()
    );
    Ok(())
}

/// The project's export, downloaded whole into a temporary file before
/// anything is written.
async fn download(remote: &Remote, project: i64) -> Result<std::fs::File> {
    let response = remote
        .request(Method::GET, &format!("/projects/{project}/export"))
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach graft: {}", e.without_url()))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        bail!(
            "graft refused the export [HTTP {}]: {text}",
            status.as_u16()
        );
    }
    let mut archive = tempfile::tempfile().context("cannot create a temporary file")?;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        archive.write_all(&chunk.context("the download broke off; nothing was written")?)?;
    }
    Ok(archive)
}

/// Removes the file at `at` and the folders below `dir` it leaves empty.
fn remove_file(dir: &Path, at: &Path) -> Result<()> {
    match std::fs::remove_file(at) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", at.display())),
    }
    let mut folder = at.parent();
    while let Some(current) = folder.filter(|f| *f != dir && f.starts_with(dir)) {
        // Only an empty folder goes; the first that is not stops the walk.
        if std::fs::remove_dir(current).is_err() {
            break;
        }
        folder = current.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_changes_are_kept_unless_forced() {
        let w = ["w".to_string()];
        assert_eq!(decide(None, Some("s"), &[], false), Action::Write);
        assert_eq!(decide(Some("s"), Some("s"), &[], false), Action::Keep);
        assert_eq!(decide(Some("w"), Some("s"), &w, false), Action::Write);
        assert_eq!(decide(Some("x"), Some("s"), &w, false), Action::LocalChange);
        assert_eq!(
            decide(Some("x"), Some("s"), &[], false),
            Action::LocalChange
        );
        assert_eq!(decide(Some("x"), Some("s"), &w, true), Action::Write);
        let either = ["w".to_string(), "s2".to_string()];
        assert_eq!(
            decide(Some("s2"), Some("s3"), &either, false),
            Action::Write,
            "either version of a pull stopped part-way is graft's"
        );
    }

    #[test]
    fn files_the_server_dropped_go_unless_changed_locally() {
        let w = ["w".to_string()];
        assert_eq!(decide(Some("w"), None, &w, false), Action::Remove);
        assert_eq!(decide(None, None, &w, false), Action::Keep);
        assert_eq!(decide(Some("x"), None, &w, false), Action::LocalChange);
        assert_eq!(decide(Some("x"), None, &w, true), Action::Remove);
    }

    #[test]
    fn paths_stay_inside_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(target(dir.path(), "../x.tf").is_err());
        assert!(target(dir.path(), "/etc/passwd").is_err());
        assert_eq!(
            target(dir.path(), "a/b.tf").unwrap(),
            dir.path().join("a/b.tf")
        );
        #[cfg(unix)]
        {
            let outside = tempfile::tempdir().unwrap();
            std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
            let err = target(dir.path(), "link/x.tf").unwrap_err().to_string();
            assert!(err.contains("symbolic link"), "{err}");
        }
    }
}
