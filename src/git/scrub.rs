//! Removes credentials from text that came out of git (error messages,
//! stderr) before it is logged, stored or shown on a PR.

/// Replaces every secret and any `user:password@` in URLs with `***`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret.as_str(), "***");
    }
    scrub_url_userinfo(&out)
}

fn scrub_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at_sign) => {
                out.push_str("***@");
                out.push_str(&authority[at_sign + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_tokens_and_url_credentials() {
        let text = "fatal: unable to access 'https://x-access-token:ghs_abc123@github.com/o/r.git/': 403 ghs_abc123";
        let clean = scrub(text, &["ghs_abc123".to_string()]);
        assert!(!clean.contains("ghs_abc123"), "{clean}");
        assert!(!clean.contains("x-access-token:"), "{clean}");
        assert!(clean.contains("github.com/o/r.git"), "{clean}");
    }

    #[test]
    fn leaves_plain_urls_alone() {
        let text = "remote: see https://docs.github.com/x and http://host:8080/a";
        assert_eq!(scrub(text, &[]), text);
    }
}
