//! Rules of the source tree that a reviewer would otherwise check by eye, for every crate of the
//! workspace (and `benches/`, `fuzz/`): each `.rs` file opens with a `//!` paragraph saying
//! what lives there, and no two files of one crate import each other, directly or through
//! others (an import circle means two files share one rule and neither owns it).
//!
//! Imports are read from `crate::…` and `super::…` paths (in `use` items, with their brace
//! groups, and inline); a path resolves to the longest module file it names. A crate's root
//! file (`lib.rs`, `main.rs`) is its table of contents, and a re-export (`pub use`) is too,
//! unless the file's own code uses the name it re-exports.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "corpus" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for top in ["crates", "benches", "fuzz"] {
        rust_files(&root.join(top), &mut files);
    }
    files.sort();
    files
}

/// Whether the file's first non-blank line is a `//!` line (attributes such as
/// `#![forbid(…)]` may not come first: the paragraph says what the file is before anything).
fn opens_with_module_doc(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

// Every .rs file in the workspace opens with a //! paragraph (fails naming the files that don't).
#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let files = all_rust_files();
    assert!(files.len() > 100, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !opens_with_module_doc(&std::fs::read_to_string(f).unwrap()))
        .map(|f| {
            f.strip_prefix(workspace_root())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! paragraph: {missing:#?}"
    );
}

// The doc check itself: a file starting with code or a plain comment is caught.
#[test]
fn the_module_doc_check_can_fail() {
    assert!(opens_with_module_doc("\n//! What lives here.\nfn f() {}"));
    assert!(!opens_with_module_doc("// A comment.\n//! Late.\n"));
    assert!(!opens_with_module_doc("use std::fs;\n"));
    assert!(!opens_with_module_doc(""));
}

/// A crate's source: module path (`a::b`) → file.
struct CrateSrc {
    modules: BTreeMap<Vec<String>, PathBuf>,
}

impl CrateSrc {
    fn read(src: &Path) -> Self {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let mut modules = BTreeMap::new();
        for file in files {
            let rel = file.strip_prefix(src).unwrap();
            // `src/bin/*.rs` are crate roots of their own.
            if rel.starts_with("bin") {
                continue;
            }
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
                parts.clear();
            }
            modules.insert(parts, file);
        }
        Self { modules }
    }

    /// The module file a path (from the crate root) lands in: the longest module prefix.
    fn resolve(&self, path: &[String]) -> Option<&PathBuf> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.modules.get(&path[..n]))
    }
}

/// Code with comments and string literals blanked out (good enough for `use` paths).
fn strip_comments_and_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push_str("\"\"");
            }
            // A char literal such as '"' or '{' (lifetimes are left alone).
            '\'' => {
                let mut look = chars.clone();
                let a = look.next();
                let b = look.next();
                if a == Some('\\') {
                    // '\n', '\'', '\u{..}': skip to the closing quote.
                    chars.next();
                    chars.next();
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                    out.push_str("' '");
                } else if b == Some('\'') {
                    chars.next();
                    chars.next();
                    out.push_str("' '");
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Expands a `use` tree (`crate::{a::{self, B}, c::D}`) into its leaf paths.
fn expand_use(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut base = prefix.to_vec();
        base.extend(
            tree[..open]
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_use(&inner[start..], &base, out);
    } else {
        let tree = tree.split(" as ").next().unwrap_or(tree);
        let mut path = prefix.to_vec();
        path.extend(
            tree.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "*")
                .map(String::from),
        );
        // `a::{self}` names `a`.
        if path.len() > 1 && path.last().is_some_and(|l| l == "self") {
            path.pop();
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
}

/// Whether `name` occurs as a word in `code` outside its `use` items.
fn used_outside_uses(code: &str, name: &str) -> bool {
    code.split(';')
        .map(|item| match item.rfind("use ") {
            // Keep what precedes a use item (it ends the item before it).
            Some(pos) => &item[..pos],
            None => item,
        })
        .any(|text| {
            text.match_indices(name).any(|(at, _)| {
                let before = text[..at].chars().last();
                let after = text[at + name.len()..].chars().next();
                let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !word(before) && !word(after)
            })
        })
}

/// Every module path a file names (from `crate`, `super`, `self` or one of its child modules),
/// made absolute from the root. `module` is the file's own module path.
fn imported_paths(code: &str, module: &[String], krate: &CrateSrc) -> Vec<Vec<String>> {
    let mut raw = Vec::new();
    // `use` items, with brace groups.
    for item in code.split(';') {
        let item = item.trim();
        let Some(pos) = item.rfind("use ") else {
            continue;
        };
        let before = &item[..pos];
        // A re-export (`pub use`, `pub(crate) use`) is a table of contents, not a dependency
        // of the file's own code, unless the file's own code uses what it re-exports.
        if before.trim_end().ends_with("pub") || before.trim_end().ends_with(')') {
            let mut leaves = Vec::new();
            expand_use(item[pos + 4..].trim(), &[], &mut leaves);
            raw.extend(leaves.into_iter().filter(|leaf| {
                leaf.last()
                    .is_some_and(|name| used_outside_uses(code, name))
            }));
            continue;
        }
        if !(before.is_empty()
            || before.ends_with(char::is_whitespace)
            || before.ends_with(')')
            || before.ends_with('}'))
        {
            continue;
        }
        expand_use(item[pos + 4..].trim(), &[], &mut raw);
    }
    // Inline paths (`crate::log::frame(…)`).
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            let prev = code[..at].chars().last();
            if prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if rest.ends_with("::") && code[at + rest.len()..].starts_with('{') {
                continue; // a brace group: handled with the use items
            }
            raw.push(
                rest.split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    raw.into_iter()
        .filter_map(|p: Vec<String>| {
            let mut abs = module.to_vec();
            let mut parts = p.into_iter().peekable();
            match parts.peek().map(String::as_str) {
                Some("crate") => {
                    abs.clear();
                    parts.next();
                }
                Some("super") => {
                    while parts.peek().map(String::as_str) == Some("super") {
                        parts.next();
                        abs.pop()?;
                    }
                }
                Some("self") => {
                    parts.next();
                }
                Some(first) => {
                    // A child module named without `self::` (2018 paths); anything else is
                    // another crate.
                    let mut child = module.to_vec();
                    child.push(first.to_owned());
                    if !krate.modules.contains_key(&child) {
                        return None;
                    }
                }
                None => return None,
            }
            abs.extend(parts);
            Some(abs)
        })
        .collect()
}

/// The import graph between a crate's module files.
fn import_graph(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let krate = CrateSrc::read(src);
    let mut graph = BTreeMap::new();
    for (module, file) in &krate.modules {
        if module.is_empty() {
            continue; // the crate root is the table of contents
        }
        let text = std::fs::read_to_string(file).unwrap();
        // A file's tests (`#[cfg(test)] mod tests`, at its end) may reach anywhere.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let code = strip_comments_and_strings(text);
        let mut deps = BTreeSet::new();
        for path in imported_paths(&code, module, &krate) {
            if let Some(target) = krate.resolve(&path) {
                // A module's own parent directory file and the root are not imports of rules.
                if target != file && krate.modules.get(&Vec::new()).is_none_or(|r| r != target) {
                    deps.insert(target.clone());
                }
            }
        }
        graph.insert(file.clone(), deps);
    }
    graph
}

/// One import circle of `graph`, as the files along it, if there is one.
fn find_cycle(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Option<Vec<PathBuf>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        marks: &mut BTreeMap<PathBuf, Mark>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(node.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(node, graph, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

// No crate has two source files that import each other, directly or around a circle.
#[test]
fn no_import_circle_between_files_of_one_crate() {
    let root = workspace_root();
    let mut srcs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .collect();
    srcs.push(root.join("benches/src"));
    srcs.push(root.join("fuzz/src"));
    srcs.sort();
    let mut circles = Vec::new();
    for src in &srcs {
        if let Some(cycle) = find_cycle(&import_graph(src)) {
            circles.push(
                cycle
                    .iter()
                    .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
                    .collect::<Vec<_>>()
                    .join(" -> "),
            );
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

// The circle check itself: two files naming each other (through a brace group and `super`)
// are found; a one-way import is not a circle.
#[test]
fn the_circle_check_can_fail() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("store")).unwrap();
    std::fs::write(src.join("lib.rs"), "//! Root.\nmod log;\nmod store;\n").unwrap();
    std::fs::write(
        src.join("log.rs"),
        "//! Log.\nuse crate::{store::{self, stage::Stage}};\n",
    )
    .unwrap();
    std::fs::write(src.join("store/mod.rs"), "//! Store.\nmod stage;\n").unwrap();
    std::fs::write(
        src.join("store/stage.rs"),
        "//! Stage.\nfn f() { super::super::log::frame(); }\n",
    )
    .unwrap();
    let cycle = find_cycle(&import_graph(&src)).expect("log <-> store/stage is a circle");
    assert!(cycle.len() >= 3, "{cycle:?}");
    std::fs::write(
        src.join("log.rs"),
        "//! Log.\n// use crate::store::stage::Stage;\n",
    )
    .unwrap();
    assert_eq!(find_cycle(&import_graph(&src)), None);
    // A parent whose own code uses what it re-exports from a child depends on it.
    std::fs::write(
        src.join("store/mod.rs"),
        "//! Store.\nmod stage;\npub use stage::Stage;\nfn f(s: Stage) {}\n",
    )
    .unwrap();
    std::fs::write(src.join("store/stage.rs"), "//! Stage.\nuse super::f;\n").unwrap();
    assert!(find_cycle(&import_graph(&src)).is_some());
    // A parent that imports its child, and the child that names the parent, are a circle too.
    std::fs::write(
        src.join("store/mod.rs"),
        "//! Store.\nmod stage;\nuse stage::Stage;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("store/stage.rs"),
        "//! Stage.\nuse super::Store;\n",
    )
    .unwrap();
    assert!(find_cycle(&import_graph(&src)).is_some());
}
