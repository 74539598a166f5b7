//! The names of custom fields that hold vCard properties (docs/VCARD.md, "Custom fields").
//!
//! - `LEFT` — a property kept whole: LEFT is its `[GROUP.]NAME[;PARAM=…]` as calcard writes it
//!   in vCard 4.0, the field's text its value as written after the colon. The second and later
//!   properties with the same LEFT in one card are `LEFT #2`, `LEFT #3`, … (calcard never
//!   writes a space outside quotes, so the suffix cannot be part of a LEFT).
//! - `vcard:NAME` — the group and parameters of the property mapped to a field (`vcard:N` =
//!   `N;LANGUAGE=en-us`), so export writes them back around the field's value.
//! - `vcard:line`, `vcard:line #2`, … — a property whose LEFT is longer than a custom field
//!   name may be: the text is the whole content line.

use std::collections::BTreeMap;

/// Prefix of the custom fields holding a field property's group and parameters.
pub(crate) const LEFT_PREFIX: &str = "vcard:";
/// Name of the custom fields holding whole content lines.
pub(crate) const WHOLE_LINE: &str = "vcard:line";

const REPEAT: &str = " #";

/// The repeat number of a custom field name (`X-SHOE #2` → 2, `X-SHOE` → 1).
fn repeat(name: &str) -> Option<(&str, u64)> {
    let (base, n) = name.rsplit_once(REPEAT)?;
    let n: u64 = n.parse().ok().filter(|n| *n >= 2)?;
    (n.to_string().len() == name.len() - base.len() - REPEAT.len()).then_some((base, n))
}

/// The name without its repeat number.
pub(crate) fn base(name: &str) -> &str {
    repeat(name).map_or(name, |(base, _)| base)
}

/// Order for export: by base name, then repeat number, so repeats come back numbered alike.
pub(crate) fn order(name: &str) -> (&str, u64) {
    repeat(name).unwrap_or((name, 1))
}

/// `base`, or `base #N` with the first N from 2 not yet taken.
pub(crate) fn unique(taken: &BTreeMap<String, String>, base: &str) -> String {
    if !taken.contains_key(base) {
        return base.to_owned();
    }
    (2u64..)
        .map(|n| format!("{base}{REPEAT}{n}"))
        .find(|name| !taken.contains_key(name))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_numbered_and_ordered_numerically() {
        let mut taken = BTreeMap::new();
        for _ in 0..11 {
            let name = unique(&taken, "PHOTO");
            taken.insert(name, String::new());
        }
        let mut names: Vec<&String> = taken.keys().collect();
        names.sort_by_key(|n| order(n));
        assert_eq!(names.first().map(|n| n.as_str()), Some("PHOTO"));
        assert_eq!(names.get(1).map(|n| n.as_str()), Some("PHOTO #2"));
        assert_eq!(names.last().map(|n| n.as_str()), Some("PHOTO #11"));
        assert_eq!(base("X-SHOE #3"), "X-SHOE");
        assert_eq!(base("X-SHOE #03"), "X-SHOE #03");
        assert_eq!(base("X-SHOE #1"), "X-SHOE #1");
        assert_eq!(base("X-SHOE"), "X-SHOE");
    }
}
