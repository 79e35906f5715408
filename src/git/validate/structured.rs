//! YAML (multi-document) and JSON must parse, within bounds: a file may
//! not nest deeper than [`MAX_DEPTH`], and YAML's aliases may not expand
//! into more than [`MAX_YAML_NODES`] nodes ("billion laughs") or
//! [`MAX_YAML_BYTES`] of text (one long string aliased many times). All are
//! checked on a stream of events or bytes before any tree is built, so a
//! hostile file costs time and memory in proportion to its size.

use std::collections::HashMap;

use yaml_rust2::parser::Parser;
use yaml_rust2::{Event, ScanError, YamlLoader};

use super::{Finding, MAX_DEPTH, MAX_YAML_BYTES, MAX_YAML_NODES};

pub fn check_yaml(file: &str, content: &[u8]) -> Vec<Finding> {
    let Ok(text) = std::str::from_utf8(content) else {
        return vec![Finding::error(file, None, "not valid UTF-8 text")];
    };
    let syntax = |error: ScanError| {
        vec![Finding::error(
            file,
            Some(error.marker().line()),
            format!("YAML syntax error: {}", error.info()),
        )]
    };
    match yaml_bounds(text) {
        Ok(None) => {}
        Ok(Some((line, message))) => return vec![Finding::error(file, Some(line), message)],
        Err(error) => return syntax(error),
    }
    // Within bounds, the loader's tree is small and shallow; it also finds
    // what the event stream does not (duplicate keys).
    match YamlLoader::load_from_str(text) {
        Ok(_) => Vec::new(),
        Err(error) => syntax(error),
    }
}

/// What the loader would build for a part of a file: its nodes and the
/// bytes of its scalars. An alias costs what its anchor cost again, since
/// the loader copies the anchored value for every alias.
#[derive(Debug, Clone, Copy, Default)]
struct Weight {
    nodes: u64,
    bytes: u64,
}

impl Weight {
    fn add(&mut self, other: Weight) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }

    fn since(self, start: Weight) -> Weight {
        Weight {
            nodes: self.nodes - start.nodes + 1,
            bytes: self.bytes - start.bytes,
        }
    }

    fn exceeded(self) -> Option<String> {
        if self.nodes > MAX_YAML_NODES {
            Some(format!(
                "YAML expands to more than {MAX_YAML_NODES} nodes once its aliases are resolved; graft does not validate files this large"
            ))
        } else if self.bytes > MAX_YAML_BYTES {
            Some(format!(
                "YAML expands to more than {} MiB of text once its aliases are resolved; graft does not validate files this large",
                MAX_YAML_BYTES >> 20
            ))
        } else {
            None
        }
    }
}

/// Walks the parser's events and weighs what the loader would build: every
/// node and scalar byte, every alias's expansion, and the copy it keeps of
/// every anchored node. `Some((line, message))` when a limit is exceeded.
fn yaml_bounds(text: &str) -> Result<Option<(usize, String)>, ScanError> {
    let mut parser = Parser::new_from_str(text);
    // Open collections: their anchor and the weight when they opened.
    let mut open: Vec<(usize, Weight)> = Vec::new();
    let mut anchored: HashMap<usize, Weight> = HashMap::new();
    let mut total = Weight::default();
    loop {
        let (event, mark) = parser.next_token()?;
        match event {
            Event::StreamEnd => return Ok(None),
            Event::Scalar(value, _, anchor, _) => {
                let scalar = Weight {
                    nodes: 1,
                    bytes: value.len() as u64,
                };
                total.add(scalar);
                if anchor > 0 {
                    anchored.insert(anchor, scalar);
                    total.add(scalar);
                }
            }
            Event::Alias(anchor) => {
                let copy = anchored
                    .get(&anchor)
                    .copied()
                    .unwrap_or(Weight { nodes: 1, bytes: 0 });
                total.add(copy);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                total.add(Weight { nodes: 1, bytes: 0 });
                open.push((anchor, total));
                if open.len() > MAX_DEPTH {
                    return Ok(Some((
                        mark.line(),
                        format!(
                            "YAML nested more than {MAX_DEPTH} levels deep; graft does not validate deeper nesting"
                        ),
                    )));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, start)) = open.pop()
                    && anchor > 0
                {
                    let size = total.since(start);
                    anchored.insert(anchor, size);
                    total.add(size);
                }
            }
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {}
        }
        if let Some(message) = total.exceeded() {
            return Ok(Some((mark.line(), message)));
        }
    }
}

pub fn check_json(file: &str, content: &[u8]) -> Vec<Finding> {
    if let Some(line) = json_too_deep(content) {
        return vec![Finding::error(
            file,
            Some(line),
            format!(
                "JSON nested more than {MAX_DEPTH} levels deep; graft does not validate deeper nesting"
            ),
        )];
    }
    match serde_json::from_slice::<serde_json::Value>(content) {
        Ok(_) => Vec::new(),
        Err(error) => vec![Finding::error(
            file,
            Some(error.line()),
            format!("JSON syntax error: {error}"),
        )],
    }
}

/// The line where brackets outside strings first nest deeper than
/// [`MAX_DEPTH`]; `None` when they never do.
fn json_too_deep(content: &[u8]) -> Option<usize> {
    let (mut depth, mut line) = (0usize, 1usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in content {
        if byte == b'\n' {
            line += 1;
        }
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_parses() {
        assert!(check_yaml("k.yaml", b"a: 1\n---\nb: [1, 2]\n").is_empty());
    }

    #[test]
    fn broken_yaml_and_json_report_a_line() {
        let yaml = check_yaml("k.yaml", b"a: 1\nb: [1, 2\nc: 3\n");
        assert_eq!(yaml.len(), 1);
        assert!(yaml[0].line.is_some());
        let json = check_json("x.json", b"{\n  \"a\": 1,\n}\n");
        assert_eq!(json.len(), 1);
        assert_eq!(json[0].line, Some(3));
    }

    #[test]
    fn duplicate_yaml_keys_are_still_errors() {
        let findings = check_yaml("k.yaml", b"a: 1\na: 2\n");
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].message.contains("duplicated key"),
            "{findings:?}"
        );
    }

    #[test]
    fn ordinary_aliases_are_fine() {
        let text = b"base: &base {image: x, replicas: 2}\nweb: *base\nworker:\n  <<: *base\n  replicas: 3\n";
        assert!(check_yaml("k.yaml", text).is_empty());
    }

    /// Ten aliases per level, nine levels: a billion strings once expanded.
    pub(crate) fn billion_laughs() -> String {
        let mut text = String::from(
            "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for level in 1..=9 {
            let previous = format!("*a{}", level - 1);
            let items = vec![previous; 10].join(",");
            text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        text
    }

    #[test]
    fn alias_bombs_are_refused_quickly() {
        let started = std::time::Instant::now();
        let findings = check_yaml("bomb.yaml", billion_laughs().as_bytes());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].message.contains("more than 500000 nodes"),
            "{findings:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn anchors_nested_in_anchors_count_their_copies() {
        // Each anchored level keeps a copy of everything inside it.
        let mut text = String::new();
        for level in 0..60 {
            text.push_str(&format!("{}- &n{level}\n", "  ".repeat(level)));
        }
        let items: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        text.push_str(&format!("{}- [{}]\n", "  ".repeat(60), items.join(",")));
        let findings = check_yaml("copies.yaml", text.as_bytes());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].message.contains("nodes"), "{findings:?}");
    }

    #[test]
    fn a_long_string_aliased_many_times_is_refused() {
        // Few nodes, but the loader would copy 700 KB for every alias.
        let text = format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "x".repeat(700_000),
            vec!["*a"; 100_000].join(",")
        );
        let started = std::time::Instant::now();
        let findings = check_yaml("wide.yaml", text.as_bytes());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].message.contains("MiB of text"), "{findings:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn deep_yaml_and_json_are_refused_without_recursion() {
        for depth in [MAX_DEPTH + 1, 100_000] {
            let flow = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let json = check_json("deep.json", flow.as_bytes());
            assert_eq!(json.len(), 1, "{json:?}");
            assert!(
                json[0].message.contains("nested more than 100 levels"),
                "{json:?}"
            );
            let block: String = (0..depth.min(1_000))
                .map(|level| format!("{}- \n", "  ".repeat(level)))
                .collect();
            for text in [flow.as_str(), block.as_str()] {
                let yaml = check_yaml("deep.yaml", text.as_bytes());
                assert_eq!(yaml.len(), 1, "{yaml:?}");
                assert!(yaml[0].severity == super::super::Severity::Error);
            }
        }
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check_json("ok.json", ok.as_bytes()).is_empty());
        assert!(check_yaml("ok.yaml", ok.as_bytes()).is_empty());
        // Brackets inside strings are not nesting.
        let quoted = format!("{{\"a\": \"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(check_json("s.json", quoted.as_bytes()).is_empty());
    }
}
