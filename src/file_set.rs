//! A generator's set of files on its way to graft: the limits graft holds
//! it to and the JSON form of file content. The API (`http::files`)
//! enforces them; `graft push` checks files against them before sending.

use base64::Engine;
use serde_json::{Value, json};

/// Largest file graft accepts (decoded bytes).
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Largest sum of decoded file contents in one request.
pub const MAX_REQUEST_BYTES: usize = 20 * 1024 * 1024;
/// Most files in one request.
pub const MAX_FILES: usize = 10_000;

/// File content as JSON: the text when it is UTF-8, else
/// `{"base64": "..."}` (standard alphabet, padded).
pub fn content_json(content: &[u8]) -> Value {
    match std::str::from_utf8(content) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(content) }),
    }
}
