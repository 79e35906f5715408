//! The command table (one source for `/graft help`, the PR body and the
//! status comment) and "did you mean" suggestions.

use super::parse::COMMAND_NAMES;

/// The command table with the default prefix, as the PR body and the
/// status comment show it.
pub const COMMAND_HELP: &str = "\
| command | effect |
|---|---|
| `/graft sync` | sync now |
| `/graft sync --force` | sync, keeping graft's version of conflicting files |
| `/graft import` | take the repository's version of conflicting or edited files |
| `/graft rebase` | recreate the branch from the target branch plus graft's files |
| `/graft retry` | re-run the last failed job |
| `/graft status` | refresh the status comment |
| `/graft pause` / `/graft resume` | stop / restart automatic syncs |
| `/graft automerge on` / `off` | merge automatically when checks pass |
| `/graft help` | list the commands |";

/// [`COMMAND_HELP`] for another prefix.
pub fn help_table(prefix: &str) -> String {
    with_prefix(COMMAND_HELP, prefix)
}

/// Any text that quotes commands (`` `/graft sync` ``), written for the
/// configured prefix.
pub fn with_prefix(text: &str, prefix: &str) -> String {
    if prefix == super::DEFAULT_PREFIX {
        text.to_string()
    } else {
        text.replace("`/graft ", &format!("`{prefix} "))
    }
}

/// The grammar, for the `/graft help` reply.
pub fn grammar(prefix: &str) -> String {
    format!(
        "Write a command on a line of its own, starting with `{prefix}`: \
         `{prefix} <command> [argument] [--flag]`. Command names are not case-sensitive; \
         several lines run one after the other. Lines in code blocks, inline code, quotes \
         (`>`) and HTML comments are not read. Commands that change something need write \
         access to the repository (GitHub: write, maintain or admin; GitLab: Developer or \
         above); `{prefix} status` and `{prefix} help` are open to everyone."
    )
}

/// Edit distance over characters, counting a swap of two neighbours as
/// one edit (optimal string alignment): `snyc` is one edit from `sync`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The command `name` was probably meant to be: the closest name within
/// an edit distance of 2 (1 for short names), or the one it starts.
pub fn suggest(name: &str) -> Option<&'static str> {
    let name = name.to_lowercase();
    if name.chars().count() > 40 {
        return None;
    }
    let limit = if name.chars().count() <= 4 { 1 } else { 2 };
    COMMAND_NAMES
        .iter()
        .map(|c| (distance(&name, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
        .or_else(|| {
            (name.len() >= 3)
                .then(|| COMMAND_NAMES.iter().find(|c| c.starts_with(&name)).copied())
                .flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slash::parse::parse;

    #[test]
    fn suggestions_by_edit_distance() {
        assert_eq!(suggest("snyc"), Some("sync"));
        assert_eq!(suggest("synk"), Some("sync"));
        assert_eq!(suggest("stauts"), Some("status"));
        assert_eq!(suggest("improt"), Some("import"));
        assert_eq!(suggest("automerg"), Some("automerge"));
        assert_eq!(suggest("paus"), Some("pause"));
        assert_eq!(suggest("reb"), Some("rebase"));
        assert_eq!(suggest("deploy"), None);
        assert_eq!(suggest("x"), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("snyc", "sync"), 1);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn the_help_table_lists_every_command_and_each_example_parses() {
        for name in COMMAND_NAMES {
            assert!(
                COMMAND_HELP.contains(&format!("`/graft {name}")),
                "{name} missing from the help table"
            );
        }
        for line in COMMAND_HELP.lines().skip(2) {
            let usage = line.split('`').nth(1).expect("usage in backticks");
            let found = parse(usage, "/graft");
            assert!(
                found.len() == 1 && found[0].result.is_ok(),
                "{usage}: {found:?}"
            );
        }
    }

    #[test]
    fn the_table_follows_the_prefix() {
        let table = help_table("!bot");
        assert!(table.contains("`!bot sync --force`") && !table.contains("/graft"));
        assert_eq!(help_table("/graft"), COMMAND_HELP);
    }
}
