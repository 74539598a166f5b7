//! Turning contacts, versions and ops into aligned text and into the stable JSON shapes of
//! docs/CLI.md.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use std::collections::BTreeMap;

use cardlog::{
    ContactId, ContactView, DeviceId, FieldConflict, Fork, HistoryEntry, Hlc, ItemBody, ItemKind,
    MemberChange, OpId, Path, PostalAddress, Replica, SealedOp, Suspect, TakenBack, Value,
};
use serde_json::{json, Map, Value as Json};

/// The members' names by device id, shown with each write (`by 262f0db9 (Ada's iPad)`): the
/// names the book's membership ops give, which are signed by the admins that wrote them. An
/// author without a name (a format-1 author of an adopted history) shows its id alone.
#[derive(Debug, Default)]
pub struct Names(BTreeMap<DeviceId, String>);

impl Names {
    /// The names of `r`'s book's members.
    pub fn of(r: &Replica) -> Self {
        Self(r.members().into_iter().map(|(d, m)| (d, m.name)).collect())
    }

    /// The device's name, if it has one.
    pub fn get(&self, device: &DeviceId) -> Option<&str> {
        self.0.get(device).map(String::as_str)
    }

    /// The device's short id, and its name in parentheses if it has one.
    pub fn by(&self, device: &DeviceId) -> String {
        match self.get(device) {
            Some(name) => format!("{} ({name})", short(device)),
            None => short(device),
        }
    }
}

/// The writes shown whose timestamps cannot be right, by op ([`Replica::suspects`]).
#[derive(Debug, Default)]
pub struct Marks(BTreeMap<OpId, Suspect>);

impl Marks {
    /// The suspect writes among the heads of `view`'s conflicted paths.
    pub fn of_conflicts(r: &Replica, view: &ContactView) -> Result<Self, cardlog::Error> {
        Self::of_paths(r, &view.contact.id, view.conflicts.iter().map(|c| &c.path))
    }

    /// The suspect writes of the given paths of a contact.
    pub fn of_paths<'a>(
        r: &Replica,
        id: &ContactId,
        paths: impl IntoIterator<Item = &'a Path>,
    ) -> Result<Self, cardlog::Error> {
        let mut out = BTreeMap::new();
        for path in paths {
            out.extend(r.suspects(id, path)?);
        }
        Ok(Self(out))
    }

    /// The suspect writes of one path's history already read.
    pub fn of_history(r: &Replica, history: &[HistoryEntry]) -> Self {
        Self(r.suspects_in(history))
    }

    /// The mark of one write, if it is suspect.
    pub fn get(&self, op: &OpId) -> Option<&Suspect> {
        self.0.get(op)
    }

    /// A write's mark as JSON: `null`, `{"ahead_ms": N}` or `{"behind_ms": N, "of": OP}`.
    pub fn json(&self, op: &OpId) -> Json {
        match self.get(op) {
            None => Json::Null,
            Some(Suspect::Ahead { by_ms }) => json!({ "ahead_ms": by_ms }),
            Some(Suspect::Behind { by_ms, of }) => {
                json!({ "behind_ms": by_ms, "of": of.to_string() })
            }
        }
    }

    /// A write's mark as text to append to its line (empty when it is not suspect).
    pub fn text(&self, op: &OpId) -> String {
        match self.get(op) {
            None => String::new(),
            Some(Suspect::Ahead { by_ms }) => {
                format!(
                    "  SUSPECT: stamped {} ahead of this device's time",
                    span(*by_ms)
                )
            }
            Some(Suspect::Behind { by_ms, of }) => format!(
                "  SUSPECT: stamped {} before op {}, which it replaces",
                span(*by_ms),
                short(of)
            ),
        }
    }
}

/// A length of time in its largest whole unit ("3 days", "5 h", "12 min", "40 s").
pub fn span(ms: u64) -> String {
    const MIN: u64 = 60_000;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    match ms {
        ms if ms >= 2 * DAY => format!("{} days", ms / DAY),
        ms if ms >= DAY => "1 day".to_owned(),
        ms if ms >= HOUR => format!("{} h", ms / HOUR),
        ms if ms >= MIN => format!("{} min", ms / MIN),
        ms => format!("{} s", ms / 1000),
    }
}

/// An HLC's wall time as RFC 3339 (UTC, milliseconds). humantime formats years up to 9999
/// only; a later time (which only a peer with a broken clock writes) prints as
/// `+<milliseconds since 1970>ms` rather than failing.
pub fn time(hlc: Hlc) -> String {
    time_ms(hlc.wall_ms)
}

/// Milliseconds since 1970 as RFC 3339, like [`time`].
pub fn time_ms(ms: u64) -> String {
    let raw = || format!("+{ms}ms");
    let Some(at) = UNIX_EPOCH.checked_add(Duration::from_millis(ms)) else {
        return raw();
    };
    let mut out = String::new();
    match write!(out, "{}", humantime::format_rfc3339_millis(at)) {
        Ok(()) => out,
        Err(_) => raw(),
    }
}

/// The first 8 hex digits of an id, for aligned human output.
pub fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}

fn address_json(a: &PostalAddress) -> Json {
    json!({
        "po_box": a.po_box, "extended": a.extended, "street": a.street,
        "locality": a.locality, "region": a.region, "code": a.code, "country": a.country,
    })
}

fn body_json(body: &ItemBody) -> Json {
    match body {
        ItemBody::Text(t) => Json::String(t.clone()),
        ItemBody::Address(a) => address_json(a),
    }
}

/// A register value as JSON: text as a string, existence as a boolean, an item as
/// `{label, value}`, tag presence as `true`, a removal as `null`.
pub fn value_json(value: Option<&Value>) -> Json {
    match value {
        None => Json::Null,
        Some(Value::Text(t)) => Json::String(t.clone()),
        Some(Value::Bool(b)) => Json::Bool(*b),
        Some(Value::Item(item)) => json!({"label": item.label, "value": body_json(&item.body)}),
        Some(Value::Present) => Json::Bool(true),
    }
}

/// A register value as text; a removal is `(removed)`.
pub fn value_text(value: Option<&Value>) -> String {
    match value {
        None => "(removed)".into(),
        Some(v) => v.to_string(),
    }
}

/// One version of a path.
pub fn version_json(v: &HistoryEntry, names: &Names, marks: &Marks) -> Json {
    json!({
        "op": v.op.to_string(),
        "device": v.author.to_string(),
        "device_name": names.get(&v.author),
        "seq": v.seq,
        "time": time(v.hlc),
        "hlc": v.hlc.to_string(),
        "value": value_json(v.value.as_ref()),
        "replaces": v.replaces.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "head": v.head,
        "suspect": marks.json(&v.op),
    })
}

/// A conflict: the path and its competing values, the visible one first.
pub fn conflict_json(c: &FieldConflict, names: &Names, marks: &Marks) -> Json {
    let mut values = vec![version_json(&c.winner, names, marks)];
    values.extend(c.alternatives.iter().map(|v| version_json(v, names, marks)));
    json!({"path": c.path.to_string(), "values": values})
}

/// The JSON key of a contact's items of one kind.
pub fn plural(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Phone => "phones",
        ItemKind::Email => "emails",
        ItemKind::Address => "addresses",
        ItemKind::Url => "urls",
    }
}

/// A contact in the shape of `cardlog show --json`.
pub fn contact_json(view: &ContactView, names: &Names, marks: &Marks) -> Json {
    let c = &view.contact;
    let mut out = Map::new();
    out.insert("id".into(), Json::String(c.id.to_string()));
    for (field, value) in &c.fields {
        out.insert(field.name().into(), Json::String(value.clone()));
    }
    for kind in ItemKind::ALL {
        let items: Vec<Json> = c
            .items(kind)
            .iter()
            .map(|i| json!({"id": i.id.to_string(), "label": i.label, "value": body_json(&i.body)}))
            .collect();
        out.insert(plural(kind).into(), Json::Array(items));
    }
    out.insert("tags".into(), json!(c.tags));
    out.insert("custom".into(), json!(c.custom));
    out.insert("deleted".into(), Json::Bool(view.deleted));
    out.insert("created".into(), Json::String(time(view.created)));
    out.insert("updated".into(), Json::String(time(view.updated)));
    out.insert(
        "conflicts".into(),
        Json::Array(
            view.conflicts
                .iter()
                .map(|c| conflict_json(c, names, marks))
                .collect(),
        ),
    );
    Json::Object(out)
}

/// A contact as aligned text: name line, then one line per value, then conflicts.
pub fn contact_text(view: &ContactView, names: &Names, marks: &Marks) -> String {
    let c = &view.contact;
    let mut rows: Vec<(String, String)> = Vec::new();
    for (field, value) in &c.fields {
        rows.push((field.name().into(), value.clone()));
    }
    for kind in ItemKind::ALL {
        for item in c.items(kind) {
            let label = if item.label.is_empty() {
                String::new()
            } else {
                format!(" ({})", item.label)
            };
            rows.push((
                format!("{}.{}", kind.name(), short(&item.id)),
                format!("{}{label}", item.body),
            ));
        }
    }
    if !c.tags.is_empty() {
        rows.push((
            "tags".into(),
            c.tags.iter().cloned().collect::<Vec<_>>().join(", "),
        ));
    }
    for (name, value) in &c.custom {
        rows.push((format!("custom.{name}"), value.clone()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{}  {}", c.id, c.display_name());
    if view.deleted {
        out.push_str("  [deleted]");
    }
    out.push('\n');
    for (k, v) in rows {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    for conflict in &view.conflicts {
        out.push_str(&conflict_text(&conflict.path, conflict, names, marks));
    }
    out
}

/// A conflict as text: the path, then each competing value with device, time and op.
pub fn conflict_text(path: &Path, c: &FieldConflict, names: &Names, marks: &Marks) -> String {
    let mut out = format!("  conflict on {path}:\n");
    for (i, v) in std::iter::once(&c.winner)
        .chain(&c.alternatives)
        .enumerate()
    {
        let mark = if i == 0 { "shown" } else { "also " };
        out.push_str(&format!(
            "    {mark}  {:<30}  by {}  at {}  op {}{}\n",
            value_text(v.value.as_ref()),
            names.by(&v.author),
            time(v.hlc),
            short(&v.op),
            marks.text(&v.op)
        ));
    }
    out
}

/// One op as JSON (`cardlog op --json`, `cardlog log --json`).
pub fn op_json(op: &SealedOp, names: &Names) -> Json {
    let o = op.op();
    json!({
        "id": op.id().to_string(),
        "author": o.author.to_string(),
        "author_name": names.get(&o.author),
        "seq": o.seq,
        "prev": o.prev.map(|p| p.to_string()),
        "time": time(o.hlc),
        "hlc": o.hlc.to_string(),
        "bytes": op.bytes().len(),
        "writes": o.writes.iter().map(|w| json!({
            "contact": w.contact.to_string(),
            "path": w.path.to_string(),
            "value": value_json(w.value.as_ref()),
            "replaces": w.replaces.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "members": o.members.iter().map(member_json).collect::<Vec<_>>(),
    })
}

/// One member change as JSON: `{change, …}` with `change` one of found, add, remove, adopt.
pub fn member_json(c: &MemberChange) -> Json {
    match c {
        MemberChange::Found { key, name, .. } => {
            json!({"change": "found", "key": key.to_string(), "name": name})
        }
        MemberChange::Add { device, role, name } => {
            json!({"change": "add", "device": device.to_string(), "role": role.name(), "name": name})
        }
        MemberChange::Remove { device, after } => {
            json!({"change": "remove", "device": device.to_string(), "after": after})
        }
        MemberChange::Adopt { author, seq, tip } => {
            json!({"change": "adopt", "author": author.to_string(), "seq": seq, "tip": tip.to_string()})
        }
    }
}

/// One member change in words.
pub fn member_text(c: &MemberChange) -> String {
    match c {
        MemberChange::Found { name, .. } => format!("founds the address book ({name})"),
        MemberChange::Add { device, role, name } => {
            format!("adds {} as {role} ({name})", short(device))
        }
        MemberChange::Remove { device, after } => {
            format!("removes {} after its op {after}", short(device))
        }
        MemberChange::Adopt { author, seq, .. } => {
            format!("adopts {}'s format-1 ops up to seq {seq}", short(author))
        }
    }
}

/// A fork as JSON: `{author, seq, ours, theirs}`, `ours` being the op held here.
pub fn fork_json(f: &Fork) -> Json {
    json!({
        "author": f.author.to_string(),
        "seq": f.seq,
        "ours": f.ours.to_string(),
        "theirs": f.theirs.to_string(),
    })
}

/// A fork as one line, loud on purpose: it means one device id wrote two different histories
/// (a device restored from a backup), and that device's later ops no longer travel between the
/// two sides.
pub fn fork_text(f: &Fork, theirs: &str) -> String {
    format!(
        "FORK       device {} seq {}: op {} here, op {} {theirs}",
        f.author, f.seq, f.ours, f.theirs
    )
}

/// `status` and `sync` when a peer holds this device's chain beyond what its store holds.
pub const RESTORED_TEXT: &str = "restored   a peer holds this device's history beyond what this \
     store holds (it was restored from a backup): the next sync takes the lost ops back and \
     sends the ones saved since (docs/SEMANTICS.md, \"Restores\")";

/// A take back as text (`sync`, `import`).
pub fn taken_back_text(t: &TakenBack) -> String {
    if t.recovered == 0 {
        return format!(
            "restored   sent again {} op(s) saved since this store was restored",
            t.reissued
        );
    }
    format!(
        "restored   this store was restored from a backup: took back {} op(s) of its history \
         from seq {} that it had lost, and saved again after them the {} op(s) written since",
        t.recovered, t.from_seq, t.reissued
    )
}

/// A take back as JSON.
pub fn taken_back_json(t: Option<&TakenBack>) -> Json {
    t.map_or(
        Json::Null,
        |t| json!({"from_seq": t.from_seq, "recovered": t.recovered, "reissued": t.reissued}),
    )
}

/// The line after a group of [`fork_text`] lines: what a fork means and where to read more.
pub const FORK_HINT: &str =
    "           a device wrote two histories under one id (restored from a backup?); its \
     ops after the fork are not exchanged with that side (docs/SYNC.md, \"Forks\")";
