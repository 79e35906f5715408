//! `/graft help`: the grammar, and the command table under the reply.

use crate::slash::help::grammar;

use super::super::reply::Outcome;

/// Open to everyone and changes nothing, so it needs no [`super::Call`].
pub fn run(prefix: &str) -> Outcome {
    Outcome {
        help: true,
        ..Outcome::done(&format!("{prefix} help"), grammar(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::reply::render;

    const P: &str = "/graft";

    #[test]
    fn help_shows_the_grammar_and_the_table() {
        let reply = render(&[run("!g")], "!g").unwrap();
        assert!(reply.contains("`!g sync --force`") && !reply.contains("/graft"));
        insta::assert_snapshot!(render(&[run(P)], P).unwrap());
    }
}
