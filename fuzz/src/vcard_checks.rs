//! The check behind the `vcard_import` fuzz target, written once: arbitrary bytes imported as a
//! `.vcf` file into a replica. cardlog-vcard has no parse function that works without a store
//! (framing and card reading are crate-private), so the check drives its public entry point,
//! [`cardlog_vcard::import`], into a replica the caller provides. The fuzz target gives it a
//! fresh replica in a scratch directory; the stable test
//! crates/cardlog-vcard/tests/fuzz_corpus.rs includes this very file with `#[path]`, so it must
//! only depend on `std`, `cardlog` and `cardlog_vcard`.

use cardlog::Replica;
use cardlog_vcard::{import, Outcome};

/// What [`check_vcard_import`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VcardCheck {
    /// Cards the import reported.
    pub cards: usize,
    /// Cards that created a contact.
    pub created: usize,
    /// Cards that updated one.
    pub updated: usize,
    /// Cards whose contact was already there as they are.
    pub unchanged: usize,
    /// Cards rejected.
    pub rejected: usize,
    /// Warnings.
    pub warnings: usize,
}

impl VcardCheck {
    /// Whether the file imported cleanly: at least one card, none rejected.
    pub fn accepted(&self) -> bool {
        self.cards > 0 && self.rejected == 0
    }
}

/// The `vcard_import` target: imports `data` into `replica`, which must be healthy (so any
/// `Err` is a failure of the importer: only a failing replica may stop an import). Whatever the
/// input, nothing panics, and:
///
/// - every card is reported once, in file order (lines increasing, within the file), as
///   created, updated, unchanged, skipped or rejected;
/// - every created, updated or unchanged card names a visible contact, and the visible
///   contacts grew by exactly the cards created;
/// - the replica's store verifies clean afterwards;
/// - importing the same bytes again creates no contact (re-importing does not duplicate).
pub fn check_vcard_import(replica: &mut Replica, data: &[u8]) -> VcardCheck {
    let before = visible(replica);
    let report = match import(replica, data) {
        Ok(report) => report,
        Err(e) => panic!("the import failed on a healthy replica: {e}"),
    };
    let out = VcardCheck {
        cards: report.cards.len(),
        created: report.created(),
        updated: report.updated(),
        unchanged: report.unchanged(),
        rejected: report.rejected().count(),
        warnings: report.warnings.len(),
    };
    assert_eq!(
        out.created + out.updated + out.unchanged + report.skipped() + out.rejected,
        out.cards,
        "cards reported with an outcome that is none of the five"
    );
    let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
    let mut previous = 0;
    for card in &report.cards {
        assert!(
            card.line > previous && card.line <= lines,
            "card reported at line {} (after line {previous}, in a file of {lines} lines)",
            card.line
        );
        previous = card.line;
        if let Outcome::Created(id) | Outcome::Updated(id) | Outcome::Unchanged(id) = &card.outcome
        {
            match replica.contact(id) {
                Ok(Some(view)) => assert!(
                    !view.deleted,
                    "card at line {} names deleted contact {id}",
                    card.line
                ),
                Ok(None) => panic!(
                    "card at line {} names contact {id}, which is not here",
                    card.line
                ),
                Err(e) => panic!("reading contact {id}: {e}"),
            }
        }
    }
    let after = visible(replica);
    assert_eq!(
        after,
        before + out.created,
        "the visible contacts did not grow by the cards created"
    );
    match replica.verify() {
        Ok(v) => assert!(
            v.is_ok(),
            "the store does not verify after the import: {v:?}"
        ),
        Err(e) => panic!("verifying the store: {e}"),
    }
    let again = match import(replica, data) {
        Ok(report) => report,
        Err(e) => panic!("importing the same bytes again failed: {e}"),
    };
    assert_eq!(
        again.created(),
        0,
        "importing the same bytes again created contacts: {:?}",
        again.cards
    );
    assert_eq!(
        visible(replica),
        after,
        "a re-import changed the visible contacts"
    );
    out
}

fn visible(replica: &Replica) -> usize {
    match replica.contacts() {
        Ok(contacts) => contacts.len(),
        Err(e) => panic!("listing contacts: {e}"),
    }
}

/// The seed inputs of `vcard_import`: small fixtures of crates/cardlog-vcard/tests/fixtures/
/// (the calcard crate's round-trip cards, MIT or Apache-2.0; see that folder's README.md) and
/// broken variants of them. The files in fuzz/seeds/vcard_import/ are exactly these; the stable
/// test checks that they match and rewrites them when run with `CARDLOG_WRITE_SEEDS=1`.
/// `valid-*` files import at least one card and reject none; `invalid-*` files reject a card
/// or hold none.
pub fn vcard_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let v30: &[u8] = include_bytes!("../../crates/cardlog-vcard/tests/fixtures/002.vcf");
    let v40: &[u8] = include_bytes!("../../crates/cardlog-vcard/tests/fixtures/024.vcf");
    let v21: &[u8] = include_bytes!("../../crates/cardlog-vcard/tests/fixtures/010.vcf");
    let no_end: &[u8] = include_bytes!("../../crates/cardlog-vcard/tests/fixtures/056.vcf");
    // 002.vcf without its END:VCARD line, followed by 024.vcf.
    let end = v30
        .windows(9)
        .rposition(|w| w == b"END:VCARD")
        .unwrap_or(v30.len());
    let missing_end = [v30.get(..end).unwrap_or_default(), v40].concat();
    let mut latin1 = b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:fuzz-latin1\r\nFN:Ren".to_vec();
    latin1.extend_from_slice(b"\xe9e\r\nEND:VCARD\r\n");
    vec![
        ("valid-v30-002.vcf", v30.to_vec()),
        ("valid-v40-024.vcf", v40.to_vec()),
        ("valid-v21-quoted-printable-010.vcf", v21.to_vec()),
        ("valid-no-end-at-eof-056.vcf", no_end.to_vec()),
        ("valid-two-cards.vcf", [v30, v40].concat()),
        ("invalid-missing-end.vcf", missing_end),
        (
            "invalid-truncated.vcf",
            v30.get(..v30.len() / 2).unwrap_or_default().to_vec(),
        ),
        ("invalid-not-utf8.vcf", latin1),
        ("invalid-empty.vcf", Vec::new()),
    ]
}
