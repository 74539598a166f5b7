//! Two replicas of one address book, a laptop and a phone, edit a contact apart and sync: both
//! edits survive, field by field. The code between the README markers is the README's "Using
//! the library" snippet (a test keeps the two equal, so the snippet always compiles and runs).
//!
//! `cargo run -p cardlog --example two_replicas`

use cardlog::{Contact, Field, MemberRole, Replica};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (laptop_dir, phone_dir) = (dir.path().join("laptop"), dir.path().join("phone"));
    // README: begin
    let mut laptop = Replica::create(&laptop_dir)?; // founds an address book
    let mut phone = Replica::join(&phone_dir, laptop.book())?; // a new device for it
    laptop.add_member(phone.id(), MemberRole::Write, "Ada's phone")?; // the laptop admits it
    let mut ada = Contact::random()?;
    ada.set(Field::Given, "Ada");
    laptop.add_contact(&ada)?; // durable on return
    phone.pull_from(&laptop)?; // the phone is a member now, and has Ada too

    // Apart, each device edits a different field of the same contact.
    laptop.edit(ada.id, |c| {
        c.set(Field::Org, "Analytical Engines"); // writes only `org`
    })?;
    phone.edit(ada.id, |c| {
        c.set(Field::Family, "Lovelace");
    })?;

    // Sync is: send what the peer lacks (signed), apply what arrives; both edits survive.
    phone.pull_from(&laptop)?;
    laptop.pull_from(&phone)?;
    let on_laptop = laptop.contact(&ada.id)?.ok_or("Ada is missing")?.contact;
    assert_eq!(on_laptop.get(Field::Org), Some("Analytical Engines"));
    assert_eq!(on_laptop.get(Field::Family), Some("Lovelace"));
    assert_eq!(
        on_laptop,
        phone.contact(&ada.id)?.ok_or("Ada is missing")?.contact
    );
    // README: end
    println!("both replicas hold: {}", on_laptop.display_name());
    Ok(())
}
