//! Two replicas of one address book, a laptop and a phone, edit a contact apart and sync: both
//! edits survive, field by field. The code between the README markers is the README's "Using
//! the library" snippet (a test keeps the two equal, so the snippet always compiles and runs).
//!
//! `cargo run -p cardlog --example two_replicas`

use cardlog::{Contact, Field, Replica};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (laptop_dir, phone_dir) = (dir.path().join("laptop"), dir.path().join("phone"));
    // README: begin
    let mut laptop = Replica::create(&laptop_dir)?;
    let mut phone = Replica::create(&phone_dir)?;
    let mut ada = Contact::random()?;
    ada.set(Field::Given, "Ada");
    laptop.add_contact(&ada)?; // durable on return
    phone.apply(&laptop.ops_since(phone.summary())?)?; // the phone now has Ada too

    // Apart, each device edits a different field of the same contact.
    laptop.edit(ada.id, |c| {
        c.set(Field::Org, "Analytical Engines"); // writes only `org`
    })?;
    phone.edit(ada.id, |c| {
        c.set(Field::Family, "Lovelace");
    })?;

    // Sync is: send what the peer lacks, apply what arrives; both edits survive.
    phone.apply(&laptop.ops_since(phone.summary())?)?;
    laptop.apply(&phone.ops_since(laptop.summary())?)?;
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
