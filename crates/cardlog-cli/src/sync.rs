//! The sync commands: `export` and `import` carry ops in bundle files, `heads --out` writes the
//! heads file an `export --since` needs, `serve` and `sync` run sessions over TCP. The protocol,
//! verification and fork handling are the library's (docs/SYNC.md); this module reads and
//! writes the files, maps failures to exit codes and prints what happened.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cardlog::sync_layer::bundle;
use cardlog::sync_layer::transport::{self, Host, OneBook, ServeOptions, Shared};
use cardlog::sync_layer::wire::message::limits::MESSAGE_BYTES_MAX;
use cardlog::sync_layer::Quota;
use cardlog::{DeviceId, Replica, Summary, SyncError, SyncReport};
use serde_json::json;

use crate::args::{ExportArgs, ServeArgs};
use crate::commands::{invalid, Ctx, Res};
use crate::error::{CliError, SyncSource};
use crate::out::outln;
use crate::render;

/// Writes `bytes` to `path` so that `path` only ever holds the old content or all of the new:
/// a temporary file in the same directory, written and flushed to disk, is renamed over it.
/// A killed write leaves at most a hidden `.NAME.*.tmp` file beside it.
fn write_atomically(path: &FsPath, bytes: &[u8]) -> Res {
    let fail =
        |e: std::io::Error| CliError::Failed(format!("cannot write {}: {e}", path.display()));
    let name = path
        .file_name()
        .ok_or_else(|| invalid(format!("{} does not name a file", path.display())))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => FsPath::new("."),
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // Like any file the user creates (the umask applies), not the owner-only mode of a
    // temporary file: a bundle in a shared folder is meant to be read by someone else.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    // The rename is durable once the directory is; where a directory cannot be opened as a
    // file (Windows), the rename is still atomic.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a bundle or heads file (`-`: standard input), refusing one larger than any message
/// can be before reading all of it.
fn read_file(path: &FsPath) -> Result<Vec<u8>, CliError> {
    let limit = MESSAGE_BYTES_MAX as u64;
    let mut bytes = Vec::new();
    let read = if path == FsPath::new("-") {
        std::io::stdin().take(limit + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            CliError::NotFound(format!("cannot read {}: {e}", path.display()))
        }
        _ => CliError::Failed(format!("cannot read {}: {e}", path.display())),
    })?;
    if bytes.len() as u64 > limit {
        return Err(invalid(format!(
            "{} is larger than a cardlog file can be ({limit} bytes)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// A summary file (a heads file in the CLI's messages): who wrote it and what it held.
fn read_summary_file(path: &FsPath) -> Result<(DeviceId, Summary), CliError> {
    let bytes = read_file(path)?;
    bundle::read_summary_file(&bytes).map_err(|e| {
        CliError::from_sync(
            e.widen(),
            SyncSource::File,
            &format!("{} is not a usable heads file", path.display()),
        )
    })
}

/// `cardlog summary --out FILE` (alias `heads`).
pub fn summary_out(ctx: &Ctx, out: &FsPath) -> Res {
    let r = ctx.open()?;
    let bytes = r.summary_file();
    write_atomically(out, &bytes)?;
    let authors = r.summary().len();
    if ctx.json {
        return ctx.print_json(&json!({
            "out": out,
            "replica": r.id().to_string(),
            "authors": authors,
            "bytes": bytes.len(),
        }));
    }
    outln!(
        "wrote the heads of {authors} device(s) to {} ({} bytes); the other replica runs \
         `cardlog export --since {} --out BUNDLE`",
        out.display(),
        bytes.len(),
        out.display()
    )
}

/// `cardlog export`.
pub fn export(ctx: &Ctx, a: &ExportArgs) -> Res {
    let since = a.since.as_deref().map(read_summary_file).transpose()?;
    let mut r = ctx.open()?;
    let exported = r
        .export_bundle_counted(since.as_ref().map(|(_, summary)| summary))
        .map_err(|e| CliError::from_sync(e, SyncSource::Local, "cannot export"))?;
    if let Some((peer, summary)) = &since {
        // The heads file is the peer's own word on what it holds: "needs sync" uses it.
        r.record_summary(*peer, summary)?;
    }
    // What the bundle holds, as built (not the summaries' difference: a removed device's
    // covered ops go, tails no signature covers are left out).
    let (bytes, ops, authors) = (exported.bytes, exported.ops, exported.authors);
    write_atomically(&a.out, &bytes)?;
    let peer = since.as_ref().map(|(peer, _)| *peer);
    if ctx.json {
        return ctx.print_json(&json!({
            "out": a.out,
            "replica": r.id().to_string(),
            "since": peer.map(|p| p.to_string()),
            "ops": ops,
            "authors": authors,
            "bytes": bytes.len(),
        }));
    }
    let whom = match peer {
        Some(p) => format!(" (what device {p} lacks)"),
        None => " (every op)".to_owned(),
    };
    outln!(
        "exported {ops} op(s) by {authors} device(s){whom} to {}: {} bytes",
        a.out.display(),
        bytes.len()
    )
}

/// `cardlog import FILE`.
pub fn import(ctx: &Ctx, file: &FsPath) -> Res {
    let bytes = read_file(file)?;
    let mut r = ctx.open()?;
    let bar = crate::commands::show_sync_progress(ctx, &mut r, "importing");
    let imported = r.import_bundle(&bytes);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let imported = imported.map_err(|e| {
        match CliError::from_sync(
            e,
            SyncSource::File,
            &format!("cannot import {}", file.display()),
        ) {
            CliError::Invalid(text) => CliError::Invalid(format!("{text}; no op was imported")),
            other => other,
        }
    })?;
    let received = &imported.received;
    let applied = &received.applied;
    if ctx.json {
        return ctx.print_json(&render::imported_json(file, &imported));
    }
    outln!(
        "imported {} from device {} (written {}): {} op(s), {} stored, {} duplicate(s), {} \
         missing a dependency",
        file.display(),
        imported.from,
        render::time_ms(imported.created_ms),
        received.ops,
        applied.stored,
        applied.duplicates,
        applied.missing
    )?;
    for why in &applied.refused {
        outln!("REFUSED    {why}")?;
    }
    print_void(applied.void)?;
    if let Some(t) = &received.taken_back {
        outln!("{}", render::taken_back_text(t))?;
    }
    if applied.missing > 0 {
        outln!(
            "note       {} op(s) were not stored: they build on ops this store lacks; import a \
             bundle exported without --since, or with this store's heads file",
            applied.missing
        )?;
    }
    print_forks(&received.forks, "in the bundle")
}

/// The void ops kept (a removed device's, after its cutoff; docs/SEMANTICS.md).
fn print_void(void: usize) -> Res {
    if void > 0 {
        outln!(
            "void       {void} op(s) of removed devices kept without effect: other devices' \
             edits build on them"
        )?;
    }
    Ok(())
}

fn print_forks(forks: &[cardlog::Fork], theirs: &str) -> Res {
    for f in forks {
        outln!("{}", render::fork_text(f, theirs))?;
    }
    if !forks.is_empty() {
        outln!("{}", render::FORK_HINT)?;
    }
    Ok(())
}

fn received_ops(report: &SyncReport) -> usize {
    report.stored + report.duplicates + report.missing
}

fn peer_name(report: &SyncReport) -> String {
    report
        .peer
        .map_or_else(|| "an unknown peer".to_owned(), |p| p.to_string())
}

/// `HOST:PORT` with a numeric port, checked before any connection is tried so a typo is exit
/// 2 rather than an unreachable peer.
fn check_addr(addr: &str, what: &str) -> Result<(), CliError> {
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if port_ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {addr:?} is not HOST:PORT (e.g. 127.0.0.1:7447 or laptop.local:7447)"
        )))
    }
}

/// `cardlog pair [DEVICE [ADDR]]`.
pub fn pair(ctx: &Ctx, device: Option<&str>, addr: Option<&str>) -> Res {
    let mut r = ctx.open()?;
    if let Some(device) = device {
        let id: DeviceId = device.parse().map_err(|_| {
            invalid(format!(
                "{device:?} is not a device id (32 hex digits, as `cardlog device` prints it)"
            ))
        })?;
        if id == r.id() {
            return Err(invalid(format!("{id} is this device")));
        }
        if let Some(addr) = addr {
            check_addr(addr, "address")?;
        }
        r.pair(id, addr)?;
    }
    let pairing = r.paired()?;
    if ctx.json {
        return ctx.print_json(&match &pairing {
            Some(p) => render::pairing_json(p),
            None => json!(null),
        });
    }
    match pairing {
        Some(p) => match p.addr {
            Some(addr) => outln!("paired with {} at {addr}", p.device)?,
            None => outln!("paired with {}", p.device)?,
        },
        None => outln!("not paired")?,
    }
    Ok(())
}

/// `cardlog sync [ADDR]`.
pub fn sync(ctx: &Ctx, addr: Option<&str>, timeout_secs: u64) -> Res {
    let mut r = ctx.open()?;
    let timeout = Duration::from_secs(timeout_secs);
    let addr = match addr {
        Some(addr) => {
            check_addr(addr, "address")?;
            addr.to_owned()
        }
        None => r.paired()?.and_then(|p| p.addr).ok_or_else(|| {
            invalid(
                "no address given and no paired relay address: `cardlog sync ADDR`, or \
                     `cardlog pair DEVICE ADDR` first"
                    .to_owned(),
            )
        })?,
    };
    let bar = crate::commands::show_sync_progress(ctx, &mut r, "syncing");
    let report = r.sync_tcp(&addr, timeout);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report.map_err(|e| {
        CliError::from_sync(e, SyncSource::Peer, &format!("sync with {addr} failed"))
    })?;
    let addr = addr.as_str();
    let bound_ms = r.clock().skew_bound_ms();
    let calibration = report
        .calibration
        .map(|c| (c.offset_ms, c.rtt_ms, c.offset_ms.unsigned_abs() > bound_ms));
    if ctx.json {
        let mut j = render::report_json(&report);
        if let Some(obj) = j.as_object_mut() {
            obj.insert("address".into(), json!(addr));
            obj.insert(
                "calibration".into(),
                match calibration {
                    Some((offset_ms, rtt_ms, beyond_bound)) => json!({
                        "offset_ms": offset_ms,
                        "rtt_ms": rtt_ms,
                        "beyond_bound": beyond_bound,
                    }),
                    None => json!(null),
                },
            );
        }
        return ctx.print_json(&j);
    }
    outln!("synced with {} at {addr}", peer_name(&report))?;
    if report.busy_retries > 0 {
        outln!(
            "busy       the peer was busy {} time(s); waited as it asked and tried again",
            report.busy_retries
        )?;
    }
    outln!(
        "sent       {} op(s), {} bytes",
        report.sent_ops,
        report.bytes_sent
    )?;
    outln!(
        "received   {} op(s): {} stored, {} duplicate(s), {} missing a dependency; {} bytes",
        received_ops(&report),
        report.stored,
        report.duplicates,
        report.missing,
        report.bytes_received
    )?;
    outln!("summaries  {} bytes both ways", report.summary_bytes)?;
    for why in &report.refused {
        outln!("REFUSED    {why}")?;
    }
    print_void(report.void)?;
    if let Some(t) = &report.taken_back {
        outln!("{}", render::taken_back_text(t))?;
    }
    if report.restored {
        outln!("{}", render::RESTORED_TEXT)?;
    }
    for device in &report.settled {
        outln!(
            "settled    device {device} gave up the branch of its history held here (it was \
             restored from a backup): dropped, and the history it kept taken"
        )?;
    }
    if calibration.is_none() {
        outln!(
            "clock      not calibrated: the peer is not a relay of this book (the time \
             reference), as far as this device knows"
        )?;
    }
    if let Some((offset_ms, rtt_ms, beyond)) = calibration {
        outln!(
            "clock      calibrated to the relay's: offset {offset_ms:+} ms, round trip {rtt_ms} ms"
        )?;
        if beyond {
            outln!(
                "warning    this device's clock is {} s off the relay's (more than the {} s \
                 bound): set it right; edits are stamped with the corrected time",
                offset_ms.unsigned_abs() / 1000,
                bound_ms / 1000
            )?;
        }
    }
    outln!(
        "converged  {}",
        if report.converged {
            "yes: both replicas hold the same ops"
        } else if report.restored {
            "no: this store was restored from a backup; sync again to take back what it lost"
        } else if report.forks.is_empty() {
            "no: a side saved during the session; sync again"
        } else {
            "no: the replicas' histories fork"
        }
    )?;
    print_forks(&report.forks, "at the peer")
}

/// One finished session of `serve`, as one line.
fn session_line(
    n: u64,
    addr: SocketAddr,
    result: &Result<SyncReport, SyncError>,
    json: bool,
) -> String {
    match (result, json) {
        (Ok(report), true) => {
            let mut j = render::report_json(report);
            if let Some(obj) = j.as_object_mut() {
                obj.insert("session".into(), json!(n));
                obj.insert("address".into(), json!(addr.to_string()));
                obj.insert("ok".into(), json!(true));
            }
            j.to_string()
        }
        (Err(e), true) => json!({
            "session": n,
            "address": addr.to_string(),
            "ok": false,
            "error": e.to_string(),
        })
        .to_string(),
        (Ok(report), false) => {
            let mut line = format!(
                "session {n} from {addr}: peer {}, sent {} op(s), received {} op(s) ({} \
                 stored), {} bytes out, {} bytes in, {}",
                peer_name(report),
                report.sent_ops,
                received_ops(report),
                report.stored,
                report.bytes_sent,
                report.bytes_received,
                if report.converged {
                    "converged"
                } else {
                    "not converged"
                }
            );
            for f in &report.forks {
                line.push_str(&format!(
                    "; FORK device {} seq {}: op {} here, op {} at the peer",
                    f.author, f.seq, f.ours, f.theirs
                ));
            }
            line
        }
        (Err(e), false) => format!("session {n} from {addr} failed: {e}"),
    }
}

/// `cardlog serve`.
pub fn serve(ctx: &Ctx, a: &ServeArgs) -> Res {
    check_addr(&a.listen, "listen address")?;
    let r = ctx.open()?;
    let replica = r.id();
    serve_host(
        ctx,
        a,
        Arc::new(OneBook::new(Shared::new(r))),
        |local| json!({"listening": local.to_string(), "replica": replica.to_string()}),
    )
}

/// Serves `host` as `a` asks (`cardlog serve`, `cardlog relay serve`): the bound address
/// first (`first_json` its JSON line), then one line per session.
pub fn serve_host<H: Host<Store = Replica>>(
    ctx: &Ctx,
    a: &ServeArgs,
    host: Arc<H>,
    first_json: impl FnOnce(SocketAddr) -> serde_json::Value,
) -> Res {
    check_addr(&a.listen, "listen address")?;
    let listener = TcpListener::bind(&a.listen).map_err(|e| {
        let text = format!("cannot listen on {}: {e}", a.listen);
        match e.kind() {
            std::io::ErrorKind::InvalidInput => CliError::Invalid(text),
            _ => CliError::Failed(text),
        }
    })?;
    let local = listener.local_addr()?;
    if ctx.json {
        outln!("{}", first_json(local))?;
    } else {
        outln!("listening on {local}")?;
    }
    std::io::stdout().flush()?;
    let finished = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let json = ctx.json;
    let options = ServeOptions {
        timeout: Duration::from_secs(a.timeout),
        session_timeout: Duration::from_secs(a.session_timeout),
        handshake_timeout: Duration::from_secs(a.handshake_timeout),
        max_handshakes: usize::try_from(a.max_handshakes).unwrap_or(usize::MAX),
        max_sessions_per_address: usize::try_from(a.max_per_address).unwrap_or(usize::MAX),
        max_sessions_per_device: usize::try_from(a.max_per_device).unwrap_or(usize::MAX),
        receive_budget: a.receive_budget_mib << 20,
        quota: Quota {
            ops: a.quota_ops,
            bytes: a.quota_mib << 20,
            new_authors: a.quota_authors,
        },
        sessions: a.sessions,
        ..ServeOptions::default()
    };
    let (finished_in, failed_in) = (Arc::clone(&finished), Arc::clone(&failed));
    transport::serve_host(&listener, host, options, move |addr, result| {
        let n = finished_in.fetch_add(1, Ordering::SeqCst) + 1;
        if result.is_err() {
            failed_in.fetch_add(1, Ordering::SeqCst);
        }
        // A reader that went away must not stop the server: the session already happened.
        let _ = outln!("{}", session_line(n, addr, &result, json));
        let _ = std::io::stdout().flush();
    })
    .map_err(|e| CliError::from_sync(e, SyncSource::Local, "serving stopped"))?;
    let (finished, failed) = (
        finished.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst),
    );
    if failed > 0 {
        return Err(CliError::Failed(format!(
            "{failed} of {finished} session(s) failed (listed on stdout)"
        )));
    }
    Ok(())
}
