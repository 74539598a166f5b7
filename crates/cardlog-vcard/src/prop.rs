//! Single vCard properties as text, through calcard both ways: a property's content line as
//! calcard writes it in vCard 4.0 (unfolded), its left side (`[GROUP.]NAME[;PARAM=…]`), reading
//! one line back, and the item label scheme (`[GROUP.]TYPES[;OTHER-PARAMS]`).
//!
//! Everything kept as text is in calcard's own vCard 4.0 spelling, and every conversion back is
//! checked by writing the result again and comparing, so what is stored always exports to a
//! property that imports to the same stored text.

use calcard::common::IanaString;
use calcard::vcard::{
    VCard, VCardEntry, VCardParameter, VCardParameterName, VCardParameterValue, VCardProperty,
};

/// The custom field whose `X-NAME` parameter names a custom field that cannot be written as a
/// property of its own (docs/VCARD.md, "Custom fields").
pub(crate) const FALLBACK: &str = "X-CARDLOG-CUSTOM";
/// The parameter of [`FALLBACK`] that holds the custom field's name.
pub(crate) const FALLBACK_NAME: &str = "X-NAME";
/// The parameter holding an item label that cannot be written as `TYPE` and parameters.
pub(crate) const LABEL_PARAM: &str = "X-CARDLOG-LABEL";

/// The content line of `entry` as calcard writes it in vCard 4.0, unfolded, without line end.
pub(crate) fn line_of(entry: &VCardEntry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    if entry.write_to(&mut out, true).is_err() {
        return String::new();
    }
    // Values never hold a raw line break (calcard writes `\n`), so CRLF + space is a fold.
    out.replace("\r\n ", "")
        .trim_end_matches(['\r', '\n'])
        .to_owned()
}

/// The part of `entry`'s content line before the value: `[GROUP.]NAME[;PARAM=VALUE…]`.
pub(crate) fn left_of(entry: &VCardEntry) -> String {
    let bare = VCardEntry {
        group: entry.group.clone(),
        name: entry.name.clone(),
        params: entry.params.clone(),
        values: Vec::new(),
    };
    let mut left = line_of(&bare);
    left.pop();
    left
}

/// `entry`'s value as written after the colon in vCard 4.0.
pub(crate) fn value_of(entry: &VCardEntry) -> String {
    let line = line_of(entry);
    let left = left_of(entry);
    line.strip_prefix(&left)
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or_default()
        .to_owned()
}

/// The one property a vCard 4.0 content line holds, if calcard reads exactly one (not
/// `BEGIN`, `END` or `VERSION`, which the writer handles itself).
pub(crate) fn read_line(line: &str) -> Option<VCardEntry> {
    if line.contains(['\r', '\n']) {
        return None;
    }
    let card = VCard::parse(format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\n{line}\r\nEND:VCARD\r\n"
    ))
    .ok()?;
    let mut entries = card.entries.into_iter().filter(|e| {
        !matches!(
            e.name,
            VCardProperty::Version | VCardProperty::Begin | VCardProperty::End
        )
    });
    let entry = entries.next()?;
    entries.next().is_none().then_some(entry)
}

/// [`read_line`], only if writing the property again gives `line` back exactly.
pub(crate) fn read_line_exact(line: &str) -> Option<VCardEntry> {
    read_line(line).filter(|e| line_of(e) == line)
}

/// The group and parameters that `left` (`[GROUP.]NAME[;PARAM=…]`) spells for a property
/// named `name`, if it spells exactly that.
pub(crate) fn read_left(left: &str, name: &VCardProperty) -> Option<VCardEntry> {
    let entry = read_line(&format!("{left}:x"))?;
    (entry.name == *name && left_of(&entry) == left).then(|| VCardEntry {
        values: Vec::new(),
        ..entry
    })
}

fn type_text(value: &VCardParameterValue) -> Option<String> {
    match value {
        VCardParameterValue::Type(t) => Some(t.as_str().to_lowercase()),
        VCardParameterValue::Text(t) => Some(t.to_lowercase()),
        _ => None,
    }
}

fn is_type(p: &VCardParameter) -> bool {
    p.name == VCardParameterName::Type && type_text(&p.value).is_some()
}

fn is_label_param(p: &VCardParameter) -> bool {
    matches!(&p.name, VCardParameterName::Other(n) if n.eq_ignore_ascii_case(LABEL_PARAM))
}

/// An item's label from its property: `[GROUP.]TYPES[;OTHER-PARAMS]`, TYPES being the `TYPE`
/// values in lower case joined by `,` and OTHER-PARAMS the rest as calcard writes them. A
/// property whose only parameter is `X-CARDLOG-LABEL` has that parameter's text as its label.
pub(crate) fn label_of(entry: &VCardEntry) -> String {
    if let ([p], None) = (entry.params.as_slice(), &entry.group) {
        if let (true, VCardParameterValue::Text(label)) = (is_label_param(p), &p.value) {
            return label.clone();
        }
    }
    let mut label = entry
        .group
        .as_ref()
        .map(|g| format!("{g}."))
        .unwrap_or_default();
    let types: Vec<String> = entry
        .params
        .iter()
        .filter(|p| is_type(p))
        .filter_map(|p| type_text(&p.value))
        .collect();
    label.push_str(&types.join(","));
    let rest: Vec<VCardParameter> = entry
        .params
        .iter()
        .filter(|p| !is_type(p))
        .cloned()
        .collect();
    if !rest.is_empty() {
        let left = left_of(&VCardEntry {
            group: None,
            name: entry.name.clone(),
            params: rest,
            values: Vec::new(),
        });
        label.push_str(left.strip_prefix(entry.name.as_str()).unwrap_or_default());
    }
    label
}

/// Splits a leading vCard group (`item1.`) off a label.
fn split_group(label: &str) -> (Option<&str>, &str) {
    let end = label
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(label.len());
    match (label.get(..end), label.get(end..)) {
        (Some(group), Some(rest)) if end > 0 && rest.starts_with('.') => {
            (Some(group), rest.get(1..).unwrap_or_default())
        }
        _ => (None, label),
    }
}

/// The group and parameters an item label spells for a property named `name` (the reverse of
/// [`label_of`]), if reading them back gives the same label.
pub(crate) fn params_of_label(name: &VCardProperty, label: &str) -> Option<VCardEntry> {
    let (group, rest) = split_group(label);
    let (types, params) = rest.split_once(';').unwrap_or((rest, ""));
    let mut left = group.map(|g| format!("{g}.")).unwrap_or_default();
    left.push_str(name.as_str());
    if !types.is_empty() {
        left.push_str(";TYPE=");
        if types
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ',' | '.'))
        {
            left.push_str(types);
        } else {
            left.push('"');
            left.push_str(types);
            left.push('"');
        }
    }
    if !params.is_empty() {
        left.push(';');
        left.push_str(params);
    }
    let entry = read_line(&format!("{left}:x"))?;
    (entry.name == *name && label_of(&entry) == label).then(|| VCardEntry {
        values: Vec::new(),
        ..entry
    })
}

/// The group and parameters to write an item with `label`: [`params_of_label`], or else the
/// label whole in `X-CARDLOG-LABEL`.
pub(crate) fn params_for_label(name: &VCardProperty, label: &str) -> VCardEntry {
    if label.is_empty() {
        return VCardEntry::new(name.clone());
    }
    params_of_label(name, label).unwrap_or_else(|| {
        VCardEntry::new(name.clone()).with_param(VCardParameter::new(
            VCardParameterName::Other(LABEL_PARAM.to_owned()),
            label.to_owned(),
        ))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_split_into_left_and_value() {
        let e = read_line("item1.TEL;TYPE=cell;PREF=1:+1 555").unwrap();
        assert_eq!(left_of(&e), "item1.TEL;TYPE=CELL;PREF=1");
        assert_eq!(value_of(&e), "+1 555");
        assert!(read_line("END:VCARD").is_none());
        assert!(read_line("VERSION:3.0").is_none());
        assert!(read_line_exact("X-SHOE-SIZE:44, wide").is_none());
        assert!(read_line_exact("X-SHOE-SIZE:44\\, wide").is_some());
    }

    #[test]
    fn labels_are_types_and_parameters_and_read_back() {
        for (line, label) in [
            ("TEL;TYPE=WORK,VOICE:1", "work,voice"),
            ("TEL;TYPE=cell;PREF=1:1", "cell;PREF=1"),
            ("item2.TEL:1", "item2."),
            (
                "item1.EMAIL;type=INTERNET;type=pref:a@b",
                "item1.internet,pref",
            ),
            (
                "TEL;VALUE=uri;TYPE=\"work,voice\":tel:1",
                "work,voice;VALUE=URI",
            ),
            ("TEL;X-CARDLOG-LABEL=\"Dr. Who's\":1", "Dr. Who's"),
            ("TEL:1", ""),
        ] {
            let e = read_line(line).unwrap();
            assert_eq!(label_of(&e), label, "{line}");
            let back = params_for_label(&e.name, label);
            assert_eq!(label_of(&back), label, "{line}");
        }
        // A label that is not types and parameters goes whole into X-CARDLOG-LABEL.
        let odd = params_for_label(&VCardProperty::Tel, "Dr. Who's");
        assert_eq!(left_of(&odd), "TEL;X-CARDLOG-LABEL=\"Dr. Who's\"");
    }
}
