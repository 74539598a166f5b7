//! The address book from the command line: `init` (founding or joining one), `device`, `book`
//! and `members` (docs/CLI.md, "Address book and members").

use cardlog::{BookId, DeviceId, MemberRole, Options, Replica};
use serde_json::json;

use crate::args::{InitArgs, MembersCommand};
use crate::commands::{Ctx, Res};
use crate::error::CliError;
use crate::out::outln;
use crate::render;

/// `cardlog init [--join BOOK] [--name NAME]`.
pub fn init(ctx: &Ctx, a: &InitArgs) -> Res {
    let options = Options {
        name: a.name.clone(),
        ..ctx.options()
    };
    let r = match &a.join {
        None => Replica::create_with(&ctx.dir, options)?,
        Some(book) => {
            let book: BookId = book.parse().map_err(|e| {
                CliError::Invalid(format!("'{book}' is not an address book id: {e}"))
            })?;
            Replica::join_with(&ctx.dir, book, options)?
        }
    };
    if ctx.json {
        return ctx.print_json(&json!({
            "replica": r.id().to_string(),
            "device": r.id().to_string(),
            "book": r.book().to_string(),
            "store": ctx.dir,
        }));
    }
    match &a.join {
        None => outln!(
            "created replica {} in {}, founding address book {}",
            r.id(),
            ctx.dir.display(),
            r.book()
        )?,
        Some(_) => outln!(
            "created replica {} in {} for address book {}: an admin adds it with \
             `cardlog members add {} --name NAME`; pair it with that admin's device or the \
             book's relay (`cardlog pair DEVICE [ADDR]`), then sync",
            r.id(),
            ctx.dir.display(),
            r.book(),
            r.id()
        )?,
    }
    Ok(())
}

/// `cardlog device`.
pub fn device(ctx: &Ctx) -> Res {
    let r = ctx.open_to_read()?;
    if ctx.json {
        return ctx.print_json(&json!({ "device": r.id().to_string() }));
    }
    outln!("{}", r.id())?;
    Ok(())
}

/// `cardlog book`.
pub fn book(ctx: &Ctx) -> Res {
    let r = ctx.open_to_read()?;
    if ctx.json {
        return ctx.print_json(&json!({ "book": r.book().to_string() }));
    }
    outln!("{}", r.book())?;
    Ok(())
}

/// A member's device id: a full id, or a unique prefix of a member's.
fn member_id(r: &Replica, s: &str) -> Result<DeviceId, CliError> {
    if let Ok(id) = s.parse::<DeviceId>() {
        return Ok(id);
    }
    let found: Vec<DeviceId> = r
        .members()
        .into_iter()
        .map(|(d, _)| d)
        .filter(|d| d.to_string().starts_with(&s.to_lowercase()))
        .collect();
    match found[..] {
        [one] => Ok(one),
        [] => Err(CliError::NotFound(format!("no member {s}"))),
        _ => Err(CliError::Invalid(format!(
            "'{s}' names {} members; give more digits",
            found.len()
        ))),
    }
}

/// `cardlog members [add|remove]`.
pub fn members(ctx: &Ctx, change: Option<&MembersCommand>) -> Res {
    let mut r = ctx.open()?;
    match change {
        None => list(ctx, &r),
        Some(MembersCommand::Add { device, name, role }) => {
            let device: DeviceId = device.parse().map_err(|e| {
                CliError::Invalid(format!(
                    "'{device}' is not a device id (the full id `cardlog device` prints): {e}"
                ))
            })?;
            let role: MemberRole = role
                .parse()
                .map_err(|e: cardlog::MemberRoleParseError| CliError::Invalid(e.to_string()))?;
            let op = r.add_member(device, role, name)?;
            if ctx.json {
                return ctx
                    .print_json(&json!({"op": op.to_string(), "device": device.to_string()}));
            }
            outln!("added {device} ({name}) as a {role} member; op {op}")?;
            Ok(())
        }
        Some(MembersCommand::Remove { device }) => {
            let device = member_id(&r, device)?;
            let op = r.remove_member(device)?;
            if ctx.json {
                return ctx
                    .print_json(&json!({"op": op.to_string(), "device": device.to_string()}));
            }
            outln!("removed {device}; its later ops are refused everywhere; op {op}")?;
            Ok(())
        }
    }
}

fn list(ctx: &Ctx, r: &Replica) -> Res {
    let members = r.members();
    if ctx.json {
        let rows: Vec<_> = members
            .iter()
            .map(|(d, m)| {
                let mut row = render::to_json(m);
                if let serde_json::Value::Object(map) = &mut row {
                    map.insert("device".into(), render::to_json(d));
                    map.insert("this_device".into(), (*d == r.id()).into());
                }
                row
            })
            .collect();
        return ctx.print_json(&json!({"book": r.book().to_string(), "members": rows}));
    }
    if members.is_empty() {
        outln!(
            "no members known yet: this device joined book {} and waits for the op that admits it",
            r.book()
        )?;
        return Ok(());
    }
    for (d, m) in &members {
        let added = match m.added_by {
            None => "founder".to_owned(),
            Some(by) => format!("added by {}", &by.to_string()[..8]),
        };
        let removed = match m.removed {
            None => String::new(),
            Some(x) => format!(
                ", removed after op {} by {}",
                x.after,
                &x.by.to_string()[..8]
            ),
        };
        let me = if *d == r.id() { " (this device)" } else { "" };
        outln!(
            "{d}  {:<6} {}{me}  ({added}{removed})",
            m.role.name(),
            m.name
        )?;
    }
    Ok(())
}
