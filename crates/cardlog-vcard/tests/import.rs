//! Import and export behaviour on hand-written cards: broken cards are rejected one by one with
//! their line while the rest of the file imports; re-import updates through the UID and saves
//! nothing when unchanged; two devices importing the same file converge; values set in cardlog
//! (odd custom names, labels, birthdays) survive export and import.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used
)]

use cardlog::{Contact, Field, ItemKind, PostalAddress, Replica};
use cardlog_vcard::{export, import, to_vcard, CardError, ExportError, Outcome, Version, Warning};

fn replica(dir: &tempfile::TempDir, name: &str) -> Replica {
    Replica::create(&dir.path().join(name)).unwrap()
}

fn only(r: &Replica) -> Contact {
    let mut all = r.contacts().unwrap();
    assert_eq!(all.len(), 1);
    all.remove(0).contact
}

#[test]
fn malformed_cards_are_rejected_one_by_one_and_the_rest_imports() {
    let mut input = Vec::new();
    input.extend_from_slice(
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Good One\r\nN:One;Good;;;\r\nEND:VCARD\r\n",
    );
    // Line 6: no END before the next BEGIN (line 9).
    input.extend_from_slice(b"BEGIN:VCARD\r\nVERSION:3.0\r\nN:Lost;Half;;;\r\n");
    input.extend_from_slice(b"BEGIN:VCARD\r\nVERSION:3.0\r\nN:Two;Good;;;\r\nEND:VCARD\r\n");
    // Line 13: 8-bit text without a charset; line 17: claims UTF-8 but is not.
    input.extend_from_slice(b"BEGIN:VCARD\r\nVERSION:2.1\r\nN:M\xfcller;Hans\r\nEND:VCARD\r\n");
    input.extend_from_slice(
        b"BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=UTF-8:M\xfcller;Eva\r\nEND:VCARD\r\n",
    );
    // Line 21: the same in Latin-1 with its charset is fine.
    input.extend_from_slice(
        b"BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=ISO-8859-1:M\xfcller;Jo\r\nEND:VCARD\r\n",
    );
    // Line 25: quoted-printable in UTF-8 with a stray byte: imported, with a warning.
    input.extend_from_slice(b"BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Gr=C3=BC=C3;Anna\r\nEND:VCARD\r\n");
    // Line 29: cut off in the middle of a line.
    input.extend_from_slice(b"BEGIN:VCARD\r\nVERSION:3.0\r\nN:Trunc;Ca");

    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(&dir, "r");
    let report = import(&mut r, &input).unwrap();
    let rejected: Vec<(usize, CardError)> =
        report.rejected().map(|(l, e)| (l, e.clone())).collect();
    assert_eq!(
        rejected,
        vec![
            (6, CardError::MissingEnd { next: 9 }),
            (
                13,
                CardError::NotUtf8 {
                    line: 15,
                    charset: None
                }
            ),
            (
                17,
                CardError::NotUtf8 {
                    line: 19,
                    charset: Some("UTF-8".into())
                }
            ),
            (29, CardError::Truncated),
        ]
    );
    assert_eq!(report.cards.len(), 8);
    assert_eq!(report.created(), 4);
    assert_eq!(
        report.warnings,
        vec![Warning::InvalidBytes {
            line: 27,
            property: "N".into()
        }]
    );
    let mut families: Vec<String> = r
        .contacts()
        .unwrap()
        .into_iter()
        .map(|v| v.contact.get(Field::Family).unwrap().to_owned())
        .collect();
    families.sort();
    assert_eq!(families, ["Grü\u{fffd}", "Müller", "One", "Two"]);
    // The messages say what to fix.
    assert_eq!(
        CardError::NotUtf8 {
            line: 15,
            charset: None
        }
        .to_string(),
        "line 15 is not UTF-8 and no CHARSET parameter says what it is"
    );
}

#[test]
fn quoted_printable_and_charsets_as_exporters_write_them() {
    let input = "BEGIN:VCARD\r\nVERSION:2.1\r\n\
        N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:=C3=A9=D0=B3=D0=BE=D1=80;Zg=\r\n\
        =C3=B3rski;;;\r\n\
        NOTE;ENCODING=QUOTED-PRINTABLE:Reid=92s place=0D=0A364 3rd St.\r\n\
        TEL;CELL;VOICE:+49123456789\r\n\
        END:VCARD\r\n";
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(&dir, "r");
    let report = import(&mut r, input.as_bytes()).unwrap();
    assert_eq!(report.created(), 1);
    let c = only(&r);
    assert_eq!(c.get(Field::Family), Some("éгор"));
    assert_eq!(c.get(Field::Given), Some("Zgórski"));
    // Quoted-printable without a charset is read as Windows-1252, as Outlook writes it.
    assert_eq!(c.get(Field::Note), Some("Reid’s place\r\n364 3rd St."));
    assert_eq!(c.phones[0].label, "cell,voice");
}

const CARD: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:example:42\r\nFN:Ada Lovelace\r\n\
    N:Lovelace;Ada;;;\r\nTEL;TYPE=cell:+44 1\r\nTEL;TYPE=work:+44 2\r\n\
    EMAIL:ada@example.org\r\nCATEGORIES:friends,math\r\nX-SHOE-SIZE:38\r\nEND:VCARD\r\n";

#[test]
fn reimport_updates_by_uid_and_saves_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(&dir, "r");
    assert_eq!(import(&mut r, CARD.as_bytes()).unwrap().created(), 1);
    let before = only(&r);
    let ops = r.op_count();

    // Unchanged: nothing saved.
    let again = import(&mut r, CARD.as_bytes()).unwrap();
    assert_eq!(again.cards[0].outcome, Outcome::Unchanged(before.id));
    assert_eq!(r.op_count(), ops);

    // The work phone changed and the shoe size went: one op, the cell phone's item untouched.
    let edited = CARD
        .replace("+44 2", "+44 3")
        .replace("X-SHOE-SIZE:38\r\n", "");
    let report = import(&mut r, edited.as_bytes()).unwrap();
    assert_eq!(report.cards[0].outcome, Outcome::Updated(before.id));
    assert_eq!(r.op_count(), ops + 1);
    let after = only(&r);
    assert_eq!(after.phones[0], before.phones[0]);
    assert_eq!(after.phones[1].id, before.phones[1].id);
    assert_eq!(after.phones[1].body.to_string(), "+44 3");
    assert!(!after.custom.contains_key("X-SHOE-SIZE"));
    let history = r.contact_history(&before.id).unwrap();
    let written: Vec<String> = history
        .iter()
        .filter(|(_, versions)| versions.len() > 1)
        .map(|(path, _)| path.to_string())
        .collect();
    assert_eq!(
        written,
        vec![
            "exists".to_owned(),
            format!("phone/{}", before.phones[1].id),
            "custom/X-SHOE-SIZE".to_owned()
        ]
    );

    // Deleted here: the card is skipped, with a warning, and the contact stays deleted.
    r.delete(before.id).unwrap();
    let report = import(&mut r, CARD.as_bytes()).unwrap();
    assert_eq!(report.cards[0].outcome, Outcome::Skipped(before.id));
    assert_eq!(
        report.warnings,
        vec![Warning::Deleted {
            line: 1,
            contact: before.id
        }]
    );
    assert!(r.contacts().unwrap().is_empty());
}

#[test]
fn cards_without_uid_match_on_exact_content() {
    let card =
        "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Doe;Jane;;;\r\nEMAIL:jane@example.org\r\nEND:VCARD\r\n";
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(&dir, "r");
    assert_eq!(import(&mut r, card.as_bytes()).unwrap().created(), 1);
    assert_eq!(import(&mut r, card.as_bytes()).unwrap().unchanged(), 1);
    // Any difference is another contact: without a UID nothing says it is the same person.
    let other = card.replace("jane@", "j.doe@");
    assert_eq!(import(&mut r, other.as_bytes()).unwrap().created(), 1);
    assert_eq!(r.contacts().unwrap().len(), 2);
    // The export gives each a UID (its id), so its own export never duplicates.
    let out = export(&r, &[], Version::V4).unwrap();
    assert_eq!(out.matches("UID:urn:uuid:").count(), 2);
    assert_eq!(import(&mut r, out.as_bytes()).unwrap().unchanged(), 2);
}

#[test]
fn two_devices_importing_one_file_converge_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut phone = replica(&dir, "phone");
    let mut laptop = Replica::join(&dir.path().join("laptop"), phone.book()).unwrap();
    phone
        .add_member(laptop.id(), cardlog::MemberRole::Write, "laptop")
        .unwrap();
    laptop.pull_from(&phone).unwrap();
    import(&mut phone, CARD.as_bytes()).unwrap();
    import(&mut laptop, CARD.as_bytes()).unwrap();
    phone.pull_from(&laptop).unwrap();
    laptop.pull_from(&phone).unwrap();
    assert_eq!(phone.state_bytes().unwrap(), laptop.state_bytes().unwrap());
    let c = only(&phone);
    assert_eq!(c.phones.len(), 2);
    assert!(phone.conflicts().unwrap().is_empty());
}

fn without_item_ids(mut c: Contact) -> Contact {
    for kind in ItemKind::ALL {
        for item in c.items_mut(kind) {
            item.id = cardlog::ItemId([0; 16]);
        }
    }
    c
}

#[test]
fn values_set_in_cardlog_survive_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(&dir, "r");
    let mut c = Contact::random().unwrap();
    c.set(Field::Given, "Ada")
        .set(Field::Birthday, "1815-12-10")
        .set(Field::Anniversary, "circa 1835")
        .set(Field::Note, "line one\nline two; with, punctuation");
    c.add_text_item(ItemKind::Phone, "Dr. Who's", "+44 1")
        .unwrap();
    c.add_text_item(ItemKind::Email, "work", "ada@example.org")
        .unwrap();
    c.add_address(
        "home",
        PostalAddress {
            street: "12 St. James's Square, flat 3".into(),
            locality: "London".into(),
            country: "UK".into(),
            ..PostalAddress::default()
        },
    )
    .unwrap();
    c.tags.insert("a, tag; with punctuation".into());
    c.custom.insert("Shoe size".into(), "38, wide".into());
    c.custom.insert("X-SHOE-SIZE".into(), "38".into());
    r.add_contact(&c).unwrap();

    let v4 = to_vcard(&c, Version::V4);
    assert!(v4.contains("BDAY:18151210\r\n"), "{v4}");
    assert!(v4.contains("ANNIVERSARY;VALUE=TEXT:circa 1835\r\n"), "{v4}");
    assert!(
        v4.contains("TEL;X-CARDLOG-LABEL=\"Dr. Who's\":+44 1\r\n"),
        "{v4}"
    );
    assert!(
        v4.contains("X-CARDLOG-CUSTOM;X-NAME=\"Shoe size\":38\\, wide\r\n"),
        "{v4}"
    );
    assert!(v4.contains("EMAIL;TYPE=WORK:ada@example.org\r\n"), "{v4}");
    for version in [Version::V4, Version::V3] {
        let mut other = replica(&dir, &format!("{version:?}"));
        let out = export(&r, &[c.id], version).unwrap();
        import(&mut other, out.as_bytes()).unwrap();
        // Item ids are not carried in vCards: items made in cardlog come back with ids of
        // their own.
        assert_eq!(
            without_item_ids(only(&other)),
            without_item_ids(only(&r)),
            "{version:?}:\n{out}"
        );
    }
}

#[test]
fn export_of_selected_contacts_refuses_unknown_and_deleted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(&dir, "r");
    import(&mut r, CARD.as_bytes()).unwrap();
    let id = only(&r).id;
    let out = export(&r, &[id], Version::V3).unwrap();
    assert!(out.starts_with("BEGIN:VCARD\r\nVERSION:3.0\r\n"));
    assert!(out.contains("UID:urn:example:42\r\n"));
    let unknown = cardlog::ContactId([7; 16]);
    assert!(matches!(
        export(&r, &[unknown], Version::V4),
        Err(ExportError::NotFound(u)) if u == unknown
    ));
    r.delete(id).unwrap();
    assert!(matches!(
        export(&r, &[id], Version::V4),
        Err(ExportError::Deleted(d)) if d == id
    ));
    assert_eq!(export(&r, &[], Version::V4).unwrap(), "");
}

#[test]
fn a_formatted_name_is_a_field_that_survives_export_and_shows_as_the_display_name() {
    let card =
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:0b0b0b0b-0b0b-0b0b-0b0b-0b0b0b0b0b0b\r\n\
                FN:Countess of Lovelace\r\nN:Lovelace;Ada;;;\r\nEND:VCARD\r\n";
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(&dir, "r");
    assert_eq!(import(&mut r, card.as_bytes()).unwrap().created(), 1);
    let c = only(&r);
    assert_eq!(c.get(Field::FormattedName), Some("Countess of Lovelace"));
    assert!(
        c.custom.is_empty(),
        "FN is a field now, not a custom one: {:?}",
        c.custom
    );
    assert_eq!(c.display_name(), "Countess of Lovelace");
    assert_eq!(c.built_name(), "Ada Lovelace");
    // Exported once as FN, and importing the export changes nothing.
    let out = export(&r, &[], Version::V4).unwrap();
    assert_eq!(out.matches("FN:").count(), 1, "{out}");
    assert!(out.contains("FN:Countess of Lovelace"));
    assert_eq!(import(&mut r, out.as_bytes()).unwrap().unchanged(), 1);

    // An FN that is just the name parts is no field: the card round-trips without one.
    let plain =
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Grace Hopper\r\nN:Hopper;Grace;;;\r\nEND:VCARD\r\n";
    let mut r2 = replica(&dir, "r2");
    import(&mut r2, plain.as_bytes()).unwrap();
    let c = only(&r2);
    assert_eq!(c.get(Field::FormattedName), None);
    assert_eq!(c.display_name(), "Grace Hopper");
}

#[test]
fn a_second_fn_stays_beside_the_formatted_name_and_an_fn_equal_to_the_name_round_trips() {
    let card =
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:0c0c0c0c-0c0c-0c0c-0c0c-0c0c0c0c0c0c\r\n\
                FN:Countess\r\nFN;LANGUAGE=fr:Comtesse\r\nFN:Ada the second\r\n\
                N:Lovelace;Ada;;;\r\nEND:VCARD\r\n";
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(&dir, "r");
    import(&mut r, card.as_bytes()).unwrap();
    let c = only(&r);
    assert_eq!(c.get(Field::FormattedName), Some("Countess"));
    assert!(!c.custom.contains_key("FN"), "{:?}", c.custom);
    assert_eq!(c.custom.len(), 2, "{:?}", c.custom);
    let out = export(&r, &[], Version::V4).unwrap();
    for line in [
        "FN:Countess",
        "FN;LANGUAGE=fr:Comtesse",
        "FN:Ada the second",
    ] {
        assert!(out.contains(line), "{line} missing from\n{out}");
    }
    assert_eq!(import(&mut r, out.as_bytes()).unwrap().unchanged(), 1);

    // A formatted name that says what the name parts say survives export and import.
    let id = c.id;
    r.edit(id, |c| {
        c.set(Field::FormattedName, "Ada Lovelace");
        c.custom.clear();
    })
    .unwrap();
    let out = export(&r, &[], Version::V4).unwrap();
    assert_eq!(import(&mut r, out.as_bytes()).unwrap().unchanged(), 1);
    assert_eq!(only(&r).get(Field::FormattedName), Some("Ada Lovelace"));
}
