//! Terraform/OpenTofu: HCL syntax, and local module sources that must
//! exist in the overlaid tree.
//!
//! Hostile nesting needs no pre-scan here: the parser refuses more than 64
//! nested levels or 128 chained operators with a syntax error, which keeps
//! its recursion within a 2 MiB thread stack (see the tests).

use super::Finding;

/// Checks one `.tf` file at repository path `file`.
pub fn check(file: &str, content: &[u8], folder_exists: &dyn Fn(&str) -> bool) -> Vec<Finding> {
    let Ok(text) = std::str::from_utf8(content) else {
        return vec![Finding::error(file, None, "not valid UTF-8 text")];
    };
    let body = match hcl::parse(text) {
        Ok(body) => body,
        Err(hcl::Error::Parse(error)) => {
            return vec![Finding::error(
                file,
                Some(error.location().line()),
                format!("HCL syntax error: {}", error.message()),
            )];
        }
        Err(other) => return vec![Finding::error(file, None, format!("HCL error: {other}"))],
    };
    let mut findings = Vec::new();
    for block in body.blocks().filter(|b| b.identifier.as_str() == "module") {
        let name = block
            .labels
            .first()
            .map(|l| l.as_str().to_string())
            .unwrap_or_default();
        let Some(source) = block
            .body
            .attributes()
            .find(|a| a.key.as_str() == "source")
            .and_then(|a| match &a.expr {
                hcl::Expression::String(s) => Some(s.clone()),
                _ => None,
            })
        else {
            continue;
        };
        if !(source.starts_with("./") || source.starts_with("../")) {
            continue; // registry, git or other remote sources are not graft's to check
        }
        let line = line_of(text, &source);
        match resolve(file, &source) {
            None => findings.push(Finding::error(
                file,
                line,
                format!("module \"{name}\": source `{source}` points outside the repository"),
            )),
            Some(target) if !folder_exists(&target) => findings.push(Finding::error(
                file,
                line,
                format!(
                    "module \"{name}\": source `{source}` resolves to `{target}`, which is not a folder in the repository"
                ),
            )),
            Some(_) => {}
        }
    }
    findings
}

/// Resolves a relative module source against the folder of `file`;
/// `None` if it climbs above the repository root.
fn resolve(file: &str, source: &str) -> Option<String> {
    let mut parts: Vec<&str> = file.split('/').collect();
    parts.pop(); // the file name
    for component in source.trim_end_matches('/').split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    let quoted = format!("\"{needle}\"");
    text.lines()
        .position(|l| l.contains(&quoted))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_sources() {
        assert_eq!(
            resolve("infra/gen/main.tf", "../../modules/vpc").as_deref(),
            Some("modules/vpc")
        );
        assert_eq!(
            resolve("infra/gen/main.tf", "./sub/").as_deref(),
            Some("infra/gen/sub")
        );
        assert_eq!(resolve("main.tf", "../x"), None);
    }

    #[test]
    fn reports_syntax_errors_with_their_line() {
        let findings = check(
            "a/main.tf",
            b"resource \"x\" \"y\" {\n  a = 1\n  b = \n}\n",
            &|_| true,
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].line.is_some_and(|l| (3..=4).contains(&l)),
            "{findings:?}"
        );
        assert!(findings[0].message.contains("HCL syntax error"));
    }

    /// Nesting shapes the parser recurses on, each far deeper than its
    /// bound; parsed on a thread with tokio's blocking-pool stack size.
    #[test]
    fn deep_nesting_is_a_finding_not_a_stack_overflow() {
        let deep = 100_000;
        let shapes = [
            format!("a = {}1{}\n", "[".repeat(deep), "]".repeat(deep)),
            format!("a = {}1{}\n", "(".repeat(deep), ")".repeat(deep)),
            format!("a = {}1{}\n", "f(".repeat(deep), ")".repeat(deep)),
            format!("a = {}\n", "{b = ".repeat(deep) + "1" + &"}".repeat(deep)),
            format!("a = {}x\n", "!".repeat(deep)),
            format!("a = {}x\n", "-".repeat(deep)),
            format!("a = x{}\n", " + x".repeat(deep)),
            format!("a = {}1\n", "x ? 1 : ".repeat(deep)),
            format!("a = {}x{}\n", "\"${".repeat(deep), "}\"".repeat(deep)),
            format!(
                "a = <<EOT\n${{{}1{}}}\nEOT\n",
                "[".repeat(deep),
                "]".repeat(deep)
            ),
            format!("{}\n", "b {\n".repeat(deep) + &"}\n".repeat(deep)),
        ];
        for text in shapes {
            let findings = std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || check("deep.tf", text.as_bytes(), &|_| true))
                .unwrap()
                .join()
                .expect("no panic");
            assert_eq!(findings.len(), 1, "{findings:?}");
            // The parser's own bounds, named in the message.
            assert!(findings[0].message.contains("at most"), "{findings:?}");
        }
    }

    #[test]
    fn checks_only_local_module_sources() {
        let text = br#"
module "vpc" {
  source = "../../modules/vpc"
}
module "missing" {
  source = "../../modules/nope"
}
module "registry" {
  source = "terraform-aws-modules/vpc/aws"
}
"#;
        let findings = check("infra/gen/main.tf", text, &|p| p == "modules/vpc");
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].line, Some(6));
        assert!(findings[0].message.contains("modules/nope"), "{findings:?}");
    }
}
