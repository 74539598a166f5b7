//! A UI-style loop that keeps a contact list on screen up to date from a subscription: it
//! re-reads only the contacts each change names, whether the change came from a local save
//! or a sync session, and after a restart it catches up from the cursor it kept.
//!
//! `cargo run -p cardlog --example contact_list_ui`

use std::collections::BTreeMap;
use std::time::Duration;

use cardlog::sync_layer::transport::channel_pair;
use cardlog::{ChangeCursor, Changes, Contact, ContactId, Field, MemberRole, Replica, Role, Since};

/// What the screen shows: each visible contact's display name, and the cursor of the last
/// change shown (an app keeps it across restarts).
#[derive(Default)]
struct Screen {
    rows: BTreeMap<ContactId, String>,
    cursor: Option<ChangeCursor>,
}

impl Screen {
    /// Re-reads the contacts a change names, and nothing else.
    fn show(&mut self, replica: &Replica, changes: &Changes) -> Result<(), cardlog::Error> {
        for change in &changes.contacts {
            self.refresh(replica, &change.contact)?;
        }
        self.cursor = Some(changes.cursor);
        println!(
            "{:?}: {} contact(s) changed; on screen: {:?}",
            changes.source,
            changes.contacts.len(),
            self.rows.values().collect::<Vec<_>>()
        );
        Ok(())
    }

    fn refresh(&mut self, replica: &Replica, id: &ContactId) -> Result<(), cardlog::Error> {
        match replica.contact(id)? {
            Some(view) if !view.deleted => self.rows.insert(*id, view.contact.display_name()),
            _ => self.rows.remove(id),
        };
        Ok(())
    }

    /// After a restart: whatever changed since the kept cursor.
    fn catch_up(&mut self, replica: &Replica) -> Result<(), cardlog::Error> {
        let cursor = self
            .cursor
            .unwrap_or_else(|| ChangeCursor::everything(replica.id()));
        match replica.changes_since(&cursor)? {
            Since::Changes(changes) => {
                for change in &changes {
                    self.refresh(replica, &change.contact)?;
                }
                println!("caught up on {} contact(s)", changes.len());
            }
            Since::Everything => {
                self.rows.clear();
                for view in replica.contacts()? {
                    self.rows
                        .insert(view.contact.id, view.contact.display_name());
                }
                println!("reloaded every contact");
            }
        }
        self.cursor = Some(replica.change_cursor()?);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let phone_dir = dir.path().join("phone");
    let mut laptop = Replica::create(&dir.path().join("laptop"))?;
    let mut phone = Replica::join(&phone_dir, laptop.book())?;
    laptop.add_member(phone.id(), MemberRole::Write, "phone")?;
    phone.pull_from(&laptop)?;

    let mut screen = Screen::default();
    let changes = phone.subscribe();

    // A local save on the phone.
    let mut ada = Contact::random()?;
    ada.set(Field::Given, "Ada").set(Field::Family, "Lovelace");
    phone.add_contact(&ada)?;
    for change in changes.try_iter() {
        screen.show(&phone, &change)?;
    }

    // The laptop adds and edits; a sync session brings both to the phone.
    let mut grace = Contact::random()?;
    grace
        .set(Field::Given, "Grace")
        .set(Field::Family, "Hopper");
    laptop.add_contact(&grace)?;
    laptop.pull_from(&phone)?;
    laptop.edit(ada.id, |c| {
        c.set(Field::Given, "Augusta Ada");
    })?;
    let (mut to_laptop, mut to_phone) = channel_pair(Duration::from_secs(10));
    std::thread::scope(|s| -> Result<(), Box<dyn std::error::Error>> {
        let served = s.spawn(|| laptop.sync_over(Role::Responder, &mut to_phone));
        phone.sync_over(Role::Initiator, &mut to_laptop)?;
        served.join().map_err(|_| "the laptop's side panicked")??;
        Ok(())
    })?;
    for change in changes.try_iter() {
        screen.show(&phone, &change)?;
    }

    // The app quits; meanwhile a sync it did not see lands; on restart it catches up.
    drop(changes);
    let kept = screen.cursor;
    laptop.delete(grace.id)?;
    phone.pull_from(&laptop)?;
    drop(phone);
    let phone = Replica::open(&phone_dir)?;
    let mut screen = Screen {
        rows: screen.rows,
        cursor: kept,
    };
    screen.catch_up(&phone)?;
    let shown: Vec<&String> = screen.rows.values().collect();
    assert_eq!(shown, ["Augusta Ada Lovelace"]);
    println!("on screen after restart: {shown:?}");
    Ok(())
}
