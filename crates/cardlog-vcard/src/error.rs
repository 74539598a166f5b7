//! What can go wrong: [`CardError`] for one card that is rejected (the rest of the file goes
//! on), [`Warning`] for what was accepted with a caveat, and [`ImportError`] / [`ExportError`]
//! for failures that stop the whole operation.

use cardlog::ContactId;

/// Why one card was rejected. The other cards of the file are imported all the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// A `BEGIN:VCARD` came before this card's `END:VCARD`: where the card really ends is a
    /// guess, so it is not imported.
    #[error("no END:VCARD before the next BEGIN:VCARD at line {next}")]
    MissingEnd {
        /// Line of the next card's `BEGIN:VCARD`.
        next: usize,
    },
    /// The file ends in the middle of a line inside this card: it was cut short.
    #[error("the file ends in the middle of a line, before END:VCARD (truncated)")]
    Truncated,
    /// A line is not UTF-8 and no charset this importer reads says what it is.
    #[error("line {line} is not UTF-8 and {}", match charset {
        Some(c) => format!("its CHARSET={c} is not one this importer reads (UTF-8, ISO-8859-1, Windows-1252)"),
        None => "no CHARSET parameter says what it is".to_owned(),
    })]
    NotUtf8 {
        /// The line.
        line: usize,
        /// The `CHARSET` parameter of the property, if it had one.
        charset: Option<String>,
    },
    /// The vCard parser did not read a card here.
    #[error("not a vCard: {0}")]
    Unreadable(String),
    /// The contact could not be saved (for instance it is larger than an op may be).
    #[error("not saved: {0}")]
    Save(#[source] cardlog::Error),
}

/// Something accepted with a caveat; listed in the import summary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Warning {
    /// The file's last card has no `END:VCARD` but its last line is complete; it was imported as
    /// it stands.
    #[error("line {line}: the file ends before this card's END:VCARD; imported as it stands")]
    NoEndAtEof {
        /// The card's `BEGIN:VCARD` line.
        line: usize,
    },
    /// Lines outside any `BEGIN:VCARD` … `END:VCARD` were skipped.
    #[error("lines {line}-{last}: text outside BEGIN:VCARD … END:VCARD was skipped")]
    OutsideCard {
        /// First such line.
        line: usize,
        /// Last such line of the run.
        last: usize,
    },
    /// A property too large for the store was left out of the contact.
    #[error("line {line}: {property} ({bytes} bytes) is larger than a stored value may be and was left out")]
    TooLarge {
        /// The property's line.
        line: usize,
        /// The property name.
        property: String,
        /// Its size as stored.
        bytes: usize,
    },
    /// A value held bytes that are invalid in its charset (or a charset this importer does not
    /// know); they were replaced by U+FFFD (�).
    #[error("line {line}: {property} has bytes that are not valid in its charset; they were replaced by U+FFFD")]
    InvalidBytes {
        /// The property's line.
        line: usize,
        /// The property name.
        property: String,
    },
    /// A card's UID names a contact that is deleted here; the card was not imported into it.
    #[error("line {line}: contact {contact} (this card's UID) is deleted here; restore it and import again to update it")]
    Deleted {
        /// The card's line.
        line: usize,
        /// The deleted contact.
        contact: ContactId,
    },
}

/// Why an import stopped. Cards before the failing one are saved (and durable unless in bulk
/// mode, where a failed store refuses further writes anyway).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The replica failed (storage, or an inconsistent own chain); nothing more was imported.
    #[error("importing the card at line {line}: {source}")]
    Replica {
        /// The card being imported.
        line: usize,
        /// What failed.
        #[source]
        source: cardlog::Error,
    },
    /// Making the bulk import durable failed.
    #[error("making the import durable: {0}")]
    Flush(#[source] cardlog::Error),
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// No contact with this id exists here.
    #[error("no contact {0}")]
    NotFound(ContactId),
    /// The contact is deleted; restore it to export it.
    #[error("contact {0} is deleted (restore it to export it)")]
    Deleted(ContactId),
    /// The replica failed to read.
    #[error(transparent)]
    Replica(#[from] cardlog::Error),
}
