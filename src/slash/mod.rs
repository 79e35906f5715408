//! The slash-command language, pure and without I/O: the grammar
//! ([`parse`](mod@parse)), the command table and suggestions ([`help`]) and the
//! prefix setting. Commands (which run what is read) and sync (which
//! quotes commands in PR texts) both build on it.
//!
//! # Grammar
//!
//! ```text
//! comment      = markdown; every command line in it is read, in order
//! command line = PREFIX (blank+ NAME (blank+ ARGUMENT | blank+ FLAG)*)? blank*
//! PREFIX       = GRAFT_COMMAND_PREFIX (default `/graft`), at the start of a
//!                line (leading blanks allowed), followed by a blank or the
//!                end of the line; ASCII case does not matter
//! NAME         = sync | import | rebase | retry | status | pause | resume
//!              | automerge | help          (case does not matter)
//! FLAG         = `--` word                 (only `sync --force` has one)
//! ARGUMENT     = word                      (only `automerge on|off` has one)
//! ```
//!
//! Lines inside fenced or indented code blocks, inline code, block quotes
//! (`>`, including lazy continuation lines) and HTML blocks or comments are
//! not commands; Markdown structure comes from pulldown-cmark. At most
//! [`parse::MAX_COMMANDS`] lines of one comment run. An unknown name is an
//! error with a "did you mean" suggestion; a wrong argument or flag is an
//! error naming it. `/graft help` answers with the grammar and the table
//! in [`help::COMMAND_HELP`].

pub mod help;
pub mod parse;

pub use help::COMMAND_HELP;
pub use parse::{Command, CommandError, Invocation, parse};

/// `GRAFT_COMMAND_PREFIX`'s default.
pub const DEFAULT_PREFIX: &str = "/graft";

/// How graft reads commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSettings {
    /// `GRAFT_COMMAND_PREFIX`.
    pub prefix: String,
}

impl Default for CommandSettings {
    fn default() -> Self {
        CommandSettings {
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

impl CommandSettings {
    /// Checks `GRAFT_COMMAND_PREFIX`; the error says how to fix it.
    pub fn new(prefix: &str) -> Result<Self, String> {
        let prefix = prefix.trim();
        if prefix.is_empty() || prefix.chars().any(char::is_whitespace) {
            return Err(format!(
                "GRAFT_COMMAND_PREFIX `{prefix}` must be one word without spaces, e.g. `/graft`"
            ));
        }
        Ok(CommandSettings {
            prefix: prefix.to_string(),
        })
    }
}
