//! YAML (multi-document) and JSON must parse.

use yaml_rust2::YamlLoader;

use super::Finding;

pub fn check_yaml(file: &str, content: &[u8]) -> Vec<Finding> {
    let Ok(text) = std::str::from_utf8(content) else {
        return vec![Finding::error(file, None, "not valid UTF-8 text")];
    };
    match YamlLoader::load_from_str(text) {
        Ok(_) => Vec::new(),
        Err(error) => vec![Finding::error(
            file,
            Some(error.marker().line()),
            format!("YAML syntax error: {}", error.info()),
        )],
    }
}

pub fn check_json(file: &str, content: &[u8]) -> Vec<Finding> {
    match serde_json::from_slice::<serde_json::Value>(content) {
        Ok(_) => Vec::new(),
        Err(error) => vec![Finding::error(
            file,
            Some(error.line()),
            format!("JSON syntax error: {error}"),
        )],
    }
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
}
