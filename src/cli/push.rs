//! `graft push --project ID DIR`: upload a directory of generated files to
//! a running graft in one request (`PUT /api/v1/projects/{id}/files`), so
//! the project's managed set changes all at once.
//!
//! DIR is walked with the `ignore` crate: `.graftignore` and `.gitignore`
//! files (gitignore syntax, in DIR and below) exclude paths, `.git` is
//! skipped, hidden files are kept (generated code has `.terraform.lock.hcl`
//! and friends). A file that graft would refuse (bad path, symlink,
//! unreadable) stops the push before anything is sent.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::config::PushArgs;
use crate::cli::remote::Remote;
use crate::file_set::{MAX_FILE_BYTES, content_json};
use crate::store::files::{Change, Stored, change_for};

/// Ignore files with gitignore syntax that graft push honours.
pub const IGNORE_FILE: &str = ".graftignore";
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Relative to DIR, `/`-separated.
    pub path: String,
    pub content: Vec<u8>,
    /// Any execute bit set (kept in git as mode 100755).
    pub executable: bool,
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

#[derive(Debug, Default)]
pub struct Walked {
    pub files: Vec<LocalFile>,
    /// (path, reason)
    pub rejected: Vec<(String, String)>,
}

fn relative(dir: &Path, path: &Path) -> std::result::Result<String, String> {
    let rel = path
        .strip_prefix(dir)
        .map_err(|_| "outside the directory".to_string())?;
    let mut parts = Vec::new();
    for component in rel.components() {
        match component {
            std::path::Component::Normal(part) => parts.push(
                part.to_str()
                    .ok_or_else(|| "the file name is not valid UTF-8".to_string())?,
            ),
            _ => return Err("unexpected path component".into()),
        }
    }
    Ok(parts.join("/"))
}

/// Every file under `dir` that is not ignored, sorted by path.
pub fn walk(dir: &Path) -> Result<Walked> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut walked = Walked::default();
    let walker = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .parents(false)
        .ignore(false)
        .git_global(false)
        .git_exclude(false)
        .git_ignore(true)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|entry| entry.file_name() != ".git")
        .sort_by_file_path(|a, b| a.cmp(b))
        .build();
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let path = match &e {
                    ignore::Error::WithPath { path, .. } => relative(dir, path).unwrap_or_default(),
                    _ => String::new(),
                };
                walked.rejected.push((path, e.to_string()));
                continue;
            }
        };
        let Some(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() || entry.depth() == 0 {
            continue;
        }
        let path = match relative(dir, entry.path()) {
            Ok(path) => path,
            Err(reason) => {
                walked
                    .rejected
                    .push((entry.path().display().to_string(), reason));
                continue;
            }
        };
        // What `graft pull` remembers about DIR is not a generated file.
        if entry.file_name() == IGNORE_FILE
            || (entry.depth() == 1 && entry.file_name() == super::pull::MANIFEST)
        {
            continue;
        }
        if kind.is_symlink() {
            walked.rejected.push((
                path,
                "symbolic links are not uploaded; copy the file it points to instead".into(),
            ));
            continue;
        }
        if !kind.is_file() {
            walked.rejected.push((path, "not a regular file".into()));
            continue;
        }
        if let Err(reason) = crate::validation::file_path(&path) {
            walked.rejected.push((path, reason));
            continue;
        }
        let executable = entry.metadata().map(|m| is_executable(&m)).unwrap_or(false);
        match std::fs::read(entry.path()) {
            Ok(content) if content.len() > MAX_FILE_BYTES => walked.rejected.push((
                path,
                format!(
                    "{} bytes is more than graft's limit of {MAX_FILE_BYTES} bytes per file",
                    content.len()
                ),
            )),
            Ok(content) => walked.files.push(LocalFile {
                path,
                content,
                executable,
            }),
            Err(e) => walked.rejected.push((path, format!("cannot read it: {e}"))),
        }
    }
    Ok(walked)
}

/// The request body of `PUT /api/v1/projects/{id}/files`.
pub fn request_body(files: &[LocalFile], delete_missing: bool, source: &str) -> Value {
    json!({
        "files": files
            .iter()
            .map(|f| {
                // The mode is always sent: DIR is the truth, also when a
                // file lost its execute bit.
                json!({
                    "path": f.path,
                    "content": content_json(&f.content),
                    "executable": f.executable,
                })
            })
            .collect::<Vec<_>>(),
        "delete_missing": delete_missing,
        "source": source,
    })
}

fn print_changes(project: i64, answer: &Value) {
    let changed = answer["changed"].as_array().cloned().unwrap_or_default();
    for change in &changed {
        println!(
            "{:<9} {}",
            change["change"].as_str().unwrap_or("changed"),
            change["path"].as_str().unwrap_or("?")
        );
    }
    if changed.is_empty() {
        println!("no changes: project {project} already has these files");
        return;
    }
    match answer["sync_job_id"].as_i64() {
        Some(job) => println!(
            "{} path(s) changed in project {project}; sync job {job} queued",
            changed.len()
        ),
        None => println!("{} path(s) changed in project {project}", changed.len()),
    }
}

/// A managed file as `GET …/files` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub blob_sha: String,
    pub executable: bool,
    /// `deleted_pending`: graft will remove it, so it counts as absent.
    pub deleted: bool,
}

/// What a push of `local` would change, by the API's own rule
/// ([`change_for`]). Sorted by path.
pub fn planned_changes(
    local: &[LocalFile],
    remote: &BTreeMap<String, RemoteFile>,
    delete_missing: bool,
) -> Vec<(&'static str, String)> {
    let mut changes = Vec::new();
    for file in local {
        let blob = crate::git::read::blob_id(&file.content).to_string();
        let stored = remote.get(&file.path).map(|r| Stored {
            blob_sha: &r.blob_sha,
            executable: r.executable,
            pending_deletion: r.deleted,
        });
        match change_for(stored, &blob, file.executable) {
            Some(Change::Added) => changes.push(("add", file.path.clone())),
            Some(_) => changes.push(("modify", file.path.clone())),
            None => {}
        }
    }
    if delete_missing {
        let named: HashSet<&str> = local.iter().map(|f| f.path.as_str()).collect();
        for (path, _) in remote
            .iter()
            .filter(|(p, r)| !r.deleted && !named.contains(p.as_str()))
        {
            changes.push(("delete", path.clone()));
        }
    }
    changes.sort_by(|a, b| a.1.cmp(&b.1));
    changes
}

/// `--dry-run`: what would change, compared with what graft has.
async fn dry_run(remote: &Remote, args: &PushArgs, files: &[LocalFile]) -> Result<()> {
    let path = format!("/projects/{}/files", args.project);
    let answer = remote
        .send(remote.request(Method::GET, &path))
        .await
        .with_context(|| {
            format!(
                "cannot read the current files of project {} to compare",
                args.project
            )
        })?;
    let remote_files: BTreeMap<String, RemoteFile> = answer["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f["path"].as_str()?.to_string(),
                RemoteFile {
                    blob_sha: f["blob_sha"].as_str().unwrap_or_default().to_string(),
                    executable: f["executable"].as_bool().unwrap_or(false),
                    deleted: f["state"] == "deleted_pending",
                },
            ))
        })
        .collect();
    let changes = planned_changes(files, &remote_files, args.delete_missing);
    for (change, path) in &changes {
        println!("would {change:<8} {path}");
    }
    let changes = changes.len();
    println!(
        "dry run: {changes} path(s) would change in project {} ({} file(s) read); nothing uploaded",
        args.project,
        files.len()
    );
    Ok(())
}

pub async fn push(args: &PushArgs) -> Result<()> {
    let walked = walk(&args.dir)?;
    if !walked.rejected.is_empty() {
        for (path, reason) in &walked.rejected {
            eprintln!("rejected: {path}: {reason}");
        }
        bail!(
            "{} file(s) rejected; nothing was uploaded (fix them or list them in {IGNORE_FILE})",
            walked.rejected.len()
        );
    }
    if walked.files.is_empty() && !args.delete_missing {
        bail!(
            "{} holds no files to upload (after {IGNORE_FILE}/.gitignore)",
            args.dir.display()
        );
    }
    let remote = Remote::new(&args.remote)?;
    if args.dry_run {
        return dry_run(&remote, args, &walked.files).await;
    }
    let body = serde_json::to_vec(&request_body(
        &walked.files,
        args.delete_missing,
        &args.source,
    ))?;
    let progress = ProgressBar::new(body.len() as u64);
    progress.set_style(
        ProgressStyle::with_template(
            "uploading {pos_files} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("pos_files", {
            let count = walked.files.len();
            move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{count} file(s)");
            }
        })
        .progress_chars("=> "),
    );
    let length = body.len();
    let chunks: Vec<Vec<u8>> = body.chunks(CHUNK).map(<[u8]>::to_vec).collect();
    let bar = progress.clone();
    let stream = futures_util::stream::iter(chunks).map(move |chunk| {
        bar.inc(chunk.len() as u64);
        Ok::<_, std::io::Error>(chunk)
    });
    let request = remote
        .request(Method::PUT, &format!("/projects/{}/files", args.project))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::CONTENT_LENGTH, length)
        .body(reqwest::Body::wrap_stream(stream));
    let answer = remote.send(request).await;
    progress.finish_and_clear();
    let answer = answer.with_context(|| {
        format!(
            "the upload to project {} was refused; nothing changed",
            args.project
        )
    })?;
    print_changes(args.project, &answer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_counts_like_the_api() {
        let local = |path: &str, content: &str, executable: bool| LocalFile {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            executable,
        };
        let remote = |content: &str, executable: bool, deleted: bool| RemoteFile {
            blob_sha: crate::git::read::blob_id(content.as_bytes()).to_string(),
            executable,
            deleted,
        };
        let files = vec![
            local("same.tf", "a", false),
            local("edited.tf", "new", false),
            local("now-executable.sh", "x", true),
            local("back-again.tf", "b", false),
            local("new.tf", "n", false),
        ];
        let graft: BTreeMap<String, RemoteFile> = [
            ("same.tf", remote("a", false, false)),
            ("edited.tf", remote("old", false, false)),
            ("now-executable.sh", remote("x", false, false)),
            // Pending deletion with the same content: putting it back adds it.
            ("back-again.tf", remote("b", false, true)),
            ("gone.tf", remote("g", false, false)),
            // Already being deleted: not deleted again.
            ("going.tf", remote("h", false, true)),
        ]
        .into_iter()
        .map(|(p, r)| (p.to_string(), r))
        .collect();
        let owned = |items: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
            items.iter().map(|(c, p)| (*c, p.to_string())).collect()
        };
        assert_eq!(
            planned_changes(&files, &graft, false),
            owned(&[
                ("add", "back-again.tf"),
                ("modify", "edited.tf"),
                ("add", "new.tf"),
                ("modify", "now-executable.sh"),
            ])
        );
        assert_eq!(
            planned_changes(&files, &graft, true),
            owned(&[
                ("add", "back-again.tf"),
                ("modify", "edited.tf"),
                ("delete", "gone.tf"),
                ("add", "new.tf"),
                ("modify", "now-executable.sh"),
            ])
        );
    }

    #[test]
    fn walk_honours_ignore_files_and_rejects_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("modules/net")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "x").unwrap();
        std::fs::write(root.join("main.tf"), "a").unwrap();
        std::fs::write(root.join(".terraform.lock.hcl"), "l").unwrap();
        std::fs::write(root.join("modules/net/vpc.tf"), "v").unwrap();
        std::fs::write(root.join("plan.out"), "p").unwrap();
        std::fs::write(root.join("secret.tfvars"), "s").unwrap();
        std::fs::write(root.join(".graftignore"), "*.tfvars\n").unwrap();
        std::fs::write(root.join(".gitignore"), "*.out\n").unwrap();
        let walked = walk(root).unwrap();
        let paths: Vec<&str> = walked.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".gitignore",
                ".terraform.lock.hcl",
                "main.tf",
                "modules/net/vpc.tf"
            ]
        );
        assert!(walked.rejected.is_empty());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/passwd", root.join("link.tf")).unwrap();
            let walked = walk(root).unwrap();
            assert_eq!(walked.rejected.len(), 1);
            assert_eq!(walked.rejected[0].0, "link.tf");
        }
    }
}
