//! `cardlog demo`: the seed scenario on two real replicas in a temporary directory, narrated.
//! A phone and a tablet share a contact, edit it while apart (different fields, and one field
//! on both), then meet: both edits survive, the same-field edit is kept as a visible conflict,
//! and both replicas end byte-identical.

use std::sync::Arc;

use cardlog::FakeClock;
use cardlog::{Contact, Field, ItemBody, ItemKind, Options, Path, Replica, Summary};

use crate::error::CliError;
use crate::out::{out, outln};
use crate::render;

/// 2026-11-22T09:00:00Z.
const NINE_MS: u64 = 1_795_338_000_000;
const HOUR_MS: i64 = 3_600_000;

fn step(text: &str) -> Result<(), CliError> {
    outln!("\n== {text}")
}

fn carry(from: &Replica, to: &mut Replica, names: (&str, &str)) -> Result<(), CliError> {
    let summary: Summary = to.summary().clone();
    let ops = from.ops_since(&summary)?;
    let bytes: usize = ops.iter().map(|o| o.bytes().len()).sum();
    let tips = from.signatures_for(&ops)?;
    let report = to.apply(&ops, &tips)?;
    outln!(
        "   {} -> {}: {} op(s), {bytes} bytes, {} stored",
        names.0,
        names.1,
        ops.len(),
        report.stored
    )?;
    Ok(())
}

/// Runs the demo.
pub fn run() -> Result<(), CliError> {
    let tmp = tempfile::tempdir()?;
    let clock = Arc::new(FakeClock::new(NINE_MS));
    let options = || Options {
        wall: clock.clone(),
        ..Options::default()
    };
    let mut phone = Replica::create_with(
        &tmp.path().join("phone"),
        Options {
            name: Some("Ada's phone".into()),
            ..options()
        },
    )?;
    let mut tablet = Replica::join_with(&tmp.path().join("tablet"), phone.book(), options())?;
    step("Two devices, each with its own durable replica of one address book")?;
    outln!("   phone   {} (founded book {})", phone.id(), phone.book())?;
    outln!("   tablet  {}", tablet.id())?;
    phone.add_member(tablet.id(), cardlog::MemberRole::Write, "Ada's tablet")?;
    outln!("   the phone adds the tablet as a member; only members' signed ops are accepted")?;

    step("09:00  The phone adds Ada; the devices sync")?;
    let mut ada = Contact::random().map_err(|e| CliError::Failed(e.to_string()))?;
    ada.set(Field::Given, "Ada").set(Field::Family, "Lovelace");
    ada.set(Field::Note, "met at the Analytical Society");
    let number = ada
        .add_text_item(ItemKind::Phone, "mobile", "+44 20 7946 0000")
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let email = ada
        .add_text_item(ItemKind::Email, "home", "ada@old.example")
        .map_err(|e| CliError::Failed(e.to_string()))?;
    phone.add_contact(&ada)?;
    carry(&phone, &mut tablet, ("phone", "tablet"))?;

    step("10:00  Apart: the tablet changes the phone number and the note")?;
    clock.advance_ms(HOUR_MS);
    tablet.edit(ada.id, |c| {
        if let Some(p) = c.phones.iter_mut().find(|p| p.id == number) {
            p.body = ItemBody::Text("+44 20 7946 0999".into());
        }
        c.set(Field::Note, "prefers calls");
    })?;
    step("11:00  Apart: the phone changes the e-mail address and the note")?;
    clock.advance_ms(HOUR_MS);
    phone.edit(ada.id, |c| {
        if let Some(e) = c.emails.iter_mut().find(|e| e.id == email) {
            e.body = ItemBody::Text("ada@new.example".into());
        }
        c.set(Field::Note, "prefers e-mail");
    })?;

    step("12:00  They meet: each sends only the ops the other lacks")?;
    clock.advance_ms(HOUR_MS);
    carry(&phone, &mut tablet, ("phone", "tablet"))?;
    carry(&tablet, &mut phone, ("tablet", "phone"))?;

    step("Both edits of different fields survive; the note edited on both is a visible conflict")?;
    let view = tablet
        .contact(&ada.id)?
        .ok_or_else(|| CliError::Failed("the contact vanished".into()))?;
    out!(
        "{}",
        render::contact_text(
            &view,
            &render::Names::of(&tablet),
            &render::Marks::of_conflicts(&tablet, &view)?
        )
    )?;

    let identical = phone.state_bytes()? == tablet.state_bytes()?;
    outln!(
        "\n   phone and tablet states byte-identical: {}",
        if identical { "yes" } else { "NO" }
    )?;
    if !identical {
        return Err(CliError::Failed("the replicas did not converge".into()));
    }

    step("History of the note and the phone number (* = current head)")?;
    for path in [
        Path::Field(Field::Note),
        Path::Item(ItemKind::Phone, number),
    ] {
        outln!("   {path}")?;
        for v in phone.history(&ada.id, &path)? {
            let who = if v.author == phone.id() {
                "phone "
            } else {
                "tablet"
            };
            outln!(
                "     {} {}  {who}  op {}  {}",
                if v.head { "*" } else { " " },
                render::time(v.hlc),
                render::short(&v.op),
                render::value_text(v.value.as_ref())
            )?;
        }
    }

    step("Settling the conflict on the tablet keeps the phone's note everywhere")?;
    tablet.resolve(
        ada.id,
        Path::Field(Field::Note),
        Some(cardlog::Value::Text("prefers e-mail".into())),
    )?;
    carry(&tablet, &mut phone, ("tablet", "phone"))?;
    let settled = phone
        .contact(&ada.id)?
        .ok_or_else(|| CliError::Failed("the contact vanished".into()))?;
    outln!(
        "   note: {:?}, conflicts left: {}",
        settled.contact.get(Field::Note).unwrap_or_default(),
        settled.conflicts.len()
    )?;
    for r in [&phone, &tablet] {
        let report = r.verify()?;
        if !report.is_ok() {
            return Err(CliError::Corrupt(format!("verify: {:?}", report.problems)));
        }
    }
    outln!("   both replicas verify: every op re-hashed, chains intact, state matches the log")?;
    Ok(())
}
