//! The text of the birthday and anniversary fields: ISO 8601 extended form
//! (`1963-09-21`, `--02-03`, `2009-08-08T14:30-05:00`), which people read and the CLI takes.
//!
//! calcard reads vCard dates into a [`PartialDateTime`]; [`format`] writes one in this form and
//! [`parse`] reads back exactly what [`format`] writes (any other text is not a date here and
//! is exported as `VALUE=text`). So a date survives export and import unchanged.

use calcard::common::PartialDateTime;

fn two(n: u8) -> String {
    format!("{n:02}")
}

/// The extended form of a date, time or date-time; `None` for shapes it cannot write (a year
/// and day without a month, a zone without a time…).
pub(crate) fn format(p: &PartialDateTime) -> Option<String> {
    let mut out = match (p.year, p.month, p.day) {
        (Some(y), Some(m), Some(d)) => format!("{y:04}-{}-{}", two(m), two(d)),
        (Some(y), Some(m), None) => format!("{y:04}-{}", two(m)),
        (Some(y), None, None) => format!("{y:04}"),
        (None, Some(m), Some(d)) => format!("--{}-{}", two(m), two(d)),
        (None, Some(m), None) => format!("--{}", two(m)),
        (None, None, Some(d)) => format!("---{}", two(d)),
        (None, None, None) => String::new(),
        (Some(_), None, Some(_)) => return None,
    };
    match (p.hour, p.minute, p.second) {
        (None, None, None) => {
            if p.tz_hour.is_some() || out.is_empty() {
                return None;
            }
            return Some(out);
        }
        (Some(h), None, None) => out.push_str(&format!("T{}", two(h))),
        (Some(h), Some(m), None) => out.push_str(&format!("T{}:{}", two(h), two(m))),
        (Some(h), Some(m), Some(s)) => {
            out.push_str(&format!("T{}:{}:{}", two(h), two(m), two(s)));
        }
        _ => return None,
    }
    match (p.tz_hour, p.tz_minute) {
        (None, None) => {}
        (Some(0), None | Some(0)) => out.push('Z'),
        (Some(h), None) => {
            out.push_str(&format!("{}{}", if p.tz_minus { '-' } else { '+' }, two(h)))
        }
        (Some(h), Some(m)) => out.push_str(&format!(
            "{}{}:{}",
            if p.tz_minus { '-' } else { '+' },
            two(h),
            two(m)
        )),
        (None, Some(_)) => return None,
    }
    Some(out)
}

fn number<T: std::str::FromStr>(s: &str, digits: usize) -> Option<T> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// An optional two-digit part: absent is fine (`Some(None)`), present must be two digits.
fn optional(part: Option<&str>) -> Option<Option<u8>> {
    match part {
        None => Some(None),
        Some(p) => number(p, 2).map(Some),
    }
}

fn parse_loose(s: &str) -> Option<PartialDateTime> {
    let mut p = PartialDateTime::default();
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    if let Some(day) = date.strip_prefix("---") {
        p.day = Some(number(day, 2)?);
    } else if let Some(md) = date.strip_prefix("--") {
        let mut parts = md.split('-');
        p.month = Some(number(parts.next()?, 2)?);
        p.day = optional(parts.next())?;
        if parts.next().is_some() {
            return None;
        }
    } else if !date.is_empty() {
        let mut parts = date.split('-');
        p.year = Some(number(parts.next()?, 4)?);
        p.month = optional(parts.next())?;
        p.day = optional(parts.next())?;
        if parts.next().is_some() {
            return None;
        }
    }
    if let Some(time) = time {
        let zone_at = time.find(['Z', '+', '-']).unwrap_or(time.len());
        let (clock, zone) = time.split_at(zone_at);
        let mut parts = clock.split(':');
        p.hour = Some(number(parts.next()?, 2)?);
        p.minute = optional(parts.next())?;
        p.second = optional(parts.next())?;
        if parts.next().is_some() {
            return None;
        }
        if zone == "Z" {
            p.tz_hour = Some(0);
        } else if let Some(sign) = zone.chars().next() {
            p.tz_minus = sign == '-';
            let mut parts = zone.get(1..)?.split(':');
            p.tz_hour = Some(number(parts.next()?, 2)?);
            p.tz_minute = optional(parts.next())?;
        }
    }
    let in_range = p.month.is_none_or(|m| (1..=12).contains(&m))
        && p.day.is_none_or(|d| (1..=31).contains(&d))
        && p.hour.is_none_or(|h| h <= 24)
        && p.minute.is_none_or(|m| m <= 59)
        && p.second.is_none_or(|x| x <= 60)
        && p.tz_hour.is_none_or(|h| h <= 23)
        && p.tz_minute.is_none_or(|m| m <= 59);
    in_range.then_some(p)
}

/// The date `s` is, if it is exactly in the form [`format`] writes.
pub(crate) fn parse(s: &str) -> Option<PartialDateTime> {
    let p = parse_loose(s)?;
    (format(&p).as_deref() == Some(s)).then_some(p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_written_forms_read_back() {
        for s in [
            "1963-09-21",
            "1815-12",
            "1996",
            "--02-03",
            "--04",
            "---15",
            "2009-08-08T14:30-05:00",
            "1953-10-15T23:10:00Z",
            "1987-09-27T08:30:00-06:00",
            "T14:30",
        ] {
            let p = parse(s).unwrap();
            assert_eq!(format(&p).as_deref(), Some(s), "{s}");
        }
        for s in [
            "circa 1800",
            "70-7-14",
            "19630921",
            "1963-9-21",
            "1963-13-01",
            "",
            "T",
        ] {
            assert_eq!(parse(s), None, "{s:?}");
        }
    }
}
