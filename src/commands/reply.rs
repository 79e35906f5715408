//! What graft answers: one reply per comment, short and polite, saying
//! what happened and what to do next. Pure rendering, snapshot-tested.

use serde::{Deserialize, Serialize};

use crate::slash::help::{grammar, help_table};
use crate::slash::parse::{Command, CommandError, echo};

use super::REPLY_MARKER;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It did what was asked (or there was nothing to do).
    Done,
    /// The author may not run it.
    Refused,
    /// Not a valid command.
    Invalid,
    /// It was allowed and valid but did not work.
    Failed,
}

/// The result of one command line, stored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The command line, shortened for display.
    pub command: String,
    pub verdict: Verdict,
    /// Markdown for the reply.
    pub message: String,
    /// Whether the reply says anything about it (`status` answers in the
    /// sticky comment instead).
    pub reply: bool,
    /// Whether the reply should carry the command table.
    pub help: bool,
}

impl Outcome {
    pub fn done(command: &str, message: String) -> Self {
        Outcome {
            command: echo_line(command),
            verdict: Verdict::Done,
            message,
            reply: true,
            help: false,
        }
    }

    pub fn failed(command: &str, message: String) -> Self {
        Outcome {
            verdict: Verdict::Failed,
            ..Outcome::done(command, message)
        }
    }
}

/// A command line for display: the prefix and up to a few words.
fn echo_line(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().take(4).collect();
    echo(&words.join(" "))
}

/// Who may change things, in the forge's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    Github,
    Gitlab,
}

impl Forge {
    /// The forge's name, as replies write it.
    pub fn name(self) -> &'static str {
        match self {
            Forge::Github => "GitHub",
            Forge::Gitlab => "GitLab",
        }
    }

    /// What the forge calls a pull request.
    pub fn pr(self) -> &'static str {
        match self {
            Forge::Github => "pull request",
            Forge::Gitlab => "merge request",
        }
    }
}

/// The polite refusal for a user without write access.
pub fn refusal(forge: Forge, user: &str, repo: &str, command: Command, prefix: &str) -> Outcome {
    let needed = match forge {
        Forge::Github => format!("write access to `{repo}`"),
        Forge::Gitlab => format!("at least the Developer role in `{repo}`"),
    };
    Outcome {
        verdict: Verdict::Refused,
        message: format!(
            "@{user}, you need {needed} to run `{}`, so nothing was changed. \
             `{prefix} status` and `{prefix} help` work for everyone.",
            command.usage(prefix)
        ),
        ..Outcome::done(&command.usage(prefix), String::new())
    }
}

/// The answer to a line that is not a valid command.
pub fn invalid(line: &str, error: &CommandError, prefix: &str) -> Outcome {
    let message = match error {
        CommandError::MissingCommand => {
            format!("`{prefix}` needs a command after it, for example `{prefix} help`.")
        }
        CommandError::Unknown { name, suggestion } => match suggestion {
            Some(s) => {
                format!("`{prefix} {name}` is not a graft command. Did you mean `{prefix} {s}`?")
            }
            None => format!("`{prefix} {name}` is not a graft command."),
        },
        CommandError::UnexpectedArgument { command, argument } => format!(
            "`{prefix} {command}` does not take the argument `{argument}`, so it did not run."
        ),
        CommandError::UnknownFlag {
            command,
            flag,
            allowed,
        } => match allowed.as_slice() {
            [] => format!("`{prefix} {command}` takes no flags (got `{flag}`), so it did not run."),
            allowed => format!(
                "`{prefix} {command}` has no flag `{flag}`, so it did not run; it takes {}.",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        CommandError::MissingArgument { command, expected } => {
            format!("`{prefix} {command}` needs {expected}, for example `{prefix} {command} on`.")
        }
        CommandError::InvalidArgument {
            command,
            argument,
            expected,
        } => format!("`{prefix} {command}` needs {expected}, not `{argument}`."),
        CommandError::TooMany { limit } => format!(
            "Only the first {limit} commands of a comment run; this line and every \
             command after it were skipped. Write them in a new comment."
        ),
    };
    let help = !matches!(error, CommandError::TooMany { .. });
    Outcome {
        verdict: Verdict::Invalid,
        help,
        ..Outcome::done(line, message)
    }
}

/// The answer on a PR/MR graft does not own.
pub fn not_managed(prefix: &str, forge: Forge) -> String {
    let (what, short) = match forge {
        Forge::Github => ("pull request", "pull requests"),
        Forge::Gitlab => ("merge request", "merge requests"),
    };
    format!(
        "{REPLY_MARKER}\nThis {what} is not managed by graft, so `{prefix}` commands do nothing \
         here. graft answers them on the {short} it opens for its projects.\n"
    )
}

/// The one reply for a comment's commands, or `None` when there is
/// nothing to say (only `status`, which rewrote the sticky comment).
pub fn render(outcomes: &[Outcome], prefix: &str) -> Option<String> {
    let shown: Vec<&Outcome> = outcomes.iter().filter(|o| o.reply).collect();
    if shown.is_empty() {
        return None;
    }
    let mut out = format!("{REPLY_MARKER}\n");
    if let [only] = shown.as_slice() {
        out.push_str(&only.message);
        out.push('\n');
    } else {
        for outcome in &shown {
            out.push_str(&format!("- `{}`: {}\n", outcome.command, outcome.message));
        }
    }
    let asked_for_help = shown.iter().any(|o| o.help && o.verdict == Verdict::Done);
    let errors_need_help = shown
        .iter()
        .any(|o| o.help && o.verdict == Verdict::Invalid);
    if asked_for_help {
        out.push_str(&format!("\n{}\n", help_table(prefix)));
    } else if errors_need_help {
        out.push_str(&format!(
            "\n<details><summary>Commands</summary>\n\n{}\n\n{}\n</details>\n",
            help_table(prefix),
            grammar(prefix)
        ));
    }
    Some(out)
}

/// The reaction that ends the exchange: all done, or not.
pub fn all_done(outcomes: &[Outcome]) -> bool {
    outcomes.iter().all(|o| o.verdict == Verdict::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slash::parse::parse;

    const P: &str = "/graft";

    fn invalid_of(body: &str) -> Outcome {
        let found = parse(body, P);
        invalid(&found[0].text, found[0].result.as_ref().unwrap_err(), P)
    }

    #[test]
    fn unknown_command_suggests_and_lists_the_commands() {
        insta::assert_snapshot!(render(&[invalid_of("/graft snyc")], P).unwrap());
    }

    #[test]
    fn bad_arguments_name_the_argument() {
        let replies: Vec<String> = [
            "/graft sync now",
            "/graft sync --froce",
            "/graft import --force",
            "/graft automerge",
            "/graft automerge maybe",
            "/graft",
        ]
        .iter()
        .map(|b| invalid_of(b).message)
        .collect();
        insta::assert_snapshot!(replies.join("\n"));
    }

    #[test]
    fn refusals_name_the_permission() {
        insta::assert_snapshot!(
            render(
                &[refusal(
                    Forge::Github,
                    "octocat",
                    "acme/infra",
                    Command::Sync { force: false },
                    P
                )],
                P
            )
            .unwrap()
        );
        let gitlab = refusal(Forge::Gitlab, "dev", "g/sub/p", Command::Pause, P);
        assert!(
            gitlab.message.contains("Developer role in `g/sub/p`"),
            "{}",
            gitlab.message
        );
    }

    #[test]
    fn several_commands_are_a_list_and_status_alone_says_nothing() {
        let status = Outcome {
            reply: false,
            ..Outcome::done("/graft status", "Refreshed.".into())
        };
        assert_eq!(render(std::slice::from_ref(&status), P), None);
        let outcomes = vec![
            Outcome::done("/graft pause", "Paused.".into()),
            status,
            invalid_of("/graft bogus"),
        ];
        insta::assert_snapshot!(render(&outcomes, P).unwrap());
        assert!(!all_done(&outcomes));
    }
}
