//! What a forge refuses on push: protected branches and the signed-commits
//! rule. Both live as files in the bare repository, so the pre-receive
//! hook (a real push over smart HTTP) and the fakes' APIs (a ref moved
//! through REST, an API commit) read the same settings:
//!
//! - `protected-branches`: full ref names, one a line;
//! - `protection-message`: the refusal text for those (GitHub's GH006 if
//!   absent);
//! - `signed-branches`: branch patterns (`*` and `?` as in the shell, so
//!   `*` crosses `/`) whose new commits must carry a verified signature;
//! - `signature-refusal`: whose words the refusal uses (`gh013`, `gh006`,
//!   `gitlab`); `rules-url`: the page GitHub's GH013 text points at;
//! - `verified-commits`: the commits the forge itself signed (its API
//!   commits), one id a line.
//!
//! A commit is new to a push when no ref reaches it yet, as the forges
//! count the commits a rule applies to.

use super::GitHost;

pub(super) const PRE_RECEIVE: &str = r#"#!/bin/sh
# Branch protection and the signed-commits rule (see git_host/rules.rs).
# A push made by the test itself (FAKE_BYPASS_PROTECTION) passes.
[ -n "$FAKE_BYPASS_PROTECTION" ] && exit 0
zero=0000000000000000000000000000000000000000
while read old new ref; do
  if [ -f protected-branches ] && grep -qx "$ref" protected-branches; then
    if [ -f protection-message ]; then
      cat protection-message >&2
    else
      echo "error: GH006: Protected branch update failed for $ref." >&2
      echo "error: Changes must be made through a pull request." >&2
    fi
    exit 1
  fi
  [ "$new" = "$zero" ] && continue
  [ -f signed-branches ] || continue
  matched=
  while IFS= read -r pattern; do
    case "$ref" in refs/heads/$pattern) matched=1 ;; esac
  done < signed-branches
  [ -n "$matched" ] || continue
  unsigned=$(git rev-list --reverse "$new" --not --all | while read -r c; do
    grep -qx "$c" verified-commits 2>/dev/null || echo "$c"
  done)
  [ -z "$unsigned" ] && continue
  case "$(cat signature-refusal 2>/dev/null)" in
    gitlab)
      echo "GitLab: Commit must be signed with a GPG key" >&2 ;;
    gh006)
      echo "error: GH006: Protected branch update failed for $ref." >&2
      echo "error: Commits must have valid signatures." >&2 ;;
    *)
      count=$(echo "$unsigned" | wc -l | tr -d ' ')
      echo "error: GH013: Repository rule violations found for $ref." >&2
      if [ -f rules-url ]; then
        echo "Review all repository rules at $(cat rules-url)?ref=$(printf %s "$ref" | sed 's,/,%2F,g')" >&2
      fi
      echo "" >&2
      echo "- Commits must have verified signatures." >&2
      if [ "$count" = 1 ]; then
        echo "  Found 1 violation:" >&2
      else
        echo "  Found $count violations:" >&2
      fi
      echo "" >&2
      echo "$unsigned" | sed 's/^/  /' >&2
      echo "" >&2 ;;
  esac
  exit 1
done
exit 0
"#;

/// Whose words a push refused for unsigned commits reads in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureRefusal {
    /// A GitHub ruleset ("Require signed commits"): GH013, listing the
    /// unsigned commits.
    GithubRuleset,
    /// GitHub's classic branch protection: GH006.
    GithubProtection,
    /// GitLab's push rule `reject_unsigned_commits`.
    Gitlab,
}

impl SignatureRefusal {
    fn code(self) -> &'static str {
        match self {
            SignatureRefusal::GithubRuleset => "gh013",
            SignatureRefusal::GithubProtection => "gh006",
            SignatureRefusal::Gitlab => "gitlab",
        }
    }
}

/// `*` (any run, `/` included) and `?` (one character), as `case` does.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

impl GitHost {
    fn setting(&self, repo: &str, name: &str) -> String {
        std::fs::read_to_string(self.repo_dir(repo).join(name)).unwrap_or_default()
    }

    fn add_line(&self, repo: &str, name: &str, line: &str) {
        let mut text = self.setting(repo, name);
        if !text.lines().any(|l| l == line) {
            text.push_str(&format!("{line}\n"));
        }
        std::fs::write(self.repo_dir(repo).join(name), text).expect("write repository setting");
    }

    pub fn protect_branch(&self, repo: &str, branch: &str) {
        self.add_line(repo, "protected-branches", &format!("refs/heads/{branch}"));
    }

    /// What the server prints when it refuses a push to a protected
    /// branch (GitHub's GH006 text unless set).
    pub fn set_protection_message(&self, repo: &str, message: &str) {
        let file = self.repo_dir(repo).join("protection-message");
        std::fs::write(file, format!("{message}\n")).expect("protection message");
    }

    pub fn unprotect_branch(&self, repo: &str, branch: &str) {
        let kept: String = self
            .setting(repo, "protected-branches")
            .lines()
            .filter(|l| *l != format!("refs/heads/{branch}"))
            .map(|l| format!("{l}\n"))
            .collect();
        let file = self.repo_dir(repo).join("protected-branches");
        std::fs::write(file, kept).expect("unprotect");
    }

    pub fn is_protected(&self, repo: &str, branch: &str) -> bool {
        self.setting(repo, "protected-branches")
            .lines()
            .any(|l| l == format!("refs/heads/{branch}"))
    }

    /// New commits on branches matching `pattern` must be signed by the
    /// forge; a push bringing others is refused in `refusal`'s words.
    /// `rules_url` is where GitHub's GH013 text sends the reader.
    pub fn require_signed_commits(
        &self,
        repo: &str,
        pattern: &str,
        refusal: SignatureRefusal,
        rules_url: Option<&str>,
    ) {
        self.add_line(repo, "signed-branches", pattern);
        let dir = self.repo_dir(repo);
        std::fs::write(dir.join("signature-refusal"), refusal.code()).expect("refusal");
        if let Some(url) = rules_url {
            std::fs::write(dir.join("rules-url"), url).expect("rules url");
        }
    }

    pub fn requires_signatures(&self, repo: &str, branch: &str) -> bool {
        self.setting(repo, "signed-branches")
            .lines()
            .any(|p| glob_match(p.as_bytes(), branch.as_bytes()))
    }

    /// Records `sha` as signed by the forge (its API made it).
    pub fn mark_verified(&self, repo: &str, sha: &str) {
        self.add_line(repo, "verified-commits", sha);
    }

    pub fn is_verified(&self, repo: &str, sha: &str) -> bool {
        self.setting(repo, "verified-commits")
            .lines()
            .any(|l| l == sha)
    }

    /// The commits that moving `branch` to `new` would bring that no ref
    /// reaches yet and the forge did not sign, oldest first; empty when
    /// the branch has no signature rule.
    pub fn unsigned_new_commits(&self, repo: &str, branch: &str, new: &str) -> Vec<String> {
        if !self.requires_signatures(repo, branch) {
            return Vec::new();
        }
        super::git(
            &self.repo_dir(repo),
            &["rev-list", "--reverse", new, "--not", "--all"],
        )
        .lines()
        .filter(|c| !self.is_verified(repo, c))
        .map(str::to_string)
        .collect()
    }
}
