//! Splitting a `.vcf` file into cards before calcard parses each one.
//!
//! This is the only part of the file cardlog reads itself, and it reads only line starts: a
//! card runs from a `BEGIN:VCARD` line to its `END:VCARD` line. Doing this here, rather than
//! letting calcard stream through the file, gives every card its line number (calcard reports
//! none) and isolates a broken card: calcard's stream parser, meeting a `BEGIN:VCARD` inside an
//! unterminated card, takes it as that card's end and loses the next card.
//!
//! Lines that are not UTF-8 (vCard 2.1 exporters writing 8-bit text) are decoded here with the
//! property's `CHARSET` parameter; quoted-printable and base64 values are left to calcard,
//! which decodes them with their charset.

use crate::error::{CardError, Warning};

/// One card's text, ready for calcard (UTF-8, CRLF line ends, ending with `END:VCARD`).
#[derive(Debug, Clone)]
pub(crate) struct FramedCard {
    /// Line of its `BEGIN:VCARD` (1-based).
    pub line: usize,
    /// The card's text.
    pub text: String,
    /// For each property (logical line): `GROUP.NAME` in upper case and its line, in order.
    pub properties: Vec<(String, usize)>,
    /// Lines of the properties encoded as quoted-printable.
    pub quoted_printable: Vec<usize>,
}

/// A file split into cards.
#[derive(Debug, Default)]
pub(crate) struct Framed {
    /// Every card, in file order: its text, or why it was rejected (with its line).
    pub cards: Vec<Result<FramedCard, (usize, CardError)>>,
    /// What was accepted with a caveat.
    pub warnings: Vec<Warning>,
}

struct Open {
    card: FramedCard,
    error: Option<CardError>,
    /// The first physical line of the current property, for its `CHARSET` parameter.
    head: Vec<u8>,
    /// The previous physical line ended a quoted-printable soft line break.
    qp_continues: bool,
}

impl Open {
    fn new(line: usize) -> Self {
        Self {
            card: FramedCard {
                line,
                text: String::from("BEGIN:VCARD\r\n"),
                properties: Vec::new(),
                quoted_printable: Vec::new(),
            },
            error: None,
            head: Vec::new(),
            qp_continues: false,
        }
    }

    fn finish(self) -> Result<FramedCard, (usize, CardError)> {
        match self.error {
            Some(e) => Err((self.card.line, e)),
            None => Ok(self.card),
        }
    }
}

fn is_line(raw: &[u8], what: &[u8]) -> bool {
    raw.trim_ascii().eq_ignore_ascii_case(what)
}

/// The part of a property line before its value: up to the first `:` (parameter values may be
/// quoted and hold a `:`).
fn head_of(raw: &[u8]) -> &[u8] {
    let mut quoted = false;
    for (i, b) in raw.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b':' if !quoted => return raw.get(..i).unwrap_or(raw),
            _ => {}
        }
    }
    raw
}

/// `GROUP.NAME` of a property line, upper case.
fn property_key(raw: &[u8]) -> String {
    let head = head_of(raw);
    let end = head.iter().position(|b| *b == b';').unwrap_or(head.len());
    String::from_utf8_lossy(head.get(..end).unwrap_or(head))
        .trim()
        .to_ascii_uppercase()
}

/// The value of a parameter in a property's head, e.g. `CHARSET` in
/// `N;CHARSET=ISO-8859-1:…`.
fn param(head: &[u8], name: &str) -> Option<String> {
    let head = String::from_utf8_lossy(head_of(head)).into_owned();
    head.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn is_quoted_printable(head: &[u8]) -> bool {
    let head = head_of(head);
    head.windows(16)
        .any(|w| w.eq_ignore_ascii_case(b"QUOTED-PRINTABLE"))
}

/// Windows-1252's characters for bytes 0x80–0x9F (where it differs from ISO-8859-1).
const CP1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
];

/// Decodes one physical line: UTF-8 as it is, otherwise by the property's `CHARSET`.
fn decode(raw: &[u8], head: &[u8], line: usize) -> Result<String, CardError> {
    if let Ok(s) = std::str::from_utf8(raw) {
        return Ok(s.to_owned());
    }
    let charset = param(head, "CHARSET");
    let latin1 = |b: &u8| char::from(*b);
    let cp1252 = |b: &u8| match b {
        0x80..=0x9f => CP1252_HIGH
            .get(usize::from(*b - 0x80))
            .copied()
            .unwrap_or(char::from(*b)),
        _ => char::from(*b),
    };
    match charset.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" | "l1") => {
            Ok(raw.iter().map(latin1).collect())
        }
        Some("windows-1252" | "cp1252" | "x-cp1252") => Ok(raw.iter().map(cp1252).collect()),
        _ => Err(CardError::NotUtf8 { line, charset }),
    }
}

/// Splits `input` into cards. Never fails: problems are per card or warnings.
pub(crate) fn split(input: &[u8]) -> Framed {
    let input = input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input);
    let mut out = Framed::default();
    let mut open: Option<Open> = None;
    let mut outside: Option<(usize, usize)> = None;

    for (i, raw) in input.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);

        let Some(card) = open.as_mut() else {
            if is_line(raw, b"BEGIN:VCARD") {
                if let Some((first, last)) = outside.take() {
                    out.warnings
                        .push(Warning::OutsideCard { line: first, last });
                }
                open = Some(Open::new(line));
            } else if !raw.trim_ascii().is_empty() {
                outside = Some(outside.map_or((line, line), |(first, _)| (first, line)));
            }
            continue;
        };

        let continuation =
            card.qp_continues || raw.first().is_some_and(|b| matches!(b, b' ' | b'\t'));
        if !continuation {
            if is_line(raw, b"END:VCARD") {
                if let Some(mut done) = open.take() {
                    done.card.text.push_str("END:VCARD\r\n");
                    out.cards.push(done.finish());
                }
                continue;
            }
            if is_line(raw, b"BEGIN:VCARD") {
                if let Some(mut unterminated) = open.take() {
                    unterminated.error = Some(CardError::MissingEnd { next: line });
                    out.cards.push(unterminated.finish());
                }
                open = Some(Open::new(line));
                continue;
            }
            card.head = raw.to_vec();
            if !raw.trim_ascii().is_empty() {
                card.card.properties.push((property_key(raw), line));
            }
            if is_quoted_printable(raw) {
                card.card.quoted_printable.push(line);
            }
        }
        match decode(raw, &card.head, line) {
            Ok(text) => {
                card.card.text.push_str(&text);
                card.card.text.push_str("\r\n");
            }
            Err(e) => {
                card.error.get_or_insert(e);
            }
        }
        card.qp_continues = is_quoted_printable(&card.head) && raw.ends_with(b"=");
    }

    if let Some((first, last)) = outside {
        out.warnings
            .push(Warning::OutsideCard { line: first, last });
    }
    if let Some(mut unterminated) = open {
        // A file that ends with a line break has all of this card's last line: the card lacks
        // only its END, which many exporters drop. One that ends mid-line was cut short.
        if input.ends_with(b"\n") || input.is_empty() {
            out.warnings.push(Warning::NoEndAtEof {
                line: unterminated.card.line,
            });
            unterminated.card.text.push_str("END:VCARD\r\n");
        } else {
            unterminated.error.get_or_insert(CardError::Truncated);
        }
        out.cards.push(unterminated.finish());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn cards_get_their_lines_and_broken_ones_their_reason() {
        let input = b"BEGIN:VCARD\r\nFN:A\r\nEND:VCARD\r\nstray\r\nBEGIN:VCARD\nFN:B\nBEGIN:VCARD\nFN:C\nEND:VCARD\nBEGIN:VCARD\nFN:D";
        let framed = split(input);
        assert_eq!(framed.cards.len(), 4);
        assert_eq!(framed.cards[0].as_ref().unwrap().line, 1);
        assert_eq!(
            framed.cards[1].as_ref().unwrap_err(),
            &(5, CardError::MissingEnd { next: 7 })
        );
        let c = framed.cards[2].as_ref().unwrap();
        assert_eq!((c.line, c.properties.clone()), (7, vec![("FN".into(), 8)]));
        assert_eq!(
            framed.cards[3].as_ref().unwrap_err(),
            &(10, CardError::Truncated)
        );
        assert_eq!(
            framed.warnings,
            vec![Warning::OutsideCard { line: 4, last: 4 }]
        );
    }

    #[test]
    fn eight_bit_lines_are_decoded_by_their_charset_or_refused() {
        let latin = split(b"BEGIN:VCARD\nN;CHARSET=ISO-8859-1:M\xfcller\nEND:VCARD\n");
        assert!(latin.cards[0].as_ref().unwrap().text.contains("Müller"));
        let cp = split(b"BEGIN:VCARD\nNOTE;CHARSET=windows-1252:Reid\x92s\nEND:VCARD\n");
        assert!(cp.cards[0].as_ref().unwrap().text.contains("Reid’s"));
        let bad = split(b"BEGIN:VCARD\nN:M\xfcller\nEND:VCARD\nBEGIN:VCARD\nFN:ok\nEND:VCARD\n");
        assert_eq!(
            bad.cards[0].as_ref().unwrap_err(),
            &(
                1,
                CardError::NotUtf8 {
                    line: 2,
                    charset: None
                }
            )
        );
        assert!(bad.cards[1].is_ok());
    }

    #[test]
    fn folded_and_soft_broken_lines_are_not_card_boundaries() {
        let input = b"BEGIN:VCARD\nNOTE;ENCODING=QUOTED-PRINTABLE:a=\nEND:VCARD=\nb\nAGENT:BEGIN:VCARD\n END:VCARD\nEND:VCARD\n";
        let framed = split(input);
        assert_eq!(framed.cards.len(), 1);
        let c = framed.cards[0].as_ref().unwrap();
        assert_eq!(c.properties, vec![("NOTE".into(), 2), ("AGENT".into(), 5)]);
    }

    #[test]
    fn a_last_card_without_end_is_kept_when_its_last_line_is_whole() {
        let framed = split(b"BEGIN:VCARD\r\nFN:A\r\n");
        assert!(framed.cards[0].is_ok());
        assert_eq!(framed.warnings, vec![Warning::NoEndAtEof { line: 1 }]);
    }
}
