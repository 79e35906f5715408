//! The slash-command parser: pure, no I/O. See the module docs of
//! [`crate::slash`] for the grammar.
//!
//! Markdown structure comes from pulldown-cmark: the byte ranges of
//! fenced and indented code blocks, block quotes, HTML blocks, HTML
//! comments and inline code are collected first, then every line whose
//! first non-blank character is outside those ranges and starts with the
//! prefix is a command line.

use std::ops::Range;

use pulldown_cmark::{Event, Parser, Tag};
use serde::{Deserialize, Serialize};

use super::help::suggest;

/// At most this many command lines of one comment run; the rest are
/// answered with [`CommandError::TooMany`].
pub const MAX_COMMANDS: usize = 10;

/// Longest piece of user text echoed back in a reply.
const ECHO_LIMIT: usize = 40;

/// A command graft understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Sync { force: bool },
    Import,
    Rebase,
    Retry,
    Status,
    Pause,
    Resume,
    AutoMerge { on: bool },
    Help,
}

/// Every command name, in the order of the help table.
pub const COMMAND_NAMES: [&str; 9] = [
    "sync",
    "import",
    "rebase",
    "retry",
    "status",
    "pause",
    "resume",
    "automerge",
    "help",
];

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Sync { .. } => "sync",
            Command::Import => "import",
            Command::Rebase => "rebase",
            Command::Retry => "retry",
            Command::Status => "status",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::AutoMerge { .. } => "automerge",
            Command::Help => "help",
        }
    }

    /// The command as a user would type it, e.g. `/graft sync --force`.
    pub fn usage(self, prefix: &str) -> String {
        match self {
            Command::Sync { force: true } => format!("{prefix} sync --force"),
            Command::AutoMerge { on } => {
                format!("{prefix} automerge {}", if on { "on" } else { "off" })
            }
            other => format!("{prefix} {}", other.name()),
        }
    }

    /// Whether running it changes anything (and so needs write access).
    /// `status` only rewrites graft's own comment; `help` only answers.
    pub fn changes_anything(self) -> bool {
        !matches!(self, Command::Status | Command::Help)
    }
}

/// Why a command line is not a command. Every variant names what was
/// wrong so the reply can say it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum CommandError {
    #[error("no command after the prefix")]
    MissingCommand,
    #[error("`{name}` is not a command")]
    Unknown {
        name: String,
        suggestion: Option<String>,
    },
    #[error("`{command}` takes no argument `{argument}`")]
    UnexpectedArgument { command: String, argument: String },
    #[error("`{command}` has no flag `{flag}`")]
    UnknownFlag {
        command: String,
        flag: String,
        allowed: Vec<String>,
    },
    #[error("`{command}` needs {expected}")]
    MissingArgument { command: String, expected: String },
    #[error("`{command}`: `{argument}` is not {expected}")]
    InvalidArgument {
        command: String,
        argument: String,
        expected: String,
    },
    #[error("more than {limit} commands in one comment")]
    TooMany { limit: usize },
}

/// One command line of a comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// 1-based line number in the comment.
    pub line: usize,
    /// The line as written, trimmed (for the reply).
    pub text: String,
    pub result: Result<Command, CommandError>,
}

impl Invocation {
    /// The line without the prefix, lowercased, words separated by single
    /// spaces: what tells "the same command" apart when a comment is edited.
    pub fn normalized(&self, prefix: &str) -> String {
        let rest = self.text.get(prefix.len()..).unwrap_or_default();
        rest.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Byte ranges of `body` where a command line does not count.
fn ignored_ranges(body: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    for (event, range) in Parser::new(body).into_offset_iter() {
        let ignored = matches!(
            event,
            Event::Start(Tag::CodeBlock(_) | Tag::BlockQuote(_) | Tag::HtmlBlock)
                | Event::Code(_)
                | Event::Html(_)
                | Event::InlineHtml(_)
        );
        if ignored {
            ranges.push(range);
        }
    }
    // Sorted and merged, so each line is one binary search: a comment of
    // many small code spans and as many lines stays linear-ish.
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// Whether `position` falls in one of the sorted, disjoint `ranges`.
fn is_ignored(ranges: &[Range<usize>], position: usize) -> bool {
    let after = ranges.partition_point(|r| r.start <= position);
    after > 0 && ranges[after - 1].contains(&position)
}

/// `prefix` at the start of `text`, compared without regard to ASCII case,
/// followed by whitespace or the end of the text.
fn strip_prefix<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = &text[prefix.len()..];
    match rest.chars().next() {
        None => Some(rest),
        Some(c) if c.is_whitespace() => Some(rest),
        Some(_) => None,
    }
}

/// Shortens user text for a reply and keeps it from breaking out of the
/// inline code it is shown in.
pub fn echo(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '`' { '\'' } else { c })
        .take(ECHO_LIMIT)
        .collect();
    if text.chars().count() > ECHO_LIMIT {
        out.push('…');
    }
    out
}

/// Longest command line kept (stored, compared between edits, echoed).
const LINE_LIMIT: usize = 200;

fn clip(line: &str) -> String {
    line.chars().take(LINE_LIMIT).collect()
}

/// Every command line of `body` (a comment's Markdown), in order.
/// Never fails: lines that are not valid commands carry their error.
pub fn parse(body: &str, prefix: &str) -> Vec<Invocation> {
    let prefix = prefix.trim();
    if prefix.is_empty() || body.trim().is_empty() {
        return Vec::new();
    }
    let ignored = ignored_ranges(body);
    let mut found = Vec::new();
    let mut offset = 0;
    for (index, raw) in body.split('\n').enumerate() {
        let start = offset;
        offset += raw.len() + 1;
        let line = raw.trim_end_matches('\r');
        let content = line.trim_start();
        let position = start + (line.len() - content.len());
        if is_ignored(&ignored, position) {
            continue;
        }
        let Some(rest) = strip_prefix(content, prefix) else {
            continue;
        };
        if found.len() == MAX_COMMANDS {
            // One answer for everything past the limit, however much.
            found.push(Invocation {
                line: index + 1,
                text: clip(content.trim_end()),
                result: Err(CommandError::TooMany {
                    limit: MAX_COMMANDS,
                }),
            });
            break;
        }
        found.push(Invocation {
            line: index + 1,
            text: clip(content.trim_end()),
            result: parse_words(rest),
        });
    }
    found
}

/// The words after the prefix.
fn parse_words(rest: &str) -> Result<Command, CommandError> {
    let mut words = rest.split_whitespace();
    let Some(name) = words.next() else {
        return Err(CommandError::MissingCommand);
    };
    let name = name.to_lowercase();
    let (flags, positional): (Vec<&str>, Vec<&str>) = words.partition(|w| w.starts_with("--"));
    let no_flags = |command: &str| match flags.first() {
        Some(flag) => Err(CommandError::UnknownFlag {
            command: command.to_string(),
            flag: echo(flag),
            allowed: Vec::new(),
        }),
        None => Ok(()),
    };
    let no_arguments = |command: &str| match positional.first() {
        Some(argument) => Err(CommandError::UnexpectedArgument {
            command: command.to_string(),
            argument: echo(argument),
        }),
        None => Ok(()),
    };
    let plain = |command: Command| {
        no_flags(command.name())?;
        no_arguments(command.name())?;
        Ok(command)
    };
    match name.as_str() {
        "sync" => {
            let mut force = false;
            for flag in &flags {
                if flag.eq_ignore_ascii_case("--force") {
                    force = true;
                } else {
                    return Err(CommandError::UnknownFlag {
                        command: "sync".into(),
                        flag: echo(flag),
                        allowed: vec!["--force".into()],
                    });
                }
            }
            no_arguments("sync")?;
            Ok(Command::Sync { force })
        }
        "import" => plain(Command::Import),
        "rebase" => plain(Command::Rebase),
        "retry" => plain(Command::Retry),
        "status" => plain(Command::Status),
        "pause" => plain(Command::Pause),
        "resume" => plain(Command::Resume),
        "help" => plain(Command::Help),
        "automerge" | "auto-merge" => {
            no_flags("automerge")?;
            let expected = "`on` or `off`".to_string();
            match positional.as_slice() {
                [] => Err(CommandError::MissingArgument {
                    command: "automerge".into(),
                    expected,
                }),
                [value] => match value.to_lowercase().as_str() {
                    "on" => Ok(Command::AutoMerge { on: true }),
                    "off" => Ok(Command::AutoMerge { on: false }),
                    _ => Err(CommandError::InvalidArgument {
                        command: "automerge".into(),
                        argument: echo(value),
                        expected,
                    }),
                },
                [_, extra, ..] => Err(CommandError::UnexpectedArgument {
                    command: "automerge".into(),
                    argument: echo(extra),
                }),
            }
        }
        _ => Err(CommandError::Unknown {
            suggestion: suggest(&name).map(str::to_string),
            name: echo(&name),
        }),
    }
}

/// Indexes of the invocations in `current` that were not in `previous`
/// (an edited comment runs only those). Compared by [`Invocation::normalized`]
/// text, as multisets: a command written twice where it was once is new once.
pub fn new_since(current: &[Invocation], previous: &[Invocation], prefix: &str) -> Vec<usize> {
    let mut seen: Vec<String> = previous.iter().map(|i| i.normalized(prefix)).collect();
    let mut fresh = Vec::new();
    for (index, invocation) in current.iter().enumerate() {
        let text = invocation.normalized(prefix);
        match seen.iter().position(|s| *s == text) {
            Some(at) => {
                seen.swap_remove(at);
            }
            None => fresh.push(index),
        }
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/graft";

    fn commands(body: &str) -> Vec<Result<Command, CommandError>> {
        parse(body, P).into_iter().map(|i| i.result).collect()
    }

    fn ok(body: &str) -> Vec<Command> {
        commands(body)
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{body:?}: {e}")))
            .collect()
    }

    #[test]
    fn table() {
        use Command::*;
        let cases: &[(&str, &[Command])] = &[
            ("/graft sync", &[Sync { force: false }]),
            ("/graft sync --force", &[Sync { force: true }]),
            ("/graft sync --FORCE", &[Sync { force: true }]),
            ("  /graft   status  ", &[Status]),
            ("/graft import\r\n/graft rebase\r\n", &[Import, Rebase]),
            ("/GRAFT SYNC", &[Sync { force: false }]),
            ("/Graft AutoMerge ON", &[AutoMerge { on: true }]),
            ("/graft automerge off", &[AutoMerge { on: false }]),
            ("/graft auto-merge on", &[AutoMerge { on: true }]),
            (
                "/graft retry\n/graft pause\n/graft resume\n/graft help",
                &[Retry, Pause, Resume, Help],
            ),
            // Prefix at the start of a line only.
            ("please /graft sync", &[]),
            ("thanks!\n/graft sync\nbye", &[Sync { force: false }]),
            ("/graftsync", &[]),
            ("/grafting is fun", &[]),
            ("- /graft sync", &[]),
            ("# /graft sync", &[]),
            // Code blocks, quotes, inline code, HTML comments.
            ("```\n/graft sync\n```", &[]),
            ("~~~md\n/graft sync\n~~~\n/graft status", &[Status]),
            ("```\n/graft sync", &[]),
            ("text\n\n    /graft sync\n", &[]),
            ("> /graft sync", &[]),
            ("> quoted\n/graft sync", &[]), // lazy continuation of the quote
            ("> quoted\n\n/graft sync", &[Sync { force: false }]),
            ("> > /graft sync", &[]),
            ("`/graft sync`", &[]),
            ("``/graft sync`` is how", &[]),
            ("<!-- /graft sync -->", &[]),
            ("<!--\n/graft sync\n-->\n\n/graft status", &[Status]),
            ("hi <!--\n/graft sync\n--> there", &[]),
            // Unicode around and inside.
            (
                "🚀 great\n/graft sync\nmerci beaucoup é",
                &[Sync { force: false }],
            ),
            ("/graft\u{a0}sync", &[Sync { force: false }]),
            ("", &[]),
            ("   \n\t\n  ", &[]),
        ];
        for (body, expected) in cases {
            assert_eq!(ok(body), expected.to_vec(), "{body:?}");
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(
            commands("/graft snyc"),
            vec![Err(CommandError::Unknown {
                name: "snyc".into(),
                suggestion: Some("sync".into())
            })]
        );
        assert_eq!(
            commands("/graft frobnicate"),
            vec![Err(CommandError::Unknown {
                name: "frobnicate".into(),
                suggestion: None
            })]
        );
        assert_eq!(commands("/graft"), vec![Err(CommandError::MissingCommand)]);
        assert_eq!(
            commands("/graft sync --froce"),
            vec![Err(CommandError::UnknownFlag {
                command: "sync".into(),
                flag: "--froce".into(),
                allowed: vec!["--force".into()]
            })]
        );
        assert_eq!(
            commands("/graft sync now"),
            vec![Err(CommandError::UnexpectedArgument {
                command: "sync".into(),
                argument: "now".into()
            })]
        );
        assert_eq!(
            commands("/graft import --force"),
            vec![Err(CommandError::UnknownFlag {
                command: "import".into(),
                flag: "--force".into(),
                allowed: vec![]
            })]
        );
        assert_eq!(
            commands("/graft automerge"),
            vec![Err(CommandError::MissingArgument {
                command: "automerge".into(),
                expected: "`on` or `off`".into()
            })]
        );
        assert_eq!(
            commands("/graft automerge maybe"),
            vec![Err(CommandError::InvalidArgument {
                command: "automerge".into(),
                argument: "maybe".into(),
                expected: "`on` or `off`".into()
            })]
        );
        assert_eq!(
            commands("/graft automerge on off"),
            vec![Err(CommandError::UnexpectedArgument {
                command: "automerge".into(),
                argument: "off".into()
            })]
        );
        // Good and bad lines of one comment keep their order.
        let mixed = commands("/graft status\n/graft nope\n/graft sync");
        assert!(mixed[0].is_ok() && mixed[1].is_err() && mixed[2].is_ok());
    }

    #[test]
    fn echoed_text_is_short_and_cannot_break_inline_code() {
        let long = "x".repeat(500);
        let parsed = commands(&format!("/graft {long}"));
        let Err(CommandError::Unknown { name, .. }) = &parsed[0] else {
            panic!("{parsed:?}")
        };
        assert!(name.chars().count() <= ECHO_LIMIT + 1, "{name}");
        assert_eq!(echo("a`b"), "a'b");
    }

    #[test]
    fn a_very_long_comment_is_parsed_and_capped() {
        let mut body = "lorem ipsum dolor sit amet ".repeat(20_000);
        for _ in 0..(MAX_COMMANDS + 5) {
            body.push_str("\n/graft status\n");
        }
        let found = parse(&body, P);
        assert_eq!(found.len(), MAX_COMMANDS + 1, "one entry for all the rest");
        assert!(found[..MAX_COMMANDS].iter().all(|i| i.result.is_ok()));
        assert!(matches!(
            found[MAX_COMMANDS].result,
            Err(CommandError::TooMany { .. })
        ));
        // A huge command line is kept short.
        let long = format!("/graft sync {}", "x".repeat(100_000));
        let found = parse(&long, P);
        assert_eq!(found[0].text.chars().count(), LINE_LIMIT);
    }

    #[test]
    fn a_custom_prefix_is_used_and_the_default_is_not() {
        assert_eq!(
            parse("/bot sync\n/graft sync", "/bot")
                .into_iter()
                .map(|i| i.line)
                .collect::<Vec<_>>(),
            vec![1]
        );
        assert!(parse("/graft sync", "").is_empty());
    }

    #[test]
    fn invocations_keep_line_numbers_and_text() {
        let found = parse("hello\n\n  /graft  Sync   --force  \n", P);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 3);
        assert_eq!(found[0].text, "/graft  Sync   --force");
        assert_eq!(found[0].normalized(P), "sync --force");
    }

    #[test]
    fn edits_run_only_new_commands() {
        let before = parse("/graft snyc\n/graft status", P);
        let after = parse("/graft sync\n/graft  STATUS", P);
        assert_eq!(new_since(&after, &before, P), vec![0]);
        let twice = parse("/graft status\n/graft status", P);
        assert_eq!(new_since(&twice, &before, P), vec![1]);
        assert!(new_since(&before, &before, P).is_empty());
        assert_eq!(new_since(&before, &[], P), vec![0, 1]);
    }

    /// A small deterministic generator (xorshift) so the property test
    /// needs no extra crate and fails reproducibly.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const FRAGMENTS: &[&str] = &[
        "/graft",
        "/GRAFT",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\n\n",
        "```",
        "~~~",
        "`",
        "``",
        "> ",
        ">",
        "    ",
        "<!--",
        "-->",
        "<div>",
        "</div>",
        "sync",
        "--force",
        "--",
        "automerge",
        "on",
        "off",
        "help",
        "é",
        "🚀",
        "\u{0}",
        "\u{200b}",
        "\u{a0}",
        "\u{301}",
        "*",
        "_",
        "#",
        "|",
        "[",
        "]",
        "(",
        ")",
        "<",
        ">",
        "&amp;",
        "\\",
        "- ",
        "1. ",
        "---",
        "===",
        "ſ",
        "İ",
        "K",
    ];

    #[test]
    fn the_parser_never_panics_on_arbitrary_input() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3_000 {
            let mut body = String::new();
            for _ in 0..rng.below(40) {
                if rng.below(4) == 0 {
                    // Any Unicode scalar value.
                    let c = char::from_u32((rng.next() % 0x11_0000) as u32).unwrap_or('\u{fffd}');
                    body.push(c);
                } else {
                    body.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]);
                }
            }
            for prefix in ["/graft", "/İ", "!"] {
                for found in parse(&body, prefix) {
                    assert!(
                        strip_prefix(&found.text, prefix).is_some(),
                        "{body:?}: {found:?}"
                    );
                    assert!(found.line >= 1 && found.line <= body.split('\n').count());
                    let _ = found.normalized(prefix);
                }
            }
        }
    }
}
