//! The `cardlog` binary: parses the command line (`args`), runs one command (`commands`,
//! `sync`, `demo`) and turns failures into one line on stderr and an exit code (`error`).

mod args;
mod commands;
mod demo;
mod error;
mod members;
mod out;
mod relay;
mod render;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cardlog::WallClock;
use cardlog::{FakeClock, SystemClock};
use clap::error::ErrorKind;
use clap::Parser;

use args::{Cli, Command, VcardCommand};
use commands::Ctx;
use error::CliError;

/// The store: `--store DIR`, else `CARDLOG_STORE` (an empty value counts as unset), else
/// `cardlog` in the user's data directory.
fn store_dir(cli: &Cli) -> Result<PathBuf, CliError> {
    if let Some(dir) = &cli.store {
        return Ok(dir.clone());
    }
    if let Some(dir) = std::env::var_os("CARDLOG_STORE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::data_dir().map(|d| d.join("cardlog")).ok_or_else(|| {
        CliError::Invalid(
            "no data directory is known for this user; pass --store DIR or set CARDLOG_STORE"
                .into(),
        )
    })
}

/// Parses an RFC 3339 time with its zone, `Z` or `±HH:MM` (e.g. `2026-11-22T10:00:00+01:00`),
/// into milliseconds since 1970. humantime reads the date and time; the offset is applied
/// here, because humantime's lenient parser would take any offset for UTC.
fn parse_now(s: &str) -> Result<u64, String> {
    let (local, offset_min) = match s.strip_suffix('Z') {
        Some(local) => (local, 0i128),
        None => {
            let at = s.len().saturating_sub(6);
            let (local, zone) = s
                .get(..at)
                .zip(s.get(at..))
                .ok_or("no time zone (Z or ±HH:MM)")?;
            let sign = match zone.get(..1) {
                Some("+") => 1,
                Some("-") => -1,
                _ => return Err("no time zone (Z or ±HH:MM)".into()),
            };
            let two = |t: Option<&str>, max: i128| {
                t.filter(|t| t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|t| t.parse::<i128>().ok())
                    .filter(|n| *n <= max)
            };
            let hours = two(zone.get(1..3), 23);
            let minutes = two(zone.get(4..6), 59);
            match (hours, minutes, zone.get(3..4)) {
                (Some(h), Some(m), Some(":")) => (local, sign * (h * 60 + m)),
                _ => return Err(format!("bad time zone offset {zone:?}")),
            }
        }
    };
    let at = humantime::parse_rfc3339(&format!("{local}Z")).map_err(|e| e.to_string())?;
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "before 1970".to_owned())?
        .as_millis();
    let ms = i128::try_from(ms).map_err(|_| "too far ahead".to_owned())? - offset_min * 60_000;
    u64::try_from(ms).map_err(|_| "before 1970".to_owned())
}

/// The wall clock: `CARDLOG_NOW` (RFC 3339) fixes it for scripted scenarios.
fn wall() -> Result<Arc<dyn WallClock>, CliError> {
    match std::env::var("CARDLOG_NOW") {
        Ok(s) => {
            let ms = parse_now(&s).map_err(|e| {
                CliError::Invalid(format!(
                    "CARDLOG_NOW={s:?} is not an RFC 3339 time with a zone (e.g. \
                     2026-11-22T09:00:00Z or 2026-11-22T10:00:00+01:00): {e}"
                ))
            })?;
            Ok(Arc::new(FakeClock::new(ms)))
        }
        Err(std::env::VarError::NotUnicode(s)) => Err(CliError::Invalid(format!(
            "CARDLOG_NOW={s:?} is not an RFC 3339 time (not even text)"
        ))),
        Err(std::env::VarError::NotPresent) => Ok(Arc::new(SystemClock)),
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
        read_only: cli.read_only,
    };
    if ctx.read_only && matches!(cli.command, Command::Init(_) | Command::Relay(_)) {
        return Err(CliError::Invalid(
            "--read-only opens an existing store for reading: it does not go with init or relay"
                .into(),
        ));
    }
    match &cli.command {
        Command::Init(a) => members::init(&ctx, a),
        Command::Device => members::device(&ctx),
        Command::Book => members::book(&ctx),
        Command::Members { change } => members::members(&ctx, change.as_ref()),
        Command::Add(a) => commands::add(&ctx, a),
        Command::Set { id, changes } => commands::set(&ctx, id, changes),
        Command::Rm { id } => commands::rm(&ctx, id),
        Command::Restore { id } => commands::restore(&ctx, id),
        Command::Show { id } => commands::show(&ctx, id),
        Command::List {
            search,
            deleted,
            needs_sync,
        } => commands::list(&ctx, search.as_deref(), *deleted, needs_sync.as_deref()),
        Command::History { id, path } => commands::history(&ctx, id, path.as_deref()),
        Command::Log(a) => commands::log(&ctx, a),
        Command::Op { id } => commands::op(&ctx, id),
        Command::Summary { out: None } => commands::summary(&ctx),
        Command::Summary { out: Some(out) } => sync::summary_out(&ctx, out),
        Command::Status => commands::status(&ctx),
        Command::Conflicts => commands::conflicts(&ctx),
        Command::Resolve(a) => commands::resolve(&ctx, a),
        Command::Verify => commands::verify(&ctx),
        Command::Rebuild => commands::rebuild(&ctx),
        Command::Repair => commands::repair(&ctx),
        Command::Compact => commands::compact(&ctx),
        Command::Stats => commands::stats(&ctx),
        Command::Export(a) => sync::export(&ctx, a),
        Command::Import { file } => sync::import(&ctx, file),
        Command::Serve(a) => sync::serve(&ctx, a),
        Command::Relay(c) => relay::run(&ctx, c),
        Command::Sync { addr, timeout } => sync::sync(&ctx, addr.as_deref(), *timeout),
        Command::Pair { device, addr } => sync::pair(&ctx, device.as_deref(), addr.as_deref()),
        Command::Demo => demo::run(),
        Command::Vcard(VcardCommand::Import { file, bulk }) => {
            commands::vcard_import(&ctx, file, *bulk)
        }
        Command::Vcard(VcardCommand::Export { out, version, ids }) => {
            commands::vcard_export(&ctx, out.as_deref(), version, ids)
        }
    }
}

/// A clap usage error as one line: its message, clap's tip if any, and the usage line.
fn usage_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim);
    let message: Vec<&str> = lines.by_ref().take_while(|l| !l.is_empty()).collect();
    let message = message.join(" ");
    let mut out = message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned();
    for line in lines {
        if let Some(tip) = line.strip_prefix("tip: ") {
            out.push_str(&format!(" ({tip})"));
        } else if let Some(usage) = line.strip_prefix("Usage: ") {
            out.push_str(&format!("; usage: {usage}; more with --help"));
        }
    }
    out
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout with exit 0; a bare `cardlog` prints help with exit 2.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("cardlog: {}", usage_error(&e));
            return ExitCode::from(2);
        }
    };
    match run(&cli) {
        Ok(()) | Err(CliError::StdoutClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cardlog: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
