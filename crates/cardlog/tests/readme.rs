//! The README's "Using the library" snippet is the body of `examples/two_replicas.rs` between
//! its README markers, line for line (indentation aside): the example compiles and runs in CI,
//! so the snippet does too. Fails naming the first line that differs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lines of the first ```rust block after `heading` in `markdown`.
fn rust_block_after<'a>(markdown: &'a str, heading: &str) -> Vec<&'a str> {
    let from = markdown.find(heading).expect("the README has the heading");
    let rest = &markdown[from..];
    let start = rest.find("```rust\n").expect("a rust block follows") + "```rust\n".len();
    let end = rest[start..].find("```").expect("the block ends") + start;
    rest[start..end].lines().collect()
}

/// The lines between `// README: begin` and `// README: end` in `code`.
fn marked_region(code: &str) -> Vec<&str> {
    let mut lines = code.lines();
    lines
        .by_ref()
        .find(|l| l.trim() == "// README: begin")
        .expect("the begin marker");
    lines.take_while(|l| l.trim() != "// README: end").collect()
}

#[test]
fn the_readme_snippet_is_the_example() {
    let readme = std::fs::read_to_string(root().join("../../README.md")).unwrap();
    let example = std::fs::read_to_string(root().join("examples/two_replicas.rs")).unwrap();
    let snippet = rust_block_after(&readme, "## Using the library");
    let region = marked_region(&example);
    assert!(snippet.len() > 10, "snippet of {} lines", snippet.len());
    for (i, (a, b)) in snippet.iter().zip(&region).enumerate() {
        assert_eq!(a.trim(), b.trim(), "line {} of the snippet differs", i + 1);
    }
    assert_eq!(
        snippet.len(),
        region.len(),
        "the snippet and the example differ in length"
    );
}

#[test]
fn the_comparison_can_fail() {
    let region = marked_region("a\n// README: begin\nlet x = 1;\n// README: end\n");
    assert_eq!(region, ["let x = 1;"]);
    let block = rust_block_after("## H\n\n```rust\nlet y = 2;\n```\n", "## H");
    assert_ne!(block[0].trim(), region[0].trim());
}
