//! `cardlog relay`: a relay of many address books ([`cardlog::Relay`]) created, served and
//! inspected from the command line (docs/CLI.md, "cardlog relay").

use std::path::Path as FsPath;
use std::sync::Arc;

use cardlog::{Relay, RelayOptions};
use serde_json::json;

use crate::args::RelayCommand;
use crate::commands::{Ctx, Res};
use crate::error::CliError;
use crate::out::outln;

/// Runs one `cardlog relay` command.
pub fn run(ctx: &Ctx, command: &RelayCommand) -> Res {
    match command {
        RelayCommand::Init { dir } => init(ctx, dir),
        RelayCommand::Serve { dir, serve } => {
            let relay = open(ctx, dir)?;
            let device = relay.id();
            let books = relay.books().len();
            crate::sync::serve_host(
                ctx,
                serve,
                Arc::new(relay),
                |local| json!({"listening": local.to_string(), "relay": device.to_string(), "books": books}),
            )
        }
        RelayCommand::Status { dir } => status(ctx, dir),
    }
}

fn options(ctx: &Ctx) -> RelayOptions {
    RelayOptions {
        wall: ctx.wall.clone(),
        ..RelayOptions::default()
    }
}

fn open(ctx: &Ctx, dir: &FsPath) -> Result<Relay, CliError> {
    Relay::open(dir, options(ctx)).map_err(|e| match e {
        e @ cardlog::OpenError::Locked(_) => CliError::Failed(format!(
            "the relay at {} is in use by another process (a running `cardlog relay \
             serve`?): {e}",
            dir.display()
        )),
        other => other.into(),
    })
}

fn init(ctx: &Ctx, dir: &FsPath) -> Res {
    let relay = Relay::init(dir, options(ctx))?;
    let device = relay.id();
    if ctx.json {
        outln!(
            "{}",
            json!({"relay": device.to_string(), "dir": dir.display().to_string()})
        )?;
    } else {
        outln!(
            "created relay {device} in {}: each book's admin adds it with `cardlog members add \
             {device} --name NAME --role relay`, its devices pair with it (`cardlog pair {device} \
             ADDR`); serve it with `cardlog relay serve {} --listen ADDR`",
            dir.display(),
            dir.display()
        )?;
    }
    Ok(())
}

fn status(ctx: &Ctx, dir: &FsPath) -> Res {
    let relay = open(ctx, dir)?;
    let status = relay.status()?;
    if ctx.json {
        let text = serde_json::to_string_pretty(&status)
            .map_err(|e| CliError::Failed(format!("JSON output: {e}")))?;
        outln!("{text}")?;
        return Ok(());
    }
    outln!(
        "relay {}: {} book(s), {} bytes on disk",
        status.device,
        status.books.len(),
        status.bytes
    )?;
    for book in &status.books {
        let problem = match &book.problem {
            Some(p) => format!("  PROBLEM: {p}"),
            None => String::new(),
        };
        outln!(
            "book {}  {} op(s) by {} author(s), {} member(s), {} device(s) met, {} bytes{problem}",
            book.book,
            book.ops,
            book.authors,
            book.members,
            book.devices,
            book.bytes
        )?;
    }
    Ok(())
}
