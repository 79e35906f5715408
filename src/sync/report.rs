//! What graft writes on the PR/MR: the sticky status comment (found again
//! by its hidden marker and edited in place), the PR title and body, and
//! the check-run summary. Pure rendering, snapshot-tested.

use crate::forge::STATUS_MARKER;
use crate::git::read::{ChangeKind, FileChange};
use crate::git::validate::{Finding, Severity};
use crate::store::projects::{Project, SyncStatus};

/// Lists longer than this are folded into `<details>`.
const FOLD_AFTER: usize = 10;

/// The command table lives with the command parser (one source of truth).
pub use crate::slash::COMMAND_HELP;

/// Everything the status comment shows.
#[derive(Debug, Clone)]
pub struct StatusView<'a> {
    pub project: &'a Project,
    pub status: SyncStatus,
    pub commit: Option<&'a str>,
    pub changes: &'a [FileChange],
    pub findings: Option<&'a [Finding]>,
    pub error: Option<&'a str>,
    pub shared_branch: bool,
    pub notes: &'a [String],
}

fn status_line(status: SyncStatus) -> &'static str {
    match status {
        SyncStatus::Idle => "⚪ idle",
        SyncStatus::Syncing => "⏳ syncing",
        SyncStatus::Success => "✅ synced",
        SyncStatus::Error => "❌ error",
        SyncStatus::Paused => "⏸️ paused (automatic syncs are off; `/graft resume` turns them on)",
    }
}

fn kind_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Modified => "modified",
        ChangeKind::Deleted => "deleted",
    }
}

/// A path as inline code inside a table cell: `|` would end the cell and a
/// backtick the code span (paths may hold both).
fn code_cell(path: &str) -> String {
    let escaped = path.replace('|', "\\|");
    if escaped.contains('`') {
        format!("`` {escaped} ``")
    } else {
        format!("`{escaped}`")
    }
}

fn fold(summary: &str, body: &str, lines: usize) -> String {
    if lines > FOLD_AFTER {
        format!("<details><summary>{summary}</summary>\n\n{body}\n</details>\n")
    } else {
        format!("{body}\n")
    }
}

/// The marker of a change that replaces a file graft did not manage.
pub const REPLACES_UNMANAGED: &str = "replaces an unmanaged file";

/// The marker of a change to a file labelled `discovery`.
pub const FROM_DISCOVERY: &str = "from discovery";

fn change_cell(change: &FileChange) -> String {
    let mut cell = kind_word(change.kind).to_string();
    if change.replaces_unmanaged {
        cell.push_str(&format!(" ⚠️ {REPLACES_UNMANAGED}"));
    }
    if change.discovery {
        cell.push_str(&format!(" · 🔎 {FROM_DISCOVERY}"));
    }
    cell
}

/// A warning naming the files on the target branch that graft did not
/// manage and that this change replaces (empty when there are none).
fn replaced_section(project: &Project, changes: &[FileChange]) -> String {
    let replaced: Vec<&FileChange> = changes.iter().filter(|c| c.replaces_unmanaged).collect();
    if replaced.is_empty() {
        return String::new();
    }
    let list = replaced
        .iter()
        .map(|c| {
            let full = if project.base_path.is_empty() {
                c.path.clone()
            } else {
                format!("{}/{}", project.base_path, c.path)
            };
            format!("> - `{}` ({REPLACES_UNMANAGED})", full.replace('`', "'"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "\n> [!WARNING]\n> {} file(s) on `{}` have content graft did not write, and this \
         change replaces them with the generated version. Check that they are meant to be \
         generated before merging.\n>\n{list}\n",
        replaced.len(),
        project.branch,
    )
}

pub fn describe_project(project: &Project) -> String {
    let path = if project.base_path.is_empty() {
        "/"
    } else {
        project.base_path.as_str()
    };
    format!(
        "`{}` · branch `{}` · path `{path}` · {} · mode `{}`",
        project.repo,
        project.branch,
        project.kind.as_str(),
        project.mode.as_str()
    )
}

fn findings_markdown(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            let place = match (f.file.is_empty(), f.line) {
                (true, _) => String::new(),
                (false, Some(line)) => format!("`{}:{line}` ", f.file),
                (false, None) => format!("`{}` ", f.file),
            };
            let level = if f.severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            let message = f.message.replace('\n', "\n  ");
            format!("- {level}: {place}{message}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sticky status comment.
pub fn status_comment(view: &StatusView<'_>) -> String {
    let mut out = format!(
        "{STATUS_MARKER}\n### graft: {}\n\n",
        status_line(view.status)
    );
    out.push_str(&format!("Project {}\n", describe_project(view.project)));
    if let Some(commit) = view.commit {
        out.push_str(&format!("\nCommit: `{commit}`\n"));
    }
    if !view.changes.is_empty() {
        let table = std::iter::once("| change | file |\n|---|---|".to_string())
            .chain(
                view.changes
                    .iter()
                    .map(|c| format!("| {} | {} |", change_cell(c), code_cell(&c.path))),
            )
            .collect::<Vec<_>>()
            .join("\n");
        let count = |k| view.changes.iter().filter(|c| c.kind == k).count();
        let summary = format!(
            "{} added, {} modified, {} deleted",
            count(ChangeKind::Added),
            count(ChangeKind::Modified),
            count(ChangeKind::Deleted)
        );
        out.push_str(&format!("\n**Files** ({summary})\n\n"));
        out.push_str(&fold("Show the files", &table, view.changes.len()));
        out.push_str(&replaced_section(view.project, view.changes));
    }
    match view.findings {
        Some([]) => out.push_str("\n**Validation**: ✅ passed\n"),
        Some(findings) => {
            let errors = findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            out.push_str(&format!(
                "\n**Validation**: ❌ {errors} error(s), {} warning(s)\n\n",
                findings.len() - errors
            ));
            out.push_str(&fold(
                "Show the findings",
                &findings_markdown(findings),
                findings.len(),
            ));
        }
        None => {}
    }
    if let Some(error) = view.error {
        out.push_str(&format!("\n**Last error**: {error}\n"));
    }
    if view.shared_branch {
        out.push_str(&format!(
            "\n> [!NOTE]\n> Someone else committed to `{}`. graft no longer rewrites this branch: \
             it imported their edits of managed files and adds its changes as new commits on \
             top. `/graft rebase` recreates the branch (their commits are then dropped).\n",
            view.project.sync_branch
        ));
    }
    for note in view.notes {
        out.push_str(&format!("\n{note}\n"));
    }
    out.push_str(&format!(
        "\n<details><summary>Commands</summary>\n\n{COMMAND_HELP}\n</details>\n"
    ));
    out
}

pub fn pull_request_title(project: &Project) -> String {
    let place = if project.base_path.is_empty() {
        project.repo.as_str()
    } else {
        project.base_path.as_str()
    };
    format!("graft: sync generated files in {place}")
}

pub fn pull_request_body(project: &Project, changes: &[FileChange]) -> String {
    let generator = project.source.as_deref().unwrap_or("an API client");
    format!(
        "This pull request is managed by **graft**: it carries generated files from {generator} \
         for {}.\n\n{} file(s) differ from `{}`. graft updates this branch when the generator \
         sends new content and keeps a status comment below.\n{}\n\
         <details><summary>Commands</summary>\n\n{COMMAND_HELP}\n</details>\n",
        describe_project(project),
        changes.len(),
        project.branch,
        replaced_section(project, changes)
    )
}

/// Title and summary of the check run / commit status.
pub fn check_summary(findings: &[Finding]) -> (String, String) {
    if findings.iter().all(|f| f.severity != Severity::Error) {
        (
            "Generated files validate".into(),
            "HCL, YAML and JSON parse; local module sources resolve.".into(),
        )
    } else {
        let errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        (
            format!("{errors} validation error(s)"),
            findings_markdown(findings),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::projects::{Kind, Mode};

    fn project() -> Project {
        Project {
            id: crate::ids::ProjectId(7),
            provider: crate::ids::Provider::Github,
            integration_id: None,
            repo: "acme/infra".into(),
            branch: "main".into(),
            base_path: "infra/gen".into(),
            kind: Kind::Iac,
            mode: Mode::PullRequest,
            auto_sync: true,
            auto_merge: false,
            paused: false,
            slug: "infra-gen".into(),
            sync_branch: "graft/infra-gen".into(),
            sync_status: SyncStatus::Success,
            sync_error: None,
            last_synced_commit_sha: None,
            last_pulled_at: None,
            pull_request_number: Some(crate::ids::PrNumber(3)),
            pull_request_url: None,
            auto_sync_held: false,
            sync_branch_shared: false,
            sync_branch_sha: None,
            status_comment_id: None,
            conflicts: None,
            last_failed_job_id: None,
            source: Some("tf-generator".into()),
            last_findings: None,
            last_changes: Vec::new(),
            status_before_pause: None,
            error_before_pause: None,
            commit_via: Default::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn changes(n: usize) -> Vec<FileChange> {
        (0..n)
            .map(|i| FileChange {
                path: format!("f{i}.tf"),
                kind: [ChangeKind::Added, ChangeKind::Modified, ChangeKind::Deleted][i % 3],
                replaces_unmanaged: false,
                discovery: false,
            })
            .collect()
    }

    #[test]
    fn success_comment() {
        let p = project();
        let c = changes(3);
        let comment = status_comment(&StatusView {
            project: &p,
            status: SyncStatus::Success,
            commit: Some("0123456789abcdef0123456789abcdef01234567"),
            changes: &c,
            findings: Some(&[]),
            error: None,
            shared_branch: false,
            notes: &[],
        });
        insta::assert_snapshot!(comment);
    }

    #[test]
    fn error_comment_with_findings_folded_and_shared_branch() {
        let p = project();
        let c = changes(12);
        let findings = vec![
            Finding { file: "infra/gen/main.tf".into(), line: Some(3), message: "HCL syntax error: expected expression".into(), severity: Severity::Error },
            Finding { file: "infra/gen/m.tf".into(), line: Some(2), message: "module \"db\": source `../db` resolves to `infra/db`, which is not a folder in the repository".into(), severity: Severity::Error },
        ];
        let comment = status_comment(&StatusView {
            project: &p,
            status: SyncStatus::Error,
            commit: None,
            changes: &c,
            findings: Some(&findings),
            error: Some("Conflict: `a.tf` changed upstream while graft has pending changes. Nothing was overwritten."),
            shared_branch: true,
            notes: &["Direct push to `main` was refused by branch protection; graft opened a pull request instead.".to_string()],
        });
        assert!(comment.starts_with(STATUS_MARKER));
        assert!(comment.contains("<details><summary>Show the files</summary>"));
        insta::assert_snapshot!(comment);
    }

    #[test]
    fn replaced_unmanaged_files_are_listed_in_comment_and_body() {
        let p = project();
        let mut c = changes(2);
        c[1].replaces_unmanaged = true;
        let comment = status_comment(&StatusView {
            project: &p,
            status: SyncStatus::Success,
            commit: None,
            changes: &c,
            findings: Some(&[]),
            error: None,
            shared_branch: false,
            notes: &[],
        });
        assert!(comment.contains("| modified ⚠️ replaces an unmanaged file | `f1.tf` |"));
        let body = pull_request_body(&p, &c);
        assert!(
            body.contains("`infra/gen/f1.tf` (replaces an unmanaged file)"),
            "{body}"
        );
        assert!(!body.contains("f0.tf"), "{body}");
        insta::assert_snapshot!(comment);
        insta::assert_snapshot!(body);
    }

    #[test]
    fn discovery_files_are_marked_in_the_table() {
        let p = project();
        let mut c = changes(2);
        c[0].discovery = true;
        c[1].replaces_unmanaged = true;
        let comment = status_comment(&StatusView {
            project: &p,
            status: SyncStatus::Success,
            commit: None,
            changes: &c,
            findings: Some(&[]),
            error: None,
            shared_branch: false,
            notes: &[],
        });
        assert!(
            comment.contains("| added · 🔎 from discovery | `f0.tf` |"),
            "{comment}"
        );
        assert!(
            comment.contains("| modified ⚠️ replaces an unmanaged file | `f1.tf` |"),
            "{comment}"
        );
    }

    #[test]
    fn paths_cannot_break_the_table() {
        assert_eq!(code_cell("a/b.tf"), "`a/b.tf`");
        assert_eq!(code_cell("a|b.tf"), "`a\\|b.tf`");
        assert_eq!(code_cell("a`b.tf"), "`` a`b.tf ``");
    }

    #[test]
    fn pull_request_texts() {
        let p = project();
        assert_eq!(
            pull_request_title(&p),
            "graft: sync generated files in infra/gen"
        );
        insta::assert_snapshot!(pull_request_body(&p, &changes(2)));
    }
}
