//! Writing to stdout without panicking. `println!` panics when the reader has gone away
//! (`cardlog log | head`); `outln!` and `out!` return an error instead, which the command
//! passes up and `main` turns into a quiet exit.

use std::io::Write;

use crate::error::CliError;

/// Prints a formatted line on stdout: `outln!("{x}")?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints formatted text on stdout, without a newline: `out!("{text}")?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

/// Writes to stdout; a closed pipe becomes [`CliError::StdoutClosed`].
pub fn write(args: std::fmt::Arguments<'_>) -> Result<(), CliError> {
    std::io::stdout()
        .lock()
        .write_fmt(args)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::StdoutClosed,
            _ => CliError::Failed(format!("writing to stdout: {e}")),
        })
}
