//! Built-in validation of the overlaid tree, no external tools needed:
//! Terraform/OpenTofu files parse as HCL and their local module sources
//! resolve in the overlaid repository (why the overlay includes the whole
//! repository); YAML and JSON files parse. Findings are data for the PR
//! report.

mod hcl;
mod structured;

use gix::ObjectId;
use serde::{Deserialize, Serialize};

use super::overlay::ManagedFile;
use super::paths::repo_path;
use super::{GitError, missing};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Repository path of the file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
    pub severity: Severity,
}

impl Finding {
    fn error(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Finding {
            file: file.to_string(),
            line,
            message: message.into(),
            severity: Severity::Error,
        }
    }
}

/// True when nothing is an error (warnings allowed).
pub fn passed(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.severity != Severity::Error)
}

/// Validates the managed files as they stand in the overlaid `tree`.
pub fn validate(
    repo: &gix::Repository,
    tree: ObjectId,
    base_path: &str,
    files: &[ManagedFile],
) -> Result<Vec<Finding>, GitError> {
    let root = repo.find_tree(tree).map_err(missing)?;
    let folder_exists = |path: &str| -> bool {
        matches!(root.lookup_entry_by_path(path), Ok(Some(entry)) if entry.mode().is_tree())
    };
    let mut findings = Vec::new();
    for file in files {
        let full = repo_path(base_path, &file.path);
        let lower = file.path.to_ascii_lowercase();
        if lower.ends_with(".tf") || lower.ends_with(".tofu") {
            findings.extend(hcl::check(&full, &file.content, &folder_exists));
        } else if lower.ends_with(".yml") || lower.ends_with(".yaml") {
            findings.extend(structured::check_yaml(&full, &file.content));
        } else if lower.ends_with(".json") {
            findings.extend(structured::check_json(&full, &file.content));
        }
    }
    Ok(findings)
}
