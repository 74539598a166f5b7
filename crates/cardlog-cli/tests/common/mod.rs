//! Shared by the CLI's integration tests: one finished run of the real binary and the checks
//! made on it (exit code, one-line errors, no panic, JSON output).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use std::ffi::OsStr;

use serde_json::Value;

/// One finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit 0 and no panic.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "cardlog {:?} failed\nstdout: {}\nstderr: {}",
            self.args, self.stdout, self.stderr
        );
        self.assert_no_panic();
        self
    }

    /// Asserts the exit code and that stderr is exactly one `cardlog: ` line.
    pub fn fails(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "cardlog {:?}: wrong exit code\nstdout: {}\nstderr: {}",
            self.args, self.stdout, self.stderr
        );
        self.assert_no_panic();
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "cardlog {:?}: stderr is not one line: {:?}",
            self.args,
            self.stderr
        );
        assert!(
            lines[0].starts_with("cardlog: ") && lines[0].len() > "cardlog: ".len() + 10,
            "cardlog {:?}: stderr {:?}",
            self.args,
            self.stderr
        );
        self
    }

    pub fn assert_no_panic(&self) {
        for text in [&self.stdout, &self.stderr] {
            assert!(
                !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
                "cardlog {:?} panicked: {}",
                self.args,
                self.stderr
            );
        }
    }

    /// Asserts stderr mentions every one of `parts`.
    pub fn says(self, parts: &[&str]) -> Run {
        for part in parts {
            assert!(
                self.stderr.contains(part),
                "cardlog {:?}: stderr {:?} does not mention {part:?}",
                self.args,
                self.stderr
            );
        }
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "cardlog {:?}: stdout is not JSON ({e}): {}",
                self.args, self.stdout
            )
        })
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts some stdout line contains every one of `parts`.
    pub fn has_line(&self, parts: &[&str]) -> &Run {
        assert!(
            self.lines()
                .iter()
                .any(|l| parts.iter().all(|p| l.contains(p))),
            "cardlog {:?}: no stdout line has all of {parts:?}:\n{}",
            self.args,
            self.stdout
        );
        self
    }
}

/// The arguments as strings, for messages.
pub fn arg_strings<S: AsRef<OsStr>>(args: &[S]) -> Vec<String> {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect()
}

/// The run `output` of `args` was.
pub fn finished(args: Vec<String>, out: std::process::Output) -> Run {
    Run {
        args,
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}
