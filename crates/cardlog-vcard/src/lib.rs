//! vCard import and export for cardlog: address books from phones, mail clients and contacts
//! servers come in as contacts and go back out as `.vcf` files those programs read.
//!
//! - [`import`] reads vCard 2.1, 3.0 and 4.0 (any number of cards per file; quoted-printable,
//!   base64 and charsets as real exporters write them) with the `calcard` parser, saves one op
//!   per card, and reports every card: created, updated, unchanged, or rejected with its line
//!   and reason. A broken card never stops the rest of the file.
//! - Every property is kept. Those with a field or item of their own map to it; the rest (X-
//!   properties, Apple's `itemN.X-ABLabel`, photos, keys, geo…) are kept whole as custom fields
//!   named after the property, so [`export`] writes them back.
//! - Re-importing does not duplicate: a card's UID determines its contact, and a card without
//!   one matches a contact with exactly its content.
//! - [`export`] writes vCard 4.0 or 3.0; import → export → import gives the same contacts.
//!
//! docs/VCARD.md has the full mapping and the custom field naming scheme.
//!
//! ```
//! use cardlog::{Field, Replica};
//! use cardlog_vcard::{export, import, Version};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let mut replica = Replica::create(&dir.path().join("cards"))?;
//! let vcf = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ada-1815\r\nN:Lovelace;Ada;;;\r\n\
//!            FN:Ada Lovelace\r\nTEL;TYPE=CELL:+44 20 7946 0000\r\n\
//!            X-SHOE-SIZE:38\r\nEND:VCARD\r\n";
//!
//! let report = import(&mut replica, vcf.as_bytes())?;
//! assert_eq!(report.created(), 1);
//! let ada = replica.contacts()?.remove(0).contact;
//! assert_eq!(ada.get(Field::Given), Some("Ada"));
//! assert_eq!(ada.phones[0].label, "cell");
//! assert_eq!(ada.custom["X-SHOE-SIZE"], "38");
//!
//! // The same file again changes nothing; the export carries everything back.
//! assert_eq!(import(&mut replica, vcf.as_bytes())?.unchanged(), 1);
//! let out = export(&replica, &[], Version::V4)?;
//! assert!(out.contains("X-SHOE-SIZE:38\r\n"));
//! assert!(out.contains("TEL;TYPE=CELL:+44 20 7946 0000\r\n"));
//! # Ok(()) }
//! ```

mod card;
mod date;
mod error;
mod export;
mod frame;
mod ids;
mod import;
mod names;
mod prop;

pub use error::{CardError, ExportError, ImportError, Warning};
pub use export::{export, to_vcard, Version};
pub use import::{import, import_with, CardReport, ImportOptions, ImportReport, Outcome};
