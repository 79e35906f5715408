//! The optional server-side check (`GRAFT_CHECK_COMMAND`): the overlaid
//! tree is written to a temporary folder and the admin's command runs there
//! with a timeout, a clean environment (no graft secrets) and captured,
//! size-limited output.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gix::ObjectId;
use tokio::io::AsyncReadExt;

use super::validate::{Finding, Severity};
use super::{GitError, local, missing, paths};

/// Output kept from the command; the rest is dropped with a note.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// stdout and stderr interleaved, cut at [`OUTPUT_LIMIT`].
    pub output: String,
    pub duration: Duration,
}

impl CheckOutcome {
    pub fn passed(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }

    /// The outcome as a validation finding (none when it passed).
    pub fn finding(&self, command: &str) -> Option<Finding> {
        if self.passed() {
            return None;
        }
        let why = if self.timed_out {
            format!("timed out after {}s", self.duration.as_secs())
        } else {
            match self.exit_code {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_string(),
            }
        };
        Some(Finding {
            file: String::new(),
            line: None,
            message: format!("check command `{command}` {why}:\n{}", self.output),
            severity: Severity::Error,
        })
    }
}

/// Writes every file of `tree` below `dir` (blobs, executables, links;
/// submodules become empty folders). Blocking.
pub fn materialize(repo: &gix::Repository, tree: ObjectId, dir: &Path) -> Result<(), GitError> {
    let tree = repo.find_tree(tree).map_err(missing)?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse()
        .breadthfirst(&mut recorder)
        .map_err(missing)?;
    for entry in recorder.records {
        // Names come from the repository: a crafted tree must not write
        // outside `dir` (`..`, absolute paths, `.git`).
        let name = entry.filepath.to_string();
        paths::validate_checkout_path(&name)?;
        let path = dir.join(name);
        if entry.mode.is_tree() || entry.mode.is_commit() {
            std::fs::create_dir_all(&path).map_err(local)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(local)?;
        }
        let data = repo.find_blob(entry.oid).map_err(missing)?.data.clone();
        if entry.mode.is_link() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(String::from_utf8_lossy(&data).as_ref(), &path)
                .map_err(local)?;
            continue;
        }
        std::fs::write(&path, &data).map_err(local)?;
        #[cfg(unix)]
        if entry.mode.is_executable() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(local)?;
        }
    }
    Ok(())
}

/// Kills the process group the command leads (it and anything it started),
/// with the shell's own `kill` (the command runs under `sh` anyway).
async fn end_group(group: Option<u32>) {
    if let Some(group) = group {
        let _ = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill -9 -{group} 2>/dev/null"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

/// Runs `command` with `sh -c` in `dir`. The environment holds only PATH,
/// a throw-away HOME, the locale and `GRAFT_BASE_PATH`.
pub async fn run(
    command: &str,
    dir: &Path,
    base_path: &str,
    timeout: Duration,
) -> Result<CheckOutcome, GitError> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec 2>&1\n{command}"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("LANG", "C.UTF-8")
        .env("GRAFT_BASE_PATH", base_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| GitError::Local(format!("cannot run the check command: {e}")))?;
    let group = child.id();
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| local("check command has no output pipe"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut buf = [0u8; 8192];
    let mut status = None;
    let mut eof = false;
    let mut timed_out = false;
    // Output is collected as it comes, so a command that times out still
    // shows what it printed. When the command exits, whatever it left
    // running in the background is ended, which also closes the pipe.
    while !(eof && status.is_some()) {
        tokio::select! {
            read = stdout.read(&mut buf), if !eof => match read {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => {
                    let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    dropped += n.saturating_sub(room);
                }
            },
            exited = child.wait(), if status.is_none() => {
                status = Some(exited.ok());
                end_group(group).await;
            }
            _ = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
        }
    }
    if timed_out {
        end_group(group).await;
    }
    let status = status.flatten();
    let mut output = String::from_utf8_lossy(&kept).to_string();
    if dropped > 0 {
        output.push_str(&format!("\n[… {dropped} more bytes of output dropped]"));
    }
    Ok(CheckOutcome {
        exit_code: status.and_then(|s| s.code()).filter(|_| !timed_out),
        timed_out,
        output,
        duration: started.elapsed(),
    })
}
