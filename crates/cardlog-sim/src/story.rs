//! Schedules told as what people did: "tablet sets org=\"b\" on contact 3", "laptop syncs
//! with phone, one op per message, cut after 2 messages". A [`Schedule`] prints so (its
//! `Display`, and its `Debug`, which is what proptest shows of a failing case); a run keeps
//! the same story with what each step picked and how it ended, and a [`crate::Violation`]
//! carries it.

use std::fmt;

use cardlog_core::{Contact, ItemBody, ItemKind};

use crate::naming::{device_name, field_at, item_kind, name_at};
use crate::schedule::{Action, Edit, Schedule, Storage, SyncMode, ADMITTED_AT_START, RELAY};

/// A clock offset as a person reads it, exactly: "+2 min 5 s", "−4 min 3.321 s", "−300 ms".
pub(crate) fn offset(ms: i64) -> String {
    let sign = if ms < 0 { "−" } else { "+" };
    let abs = ms.unsigned_abs();
    let (min, s, rest) = (abs / 60_000, abs % 60_000 / 1_000, abs % 1_000);
    let secs = match (s, rest) {
        (0, 0) => String::new(),
        (s, 0) => format!("{s} s"),
        (s, r) => format!("{s}.{r:03} s"),
    };
    match (min, secs.is_empty()) {
        (0, true) => format!("{sign}0 ms"),
        (0, false) if s == 0 => format!("{sign}{rest} ms"),
        (0, false) => format!("{sign}{secs}"),
        (m, true) => format!("{sign}{m} min"),
        (m, false) => format!("{sign}{m} min {secs}"),
    }
}

/// What a new contact holds, in a few words.
fn contact_words(c: &Contact) -> String {
    let mut parts: Vec<String> = c
        .fields
        .iter()
        .map(|(f, v)| format!("{}={v:?}", f.name()))
        .collect();
    for p in &c.phones {
        parts.push(format!("phone {}", body_words(&p.body)));
    }
    for e in &c.emails {
        parts.push(format!("e-mail {}", body_words(&e.body)));
    }
    for t in &c.tags {
        parts.push(format!("tag {t}"));
    }
    parts.join(", ")
}

fn body_words(body: &ItemBody) -> String {
    match body {
        ItemBody::Text(t) => format!("{t:?}"),
        other => format!("{other:?}"),
    }
}

fn kind_word(kind: usize) -> &'static str {
    match item_kind(kind) {
        ItemKind::Phone => "phone",
        _ => "e-mail",
    }
}

/// An edit as a person's act on `target` ("contact 3", or "the contact it picks (#7)").
pub(crate) fn edit_words(edit: &Edit, target: &str) -> String {
    match edit {
        Edit::Add(c) => format!("adds {target} ({})", contact_words(c)),
        Edit::SetField { field, value, .. } => {
            format!("sets {}={value:?} on {target}", field_at(*field).name())
        }
        Edit::ClearField { field, .. } => format!("clears {} on {target}", field_at(*field).name()),
        Edit::AddItem { kind, text, .. } => {
            format!("adds a {} {text:?} to {target}", kind_word(*kind))
        }
        Edit::EditItem { nth, text, .. } => {
            format!("changes item {nth} (of its phones, then e-mails) of {target} to {text:?}")
        }
        Edit::RemoveItem { nth, .. } => {
            format!("removes item {nth} (of its phones, then e-mails) of {target}")
        }
        Edit::Tag { name, on: true, .. } => format!("tags {target} {}", name_at(*name)),
        Edit::Tag {
            name, on: false, ..
        } => format!("untags {} on {target}", name_at(*name)),
        Edit::Custom {
            name,
            value: Some(v),
            ..
        } => format!("sets X-{}={v:?} on {target}", name_at(*name).to_uppercase()),
        Edit::Custom {
            name, value: None, ..
        } => format!("clears X-{} on {target}", name_at(*name).to_uppercase()),
        Edit::Delete { .. } => format!("deletes {target}"),
        Edit::Restore { .. } => format!("restores {target}"),
        Edit::Resolve { .. } => format!("settles the first conflict of {target}"),
    }
}

/// How a sync of `mode` from `from` to `to` goes, after "X syncs with Y"; `replicas` resolves
/// a relay's number and `network` names an app's network.
pub(crate) fn sync_words(
    mode: SyncMode,
    (from, to): (usize, usize),
    replicas: usize,
    network: &str,
) -> String {
    match mode {
        SyncMode::Full => String::new(),
        SyncMode::Partial(p) => format!(", but only the first {p} % of what it lacks arrives"),
        SyncMode::Interrupted(k) => {
            format!(", one op per message, and the line is cut after {k} messages")
        }
        SyncMode::Duplicated => " by a bundle file, imported twice".into(),
        SyncMode::Reordered(seed) => {
            format!(", what it lacks arriving in a shuffled order (seed {seed})")
        }
        SyncMode::Relay(r) => {
            let relay = usize::from(r) % replicas.max(1);
            if relay == from % replicas.max(1) || relay == to % replicas.max(1) {
                " directly (the device picked to pass it on is one of the two)".into()
            } else {
                format!(" through {}", device_name(relay))
            }
        }
        SyncMode::Bundle => " by files: its heads one way, a bundle back".into(),
        SyncMode::Network(seed) => format!(" over {network} (seed {seed})"),
    }
}

/// One action of a schedule on `replicas` replicas, before it runs (a save names the contact
/// it will pick only by its pick number).
pub(crate) fn action_words(action: &Action, replicas: usize, network: &str) -> String {
    let dev = |i: &usize| device_name(i % replicas.max(1));
    match action {
        Action::Save { replica, edit } => format!("{} {edit}", dev(replica)),
        Action::Sync { from, to, mode } => format!(
            "{} syncs with {}{}",
            dev(to),
            dev(from),
            sync_words(*mode, (*from, *to), replicas, network)
        ),
        Action::Crash { replica } => format!("{} crashes and reopens its store", dev(replica)),
        Action::Stranger {
            target,
            forge: false,
        } => format!("a stranger's device pushes {} a contact", dev(target)),
        Action::Stranger {
            target,
            forge: true,
        } => format!(
            "a stranger's device pushes {} an op forged in its name",
            dev(target)
        ),
        Action::Leave { replica } => format!(
            "{} is lost: the founder removes it from the book",
            dev(replica)
        ),
        Action::Admit { replica } => format!("the founder admits {}", dev(replica)),
        Action::Backup { replica } => format!("{}'s store is backed up", dev(replica)),
        Action::Restore { replica } => format!(
            "{}'s store is restored in place from its last backup",
            dev(replica)
        ),
        Action::ClockJump { replica, delta_ms } => {
            format!("{}'s clock jumps {}", dev(replica), offset(*delta_ms))
        }
        Action::SetClock {
            replica,
            off_by_ms: 0,
        } => format!("{}'s clock is set right", dev(replica)),
        Action::SetClock { replica, off_by_ms } => format!(
            "{}'s clock is set {} off real time",
            dev(replica),
            offset(*off_by_ms)
        ),
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.skews_ms.len();
        let storage = match self.storage {
            Storage::Disk => "stores on disk",
            Storage::Memory => "in memory",
        };
        write!(f, "{n} devices, {storage}:")?;
        for (i, skew) in self.skews_ms.iter().enumerate() {
            let role = match (self.storage, i) {
                (Storage::Disk, 0) => "founder, ",
                (Storage::Disk, RELAY) => "the relay, ",
                (Storage::Disk, i) if i >= ADMITTED_AT_START => "joined, not yet admitted, ",
                _ => "",
            };
            write!(f, " {} ({role}clock {})", device_name(i), offset(*skew))?;
            if i + 1 < n {
                write!(f, ",")?;
            }
        }
        for (k, a) in self.actions.iter().enumerate() {
            write!(
                f,
                "\n{:>4}. {}",
                k + 1,
                action_words(a, n, "the app's network")
            )?;
        }
        Ok(())
    }
}

/// What proptest prints of a failing schedule: the story (see `Display`). The alternate form
/// (`{:#?}`) is the exact value, fields and all, to paste into a regression test.
impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.debug_struct("Schedule")
                .field("storage", &self.storage)
                .field("skews_ms", &self.skews_ms)
                .field("actions", &self.actions)
                .finish()
        } else {
            write!(f, "\n{self}\n")
        }
    }
}

/// The edit before it runs: it names the contact it will pick only by its pick number.
impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match self {
            Edit::Add(_) => "a new contact".to_owned(),
            Edit::SetField { pick, .. }
            | Edit::ClearField { pick, .. }
            | Edit::AddItem { pick, .. }
            | Edit::EditItem { pick, .. }
            | Edit::RemoveItem { pick, .. }
            | Edit::Tag { pick, .. }
            | Edit::Custom { pick, .. }
            | Edit::Delete { pick }
            | Edit::Restore { pick }
            | Edit::Resolve { pick } => format!("the contact it picks (#{pick})"),
        };
        f.write_str(&edit_words(self, &target))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&action_words(self, usize::MAX, "the app's network"))
    }
}
