//! `graft pull --project ID DIR`: the inverse of `graft push`. Downloads
//! the project's export (a tar.gz of its managed files) and writes each
//! file under DIR. A file in DIR that differs both from the server's
//! version and from what the last pull wrote (remembered in
//! [`MANIFEST`]) is a local change: the pull refuses before writing
//! anything unless `--force`. Paths are checked like the API's, every
//! directory on the way must be a real directory (no symlink is
//! followed), and files are replaced by rename, so nothing is written
//! outside DIR.

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

/// What the last pull wrote into DIR: path → git blob id. `graft push`
/// does not upload it.
pub const MANIFEST: &str = ".graft-pull.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not there, or as graft last wrote it: write the server's version.
    Write,
    /// Already the server's version.
    Keep,
    /// Changed in DIR since graft wrote it.
    LocalChange,
}

/// What to do with one file, from the blob ids of the local file (if
/// any), the server's and what the last pull wrote (if it did).
pub fn decide(local: Option<&str>, server: &str, written: Option<&str>, force: bool) -> Action {
    match local {
        None => Action::Write,
        Some(local) if local == server => Action::Keep,
        Some(local) if force || Some(local) == written => Action::Write,
        Some(_) => Action::LocalChange,
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

fn read_manifest(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read(dir.join(MANIFEST))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
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

pub async fn pull(args: &PullArgs) -> Result<()> {
    let remote = Remote::new(&args.remote)?;
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let listing = remote
        .send(remote.request(Method::GET, &format!("/projects/{}/files", args.project)))
        .await?;
    let written = read_manifest(dir);
    // Refuse before downloading anything when DIR has local changes.
    let mut changed = Vec::new();
    for file in listing["files"].as_array().into_iter().flatten() {
        let (Some(path), Some(blob)) = (file["path"].as_str(), file["blob_sha"].as_str()) else {
            continue;
        };
        if file["state"] == "deleted_pending" {
            continue;
        }
        let local = local_blob(&target(dir, path)?)?;
        if decide(
            local.as_deref(),
            blob,
            written.get(path).map(String::as_str),
            args.force,
        ) == Action::LocalChange
        {
            changed.push(path.to_string());
        }
    }
    if !changed.is_empty() {
        for path in &changed {
            eprintln!("changed locally: {path}");
        }
        bail!(
            "{} file(s) in {} changed since graft wrote them; nothing was written (--force overwrites them)",
            changed.len(),
            dir.display()
        );
    }

    let response = remote
        .request(Method::GET, &format!("/projects/{}/export", args.project))
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
    archive.rewind()?;

    let count = listing["files"].as_array().map_or(0, Vec::len);
    let progress = ProgressBar::new(count as u64);
    progress.set_style(
        ProgressStyle::with_template("writing [{bar:30}] {pos}/{len} file(s)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut manifest = written.clone();
    let (mut wrote, mut kept) = (0usize, 0usize);
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
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        let server = blob_id(&content).to_string();
        let at = target(dir, &path)?;
        let local = local_blob(&at)?;
        match decide(
            local.as_deref(),
            &server,
            written.get(&path).map(String::as_str),
            args.force,
        ) {
            Action::Write => {
                write_file(&at, &content, mode)?;
                wrote += 1;
            }
            Action::Keep => kept += 1,
            Action::LocalChange => {
                bail!("{path} changed locally while pulling; run the pull again")
            }
        }
        manifest.insert(path, server);
        progress.inc(1);
    }
    progress.finish_and_clear();
    std::fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("cannot write {}", dir.join(MANIFEST).display()))?;
    println!(
        "project {} → {}: {wrote} file(s) written, {kept} unchanged",
        args.project,
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_changes_are_kept_unless_forced() {
        assert_eq!(decide(None, "s", None, false), Action::Write);
        assert_eq!(decide(Some("s"), "s", None, false), Action::Keep);
        assert_eq!(decide(Some("w"), "s", Some("w"), false), Action::Write);
        assert_eq!(
            decide(Some("x"), "s", Some("w"), false),
            Action::LocalChange
        );
        assert_eq!(decide(Some("x"), "s", None, false), Action::LocalChange);
        assert_eq!(decide(Some("x"), "s", Some("w"), true), Action::Write);
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
