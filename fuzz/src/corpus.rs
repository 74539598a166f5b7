//! Reading the committed seeds and the fuzzers' crash artifacts, for the stable tests that
//! replay them (each test crate includes this file with `#[path]`).

use std::fs;
use std::path::{Path, PathBuf};

/// The `fuzz/` folder, from a crate's manifest directory (`crates/<name>`).
pub fn fuzz_dir(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir).join("../../fuzz")
}

/// The files of `dir` and its subfolders, sorted, with their names relative to `dir` (none
/// if it does not exist).
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let (Ok(name), Ok(bytes)) = (path.strip_prefix(dir), fs::read(&path)) {
                out.push((name.display().to_string(), bytes));
            }
        }
    }
    out.sort();
    out
}
