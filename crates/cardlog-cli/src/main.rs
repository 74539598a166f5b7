//! The `cardlog` binary: parses the command line (`args`), runs one command (`commands`,
//! `demo`) and turns failures into one line on stderr and an exit code (`error`).

mod args;
mod commands;
mod demo;
mod error;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cardlog::WallClock;
use cardlog_core::{FakeClock, SystemClock};
use clap::Parser;

use args::{Cli, Command};
use commands::Ctx;
use error::CliError;

fn store_dir(cli: &Cli) -> Result<PathBuf, CliError> {
    if let Some(dir) = &cli.store {
        return Ok(dir.clone());
    }
    dirs::data_dir().map(|d| d.join("cardlog")).ok_or_else(|| {
        CliError::Invalid(
            "no data directory is known for this user; pass --store DIR or set CARDLOG_STORE"
                .into(),
        )
    })
}

/// The wall clock: `CARDLOG_NOW` (RFC 3339) fixes it for scripted scenarios.
fn wall() -> Result<Arc<dyn WallClock>, CliError> {
    match std::env::var("CARDLOG_NOW") {
        Ok(s) => {
            let at = humantime::parse_rfc3339_weak(&s).map_err(|e| {
                CliError::Invalid(format!(
                    "CARDLOG_NOW={s:?} is not an RFC 3339 time (e.g. 2026-11-22T09:00:00Z): {e}"
                ))
            })?;
            let ms = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| CliError::Invalid(format!("CARDLOG_NOW={s:?} is before 1970")))?
                .as_millis();
            let ms = u64::try_from(ms)
                .map_err(|_| CliError::Invalid(format!("CARDLOG_NOW={s:?} is too far ahead")))?;
            Ok(Arc::new(FakeClock::new(ms)))
        }
        Err(_) => Ok(Arc::new(SystemClock)),
    }
}

fn run(cli: &Cli) -> Result<(), CliError> {
    if let Command::Demo = cli.command {
        return demo::run();
    }
    let ctx = Ctx {
        dir: store_dir(cli)?,
        json: cli.json,
        wall: wall()?,
    };
    match &cli.command {
        Command::Init => commands::init(&ctx),
        Command::Add(a) => commands::add(&ctx, a),
        Command::Set { id, changes } => commands::set(&ctx, id, changes),
        Command::Rm { id } => commands::rm(&ctx, id),
        Command::Restore { id } => commands::restore(&ctx, id),
        Command::Show { id } => commands::show(&ctx, id),
        Command::List { search, deleted } => commands::list(&ctx, search.as_deref(), *deleted),
        Command::History { id, path } => commands::history(&ctx, id, path.as_deref()),
        Command::Log(a) => commands::log(&ctx, a),
        Command::Op { id } => commands::op(&ctx, id),
        Command::Heads => commands::heads(&ctx),
        Command::Status => commands::status(&ctx),
        Command::Conflicts => commands::conflicts(&ctx),
        Command::Resolve(a) => commands::resolve(&ctx, a),
        Command::Verify => commands::verify(&ctx),
        Command::Rebuild => commands::rebuild(&ctx),
        Command::Stats => commands::stats(&ctx),
        Command::Demo => demo::run(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cardlog: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
