//! Built-in validation of the overlaid tree, no external tools needed:
//! Terraform/OpenTofu files parse as HCL and their local module sources
//! resolve in the overlaid repository (why the overlay includes the whole
//! repository); YAML and JSON files parse. Findings are data for the PR
//! report.
//!
//! A file is generated content, so it may be hostile: validation is
//! bounded in size, nesting and alias expansion, and a file over a bound
//! is an error finding that says which bound, never a crash.

mod hcl;
mod structured;

use gix::ObjectId;
use serde::{Deserialize, Serialize};

use super::overlay::ManagedFile;
use super::paths::repo_path;
use super::{GitError, missing};

/// Files larger than this are not parsed (twice the API's upload limit:
/// files imported from the repository may be larger).
pub const MAX_BYTES: usize = 2 * 1024 * 1024;
/// Deepest YAML/JSON nesting parsed (HCL's parser has its own bound).
pub const MAX_DEPTH: usize = 100;
/// Most YAML nodes the loader may build, counting alias expansions.
pub const MAX_YAML_NODES: u64 = 500_000;
/// Most scalar text the YAML loader may build, counting alias expansions:
/// the loader copies an anchored value for every alias of it.
pub const MAX_YAML_BYTES: u64 = 16 * 1024 * 1024;

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
        findings.extend(check_file(&full, &file.content, &folder_exists));
    }
    Ok(findings)
}

/// Validates one file at repository path `file` by its extension; other
/// files are not checked. `folder_exists` answers for HCL module sources.
pub fn check_file(
    file: &str,
    content: &[u8],
    folder_exists: &dyn Fn(&str) -> bool,
) -> Vec<Finding> {
    enum Format {
        Hcl,
        Yaml,
        Json,
    }
    let lower = file.to_ascii_lowercase();
    let format = if lower.ends_with(".tf") || lower.ends_with(".tofu") {
        Format::Hcl
    } else if lower.ends_with(".yml") || lower.ends_with(".yaml") {
        Format::Yaml
    } else if lower.ends_with(".json") {
        Format::Json
    } else {
        return Vec::new();
    };
    if content.len() > MAX_BYTES {
        return vec![Finding::error(
            file,
            None,
            format!(
                "{} bytes is more than the {MAX_BYTES} bytes graft validates per file",
                content.len()
            ),
        )];
    }
    match format {
        Format::Hcl => hcl::check(file, content, folder_exists),
        Format::Yaml => structured::check_yaml(file, content),
        Format::Json => structured::check_json(file, content),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_files_are_a_finding_not_a_parse() {
        let huge = vec![b'['; MAX_BYTES + 1];
        for name in ["a/main.tf", "a/x.yaml", "a/x.json"] {
            let findings = check_file(name, &huge, &|_| true);
            assert_eq!(findings.len(), 1, "{findings:?}");
            assert_eq!(findings[0].file, name);
            assert!(
                findings[0]
                    .message
                    .contains("2097152 bytes graft validates"),
                "{findings:?}"
            );
        }
        // Files graft does not parse are not limited here.
        assert!(check_file("a/blob.bin", &huge, &|_| true).is_empty());
        assert!(check_file("a/x.json", b"[1]", &|_| true).is_empty());
    }
}
