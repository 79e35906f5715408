//! What `graft pull` wrote into DIR ([`MANIFEST`]): per path, the git
//! blob ids graft may have left there. After a finished pull each path
//! has one. Before a pull writes a file it records the new id beside the
//! old one (the file holds either until the rename), so a pull stopped
//! at any point leaves every file it touched recognised as graft's, not
//! as a local change.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The manifest's name in DIR; `graft push` does not upload it.
pub const MANIFEST: &str = ".graft-pull.json";

/// One path's entry on disk: a string after a finished pull (the form
/// earlier versions wrote and read), a list while a pull is under way.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Entry {
    One(String),
    Either(Vec<String>),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest(BTreeMap<String, Vec<String>>);

impl Manifest {
    /// The manifest in `dir`; none (or one that does not parse) is empty:
    /// every file there then counts as a local change unless it already
    /// is the server's version.
    pub fn read(dir: &Path) -> Manifest {
        let entries: BTreeMap<String, Entry> = std::fs::read(dir.join(MANIFEST))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Manifest(
            entries
                .into_iter()
                .map(|(path, entry)| match entry {
                    Entry::One(blob) => (path, vec![blob]),
                    Entry::Either(blobs) => (path, blobs),
                })
                .collect(),
        )
    }

    /// Saves it in `dir` through a temporary file and a rename, so the
    /// manifest on disk is always a whole one.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let entries: BTreeMap<&String, Entry> = self
            .0
            .iter()
            .map(|(path, blobs)| {
                let entry = match blobs.as_slice() {
                    [one] => Entry::One(one.clone()),
                    many => Entry::Either(many.to_vec()),
                };
                (path, entry)
            })
            .collect();
        let json = serde_json::to_vec_pretty(&entries)?;
        super::write_file(&dir.join(MANIFEST), &json, 0o644)
            .with_context(|| format!("cannot record the pull in {}", dir.join(MANIFEST).display()))
    }

    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    /// The blob ids graft may have left at `path`.
    pub fn written(&self, path: &str) -> &[String] {
        self.0.get(path).map_or(&[], Vec::as_slice)
    }

    /// Before `blob` is written at `path`: either it or what was there is
    /// graft's. `true` when that is news (the manifest must be saved).
    pub fn expect(&mut self, path: &str, blob: &str) -> bool {
        let blobs = self.0.entry(path.to_string()).or_default();
        if blobs.iter().any(|b| b == blob) {
            return false;
        }
        blobs.push(blob.to_string());
        true
    }

    /// `path` holds `blob`, graft's version.
    pub fn settle(&mut self, path: &str, blob: &str) {
        self.0.insert(path.to_string(), vec![blob.to_string()]);
    }

    /// `path` is no longer graft's to follow (removed, or gone on both
    /// sides).
    pub fn forget(&mut self, path: &str) {
        self.0.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_under_way_is_saved_and_read_back_with_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::default();
        manifest.settle("a.tf", "old");
        manifest.settle("b.tf", "b");
        assert!(manifest.expect("a.tf", "new"));
        assert!(!manifest.expect("a.tf", "new"), "already expected");
        manifest.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"a.tf": ["old", "new"], "b.tf": "b"})
        );
        let read = Manifest::read(dir.path());
        assert_eq!(read, manifest);
        assert_eq!(read.written("a.tf"), ["old", "new"]);
        assert!(read.written("c.tf").is_empty());
    }

    #[test]
    fn a_missing_or_damaged_manifest_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::read(dir.path()), Manifest::default());
        std::fs::write(dir.path().join(MANIFEST), b"{not json").unwrap();
        assert_eq!(Manifest::read(dir.path()), Manifest::default());
    }
}
