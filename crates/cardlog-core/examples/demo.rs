//! The seed scenario, narrated, on in-memory devices: the tablet changes Foo's phone number at
//! 10:00, the offline phone changes Foo's e-mail at 11:00, the phone syncs at noon, and both
//! devices end with the new number and the new e-mail. Then a concurrent edit of one field shows
//! a visible conflict that a later edit settles.
//!
//! Run: `cargo run -p cardlog-core --example demo`

use std::error::Error;
use std::sync::Arc;

use cardlog_core::{Contact, Device, FakeClock, Field, ItemBody, ItemKind, Path};

const HOUR_MS: i64 = 3_600_000;
/// 2026-11-22T09:00:00Z.
const NINE_AM_MS: u64 = 1_795_338_000_000;

fn show(label: &str, device: &Device, id: &cardlog_core::ContactId) {
    let Some(view) = device.contact(id) else {
        println!("  {label}: (no such contact)");
        return;
    };
    let c = &view.contact;
    let phones: Vec<String> = c.phones.iter().map(|i| i.body.to_string()).collect();
    let emails: Vec<String> = c.emails.iter().map(|i| i.body.to_string()).collect();
    println!(
        "  {label}: {} | phone {} | e-mail {}{}",
        c.display_name(),
        phones.join(", "),
        emails.join(", "),
        if view.conflicts.is_empty() {
            String::new()
        } else {
            format!(" | {} conflicted field(s)", view.conflicts.len())
        }
    );
}

fn main() -> Result<(), Box<dyn Error>> {
    let tablet_clock = Arc::new(FakeClock::new(NINE_AM_MS));
    let phone_clock = Arc::new(FakeClock::new(NINE_AM_MS));
    let mut tablet = Device::random(tablet_clock.clone())?;
    let mut phone = Device::random(phone_clock.clone())?;

    println!("09:00 the tablet creates Foo Bar and both devices sync");
    let mut friend = Contact::random()?;
    friend.set(Field::Given, "Foo").set(Field::Family, "Bar");
    friend.add_text_item(ItemKind::Phone, "mobile", "+1 555 0100")?;
    friend.add_text_item(ItemKind::Email, "home", "foo@old.example")?;
    tablet.create(&friend)?;
    tablet.sync(&mut phone)?;
    show("tablet", &tablet, &friend.id);
    show("phone ", &phone, &friend.id);

    println!("10:00 the tablet changes the phone number (the phone is offline)");
    tablet_clock.advance_ms(HOUR_MS);
    phone_clock.advance_ms(HOUR_MS);
    tablet.edit(friend.id, |c| {
        if let Some(p) = c.phones.first_mut() {
            p.body = ItemBody::Text("+1 555 0199".into());
        }
    })?;
    show("tablet", &tablet, &friend.id);

    println!("11:00 the offline phone changes the e-mail (it still shows the old number)");
    tablet_clock.advance_ms(HOUR_MS);
    phone_clock.advance_ms(HOUR_MS);
    phone.edit(friend.id, |c| {
        if let Some(e) = c.emails.first_mut() {
            e.body = ItemBody::Text("foo@new.example".into());
        }
    })?;
    show("phone ", &phone, &friend.id);

    println!("12:00 the phone syncs: both edits survive on both devices");
    tablet_clock.advance_ms(HOUR_MS);
    phone_clock.advance_ms(HOUR_MS);
    phone.sync(&mut tablet)?;
    show("tablet", &tablet, &friend.id);
    show("phone ", &phone, &friend.id);
    let same = tablet.replay().state_bytes() == phone.replay().state_bytes();
    println!("  identical state bytes on both devices: {same}");

    println!("13:00 both devices change the title while apart (the phone a minute later)");
    tablet_clock.advance_ms(HOUR_MS);
    phone_clock.advance_ms(HOUR_MS + 60_000);
    tablet.edit(friend.id, |c| {
        c.set(Field::Title, "Engineer");
    })?;
    phone.edit(friend.id, |c| {
        c.set(Field::Title, "Manager");
    })?;
    tablet.sync(&mut phone)?;
    show("tablet", &tablet, &friend.id);
    for (_, conflict) in tablet.replay().conflicts() {
        let alternatives: Vec<String> = conflict
            .alternatives
            .iter()
            .map(|v| {
                v.value
                    .as_ref()
                    .map_or("(removed)".into(), |v| v.to_string())
            })
            .collect();
        println!(
            "  conflict on {}: visible {:?} (later edit), kept alternative(s) {:?}",
            conflict.path,
            conflict.winner.value.as_ref().map(|v| v.to_string()),
            alternatives
        );
    }

    println!("14:00 the tablet settles the title; the conflict clears everywhere");
    tablet_clock.advance_ms(HOUR_MS);
    tablet.edit(friend.id, |c| {
        c.set(Field::Title, "Engineering Manager");
    })?;
    tablet.sync(&mut phone)?;
    show("phone ", &phone, &friend.id);
    let history = phone
        .replay()
        .history(&friend.id, &Path::Field(Field::Title));
    println!("  title history on the phone ({} values):", history.len());
    for v in history {
        println!(
            "    {} by {} at {} op {}",
            v.value.map_or("(removed)".into(), |v| v.to_string()),
            v.author.to_string().get(..8).unwrap_or_default(),
            v.hlc,
            v.op.short()
        );
    }
    Ok(())
}
