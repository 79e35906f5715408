//! The optional server-side check (`GRAFT_CHECK_COMMAND`): the overlaid
//! tree is written to a temporary folder and the admin's command runs there
//! with a timeout, a clean environment (no graft secrets), an empty HOME of
//! its own, inside the kernel sandbox of [`super::sandbox`], and with
//! captured, size-limited output in which secrets of the command line are
//! redacted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gix::ObjectId;
use tokio::io::AsyncReadExt;

use super::sandbox::{self, NetworkMode, Policy, SandboxMode};
use super::validate::{Finding, Severity};
use super::{GitError, local, missing, paths, scrub};

/// `GRAFT_CHECK_COMMAND` with its limits.
#[derive(Clone, PartialEq, Eq)]
pub struct Check {
    pub command: String,
    pub timeout: Duration,
    pub sandbox: SandboxMode,
    pub network: NetworkMode,
}

/// Settings get logged: the command shows with its secrets redacted.
impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("command", &redact(&self.command, &self.command))
            .field("timeout", &self.timeout)
            .field("sandbox", &self.sandbox)
            .field("network", &self.network)
            .finish()
    }
}

impl Check {
    pub fn new(command: impl Into<String>, timeout: Duration) -> Check {
        Check {
            command: command.into(),
            timeout,
            sandbox: SandboxMode::default(),
            network: NetworkMode::default(),
        }
    }
}

/// Output kept from the command; the rest is dropped with a note.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// Symbolic links followed while deciding where a link points; past this
/// the link is taken to point nowhere safe (the kernel stops at 40).
const MAX_LINK_HOPS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Why the command was not started at all (the host cannot sandbox it).
    pub not_run: Option<String>,
    /// graft's notes, then stdout and stderr interleaved, cut at
    /// [`OUTPUT_LIMIT`], with the command line's secrets redacted.
    pub output: String,
    pub duration: Duration,
}

impl CheckOutcome {
    pub fn passed(&self) -> bool {
        self.not_run.is_none() && !self.timed_out && self.exit_code == Some(0)
    }

    /// The outcome as a validation finding (none when it passed). The
    /// command is shown with its secrets redacted.
    pub fn finding(&self, command: &str) -> Option<Finding> {
        if self.passed() {
            return None;
        }
        let why = if let Some(reason) = &self.not_run {
            format!("did not run: {reason}")
        } else if self.timed_out {
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
            message: format!(
                "check command `{}` {why}:\n{}",
                redact(command, command),
                self.output
            ),
            severity: Severity::Error,
        })
    }
}

/// The command's scratch folder: `tree/` (the worktree), `home/` (an empty
/// HOME outside the worktree) and `tmp/` (TMPDIR). Removed when dropped.
pub struct Workspace {
    root: tempfile::TempDir,
    /// Links [`materialize`] left out, for the check output.
    skipped_links: Vec<String>,
}

impl Workspace {
    pub fn new() -> Result<Workspace, GitError> {
        let root = tempfile::Builder::new()
            .prefix("graft-check-")
            .tempdir()
            .map_err(local)?;
        for dir in ["tree", "home", "tmp"] {
            std::fs::create_dir(root.path().join(dir)).map_err(local)?;
        }
        Ok(Workspace {
            root,
            skipped_links: Vec::new(),
        })
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn tree(&self) -> PathBuf {
        self.root.path().join("tree")
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.path().join("tmp")
    }

    /// Writes `tree` into [`Workspace::tree`]. Blocking.
    pub fn materialize(&mut self, repo: &gix::Repository, tree: ObjectId) -> Result<(), GitError> {
        self.skipped_links = materialize(repo, tree, &self.tree())?;
        Ok(())
    }

    pub fn skipped_links(&self) -> &[String] {
        &self.skipped_links
    }
}

/// Writes every file of `tree` below `dir` (blobs, executables, links;
/// submodules become empty folders) and returns the symbolic links it left
/// out because they point outside `dir`. Blocking.
pub fn materialize(
    repo: &gix::Repository,
    tree: ObjectId,
    dir: &Path,
) -> Result<Vec<String>, GitError> {
    let tree = repo.find_tree(tree).map_err(missing)?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse()
        .breadthfirst(&mut recorder)
        .map_err(missing)?;
    let mut links = HashMap::new();
    for entry in recorder.records {
        // Names come from the repository: a crafted tree must not write
        // outside `dir` (`..`, absolute paths, `.git`).
        let name = entry.filepath.to_string();
        paths::validate_checkout_path(&name)?;
        let path = dir.join(&name);
        if entry.mode.is_tree() || entry.mode.is_commit() {
            std::fs::create_dir_all(&path).map_err(local)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(local)?;
        }
        let data = repo.find_blob(entry.oid).map_err(missing)?.data.clone();
        if entry.mode.is_link() {
            links.insert(name, String::from_utf8_lossy(&data).to_string());
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
    // Links last: no file is written through one (a crafted tree can name
    // a link and a folder alike), and each is judged against all others.
    let mut skipped = Vec::new();
    let mut names: Vec<&String> = links.keys().collect();
    names.sort();
    for name in names {
        if !resolves_inside(&links, name) {
            skipped.push(name.clone());
            continue;
        }
        // A crafted tree may name a folder and a link alike: the folder
        // stays, the link is left out.
        #[cfg(unix)]
        match std::os::unix::fs::symlink(&links[name], dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => skipped.push(name.clone()),
            Err(e) => return Err(local(e)),
        }
    }
    Ok(skipped)
}

/// Whether the link `name` (relative to the worktree) resolves inside the
/// worktree, following the worktree's other `links` as the kernel would.
/// Absolute targets and `..` past the top are outside; so is a chain too
/// long to follow. Components that do not exist count as folders.
pub fn resolves_inside(links: &HashMap<String, String>, name: &str) -> bool {
    let mut at: Vec<&str> = name.split('/').collect();
    at.pop();
    let mut pending: Vec<&str> = Vec::new();
    let Some(target) = links.get(name) else {
        return true;
    };
    if target.starts_with('/') {
        return false;
    }
    // `pending` holds the components still to walk, last one first.
    pending.extend(target.split('/').rev());
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return false;
                }
            }
            part => {
                at.push(part);
                if let Some(next) = links.get(&at.join("/")) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS || next.starts_with('/') {
                        return false;
                    }
                    at.pop();
                    pending.extend(next.split('/').rev());
                }
            }
        }
    }
    true
}

/// Values a command line would hand to the command that must not be shown:
/// those of `NAME=value` / `--name=value` words and long token-like words.
pub fn command_secrets(command: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    for word in shell_words(command) {
        let assigned = word.split_once('=').filter(|(name, _)| {
            let name = name.trim_start_matches('-');
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        });
        if let Some((_, value)) = assigned.filter(|(_, value)| !value.is_empty()) {
            secrets.push(value.to_string());
        }
        // Tokens also hide inside quoted words (`-H 'Authorization: …'`).
        secrets.extend(
            word.split(|c: char| c.is_whitespace() || matches!(c, ':' | ',' | '='))
                .filter(|piece| looks_like_token(piece))
                .map(str::to_string),
        );
    }
    secrets.sort();
    secrets.dedup();
    // Longest first, so a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// A word of 24 or more letters, digits, `_`, `-`, `+`, with at least
/// a letter and a digit: API tokens, not paths, hosts or flags.
fn looks_like_token(word: &str) -> bool {
    word.len() >= 24
        && !word.starts_with('-')
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        && word.chars().any(|c| c.is_ascii_digit())
        && word.chars().any(|c| c.is_ascii_alphabetic())
}

/// The command split into words the way `sh` would, roughly: quotes are
/// removed and kept together, operators split.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => word.extend(chars.next()),
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, '\\') => word.extend(chars.next()),
            (None, c) if c.is_whitespace() || ";&|()<>`".contains(c) => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `text` with the secrets of `command` (and URL credentials) replaced.
fn redact(text: &str, command: &str) -> String {
    scrub::scrub(text, &command_secrets(command))
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

/// Runs `check.command` with `sh -c` in the workspace's tree, confined as
/// `check.sandbox` says. The environment holds only PATH, HOME and TMPDIR
/// (both in the workspace, outside the tree), the locale, `GRAFT_BASE_PATH`
/// and what keeps git from reading any configuration but the worktree's
/// own repository. `private` are folders the command must not be able to
/// read (graft's work folder); a sandbox that would expose them is refused.
pub async fn run(
    check: &Check,
    workspace: &Workspace,
    base_path: &str,
    private: &[PathBuf],
) -> Result<CheckOutcome, GitError> {
    let started = Instant::now();
    let mut notes = String::new();
    if !workspace.skipped_links().is_empty() {
        notes.push_str(&format!(
            "[graft left out symbolic links pointing outside the worktree: {}]\n",
            workspace.skipped_links().join(", ")
        ));
    }
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("exec 2>&1\n{}", check.command))
        .current_dir(workspace.tree())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", workspace.home())
        .env("TMPDIR", workspace.tmp())
        .env("LANG", "C.UTF-8")
        .env("GRAFT_BASE_PATH", base_path)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CEILING_DIRECTORIES", workspace.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let confinement = match check.sandbox {
        SandboxMode::Required => {
            let policy = Policy::for_scratch(workspace.root());
            policy
                .check_exposure(private)
                .and_then(|()| sandbox::prepare(&policy, check.network, &workspace.tree()))
                .map(Some)
                .map_err(|e| e.to_string())
        }
        // Without the sandbox nothing limits the network: say so rather
        // than run with less than the setting promises.
        SandboxMode::Off if check.network != NetworkMode::Open => Err(format!(
            "GRAFT_CHECK_NETWORK={} needs the sandbox, which GRAFT_CHECK_SANDBOX=off turns off; \
             set GRAFT_CHECK_NETWORK=open too",
            check.network
        )),
        SandboxMode::Off => Ok(None),
    };
    match confinement {
        Ok(Some(confinement)) => confinement.apply_to(&mut command),
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, "the check command was not run");
            return Ok(CheckOutcome {
                exit_code: None,
                timed_out: false,
                not_run: Some(error),
                output: redact(&notes, &check.command),
                duration: started.elapsed(),
            });
        }
    }
    let mut child = command.spawn().map_err(|e| {
        let within = match check.sandbox {
            SandboxMode::Required => " in its sandbox (GRAFT_CHECK_SANDBOX=off runs it without)",
            SandboxMode::Off => "",
        };
        GitError::Local(format!("cannot run the check command{within}: {e}"))
    })?;
    let group = child.id();
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| local("check command has no output pipe"))?;
    let deadline = tokio::time::Instant::now() + check.timeout;
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
    let mut output = notes;
    output.push_str(&String::from_utf8_lossy(&kept));
    if dropped > 0 {
        output.push_str(&format!("\n[… {dropped} more bytes of output dropped]"));
    }
    Ok(CheckOutcome {
        exit_code: status.and_then(|s| s.code()).filter(|_| !timed_out),
        timed_out,
        not_run: None,
        output: redact(&output, &check.command),
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn links_inside_the_worktree_are_kept_and_escapes_are_not() {
        let all = links(&[
            ("x.tf", "/proc/1/environ"),
            ("up", ".."),
            ("a/ok", "../b/file"),
            ("a/top", ".."),
            ("a/b/c", "../../x"),
            // `a/top` is the worktree itself, so `a/top/..` is above it.
            ("sneaky", "a/top/../etc/passwd"),
            ("loop1", "loop2"),
            ("loop2", "loop1"),
            ("via_abs", "x.tf"),
        ]);
        let inside = |name| resolves_inside(&all, name);
        assert!(!inside("x.tf"));
        assert!(!inside("up"));
        assert!(inside("a/ok"));
        assert!(inside("a/top"));
        assert!(inside("a/b/c"));
        assert!(!inside("sneaky"));
        assert!(!inside("loop1"));
        assert!(!inside("via_abs"));
    }

    #[test]
    fn secrets_of_the_command_line_are_found() {
        let secrets = command_secrets(
            "TF_TOKEN_app_terraform_io=abc.def-123 PASS='two words' terraform validate \
             --token=flagvalue && curl -H 'x: ghp_0123456789abcdefghijKLMNOP' https://u:p@h/x",
        );
        for expected in [
            "abc.def-123",
            "two words",
            "flagvalue",
            "ghp_0123456789abcdefghijKLMNOP",
        ] {
            assert!(secrets.contains(&expected.to_string()), "{secrets:?}");
        }
        assert!(!secrets.iter().any(|s| s == "terraform" || s == "validate"));
        let text = redact(
            "token abc.def-123 and two words at https://u:p@h/x",
            "TF_TOKEN_x=abc.def-123 PASS='two words' x",
        );
        assert_eq!(text, "token *** and *** at https://***@h/x");
    }

    #[test]
    fn settings_debug_without_the_command_secrets() {
        let check = Check::new(
            "TF_TOKEN_x=s3cret-value tofu validate",
            Duration::from_secs(1),
        );
        let shown = format!("{check:?}");
        assert!(
            !shown.contains("s3cret-value") && shown.contains("TF_TOKEN_x=***"),
            "{shown}"
        );
    }

    #[test]
    fn plain_commands_have_no_secrets() {
        assert!(command_secrets("tofu validate && tflint --recursive modules/vpc2").is_empty());
    }
}
