//! Turning contacts, versions and ops into aligned text and into the stable JSON shapes of
//! docs/CLI.md.

use std::collections::BTreeMap;

use cardlog::{
    CalibrationInfo, ContactId, ContactView, DeviceId, FieldConflict, Fork, HistoryEntry, Hlc,
    Imported, ItemKind, MemberChange, OpId, Pairing, Path, Replica, SealedOp, Suspect, SyncReport,
    TakenBack, Value,
};
use serde_json::Value as Json;

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

    /// A write's mark as JSON: `null`, `{"ahead_ms": N}` or `{"behind_ms": N, "of": OP}`
    /// (the library's shape of a `Suspect`).
    pub fn json(&self, op: &OpId) -> Json {
        to_json(&self.get(op))
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

/// Milliseconds since 1970 as RFC 3339, like [`time`] (the library's `json::rfc3339`).
pub fn time_ms(ms: u64) -> String {
    cardlog::json::rfc3339(ms)
}

/// A value in the library's serde shape (`cardlog::json`) as JSON. Those shapes have string
/// keys only, which is all that can make serde_json fail; should one ever fail, the value
/// shows as `null` rather than the command failing.
pub fn to_json(value: &impl serde::Serialize) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// Adds what the CLI shows with a version beyond the library's shape: the device's name and
/// the write's suspect mark.
fn with_marks(json: &mut Json, v: &HistoryEntry, names: &Names, marks: &Marks) {
    if let Json::Object(map) = json {
        map.insert("device_name".into(), to_json(&names.get(&v.author)));
        map.insert("suspect".into(), marks.json(&v.op));
    }
}

/// The first 8 hex digits of an id, for aligned human output.
pub fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
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
    let mut json = to_json(v);
    with_marks(&mut json, v, names, marks);
    json
}

/// A conflict: the path and its competing values, the visible one first.
pub fn conflict_json(c: &FieldConflict, names: &Names, marks: &Marks) -> Json {
    let mut json = to_json(c);
    mark_versions(&mut json, c, names, marks);
    json
}

fn mark_versions(json: &mut Json, c: &FieldConflict, names: &Names, marks: &Marks) {
    if let Some(Json::Array(values)) = json.get_mut("values") {
        for (json, v) in values
            .iter_mut()
            .zip(std::iter::once(&c.winner).chain(&c.alternatives))
        {
            with_marks(json, v, names, marks);
        }
    }
}

/// A contact in the shape of `cardlog show --json`: the library's shape of a `ContactView`,
/// each conflict's versions with their device names and suspect marks.
pub fn contact_json(view: &ContactView, names: &Names, marks: &Marks) -> Json {
    let mut json = to_json(view);
    if let Some(Json::Array(conflicts)) = json.get_mut("conflicts") {
        for (json, c) in conflicts.iter_mut().zip(&view.conflicts) {
            mark_versions(json, c, names, marks);
        }
    }
    json
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

/// One op as JSON (`cardlog op --json`, `cardlog log --json`): the library's shape of a
/// `SealedOp` with its author's name.
pub fn op_json(op: &SealedOp, names: &Names) -> Json {
    let mut json = to_json(op);
    if let Json::Object(map) = &mut json {
        map.insert("author_name".into(), to_json(&names.get(&op.op().author)));
    }
    json
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
    to_json(f)
}

/// The parts of a session's report `sync --json` and `serve --json` share: the library's
/// shape less its calibration, which `sync` shows with the bound it was judged by and
/// `serve` (never the calibrating side) leaves out.
pub fn report_json(report: &SyncReport) -> Json {
    let mut j = to_json(report);
    if let Json::Object(map) = &mut j {
        map.remove("calibration");
    }
    j
}

/// `import --json`: the bundle imported from `file` and what it did.
pub fn imported_json(file: &std::path::Path, imported: &Imported) -> Json {
    let mut j = to_json(imported);
    if let Json::Object(map) = &mut j {
        map.insert("file".into(), to_json(&file));
    }
    j
}

/// The last calibration, as `status --json` shows it.
pub fn calibration_json(c: &CalibrationInfo) -> Json {
    to_json(c)
}

/// The paired device, as `pair --json` and `status --json` show it.
pub fn pairing_json(p: &Pairing) -> Json {
    to_json(p)
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
     store holds (it was restored from a backup): a sync with a peer holding the lost ops takes \
     them back and sends the ones saved since (docs/SEMANTICS.md, \"Restores\")";

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

/// The line after a group of [`fork_text`] lines: what a fork means and where to read more.
pub const FORK_HINT: &str =
    "           a device wrote two histories under one id (restored from a backup?); its \
     ops after the fork are not exchanged with that side (docs/SYNC.md, \"Forks\")";

#[cfg(test)]
mod tests {
    //! Golden JSON: the documented shapes (docs/CLI.md) of a contact with every kind of
    //! value and a conflict with a suspect write, of one version and of one op, compared
    //! byte for byte with `tests/fixtures/json/` (`CARDLOG_BLESS=1` rewrites them).
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;
    use cardlog::{Contact, Field, Item, ItemBody, ItemId, PostalAddress};
    use cardlog_core::{Op, Write};
    use serde_json::json;

    fn hlc(wall_ms: u64, counter: u32) -> Hlc {
        Hlc { wall_ms, counter }
    }

    fn entry(op: u8, author: u8, value: &str, head: bool) -> HistoryEntry {
        HistoryEntry {
            op: OpId([op; 32]),
            author: DeviceId([author; 16]),
            seq: u64::from(op),
            hlc: hlc(1_795_338_000_000 + u64::from(op), 2),
            value: Some(Value::Text(value.to_owned())),
            replaces: vec![OpId([0x0a; 32])],
            head,
        }
    }

    fn view() -> ContactView {
        let mut c = Contact::new(ContactId([0xc9; 16]));
        c.set(Field::Given, "Ada")
            .set(Field::Family, "Lovelace")
            .set(Field::Org, "Analytical Engines");
        c.phones.push(Item {
            id: ItemId([1; 16]),
            label: "mobile".into(),
            body: ItemBody::Text("+44 20 7946 0000".into()),
        });
        c.emails.push(Item {
            id: ItemId([2; 16]),
            label: String::new(),
            body: ItemBody::Text("ada@example.org".into()),
        });
        c.addresses.push(Item {
            id: ItemId([3; 16]),
            label: "home".into(),
            body: ItemBody::Address(Box::new(PostalAddress {
                po_box: String::new(),
                extended: "Flat 2".into(),
                street: "12 St James's Square".into(),
                locality: "London".into(),
                region: String::new(),
                code: "SW1Y 4JH".into(),
                country: "UK".into(),
            })),
        });
        c.tags.insert("friends".into());
        c.tags.insert("maths".into());
        c.custom.insert("X-PRONOUNS".into(), "she/her".into());
        ContactView {
            contact: c,
            deleted: false,
            conflicts: vec![FieldConflict {
                path: Path::Field(Field::Nickname),
                winner: entry(0x21, 0x62, "Countess", true),
                alternatives: vec![entry(0x22, 0x63, "Enchantress", true)],
            }],
            created: hlc(1_795_338_000_000, 0),
            updated: hlc(1_795_338_060_000, 1),
        }
    }

    fn names() -> Names {
        Names([(DeviceId([0x62; 16]), "Ada's iPad".to_owned())].into())
    }

    fn marks() -> Marks {
        Marks(
            [(
                OpId([0x22; 32]),
                Suspect::Behind {
                    by_ms: 7_200_000,
                    of: OpId([0x0a; 32]),
                },
            )]
            .into(),
        )
    }

    fn golden(name: &str, value: &Json) {
        let text = serde_json::to_string_pretty(value).unwrap() + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/json")
            .join(name);
        if std::env::var_os("CARDLOG_BLESS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, want, "{name} differs from its golden file");
    }

    fn report() -> SyncReport {
        SyncReport {
            peer: Some(DeviceId([0x62; 16])),
            sent_ops: 3,
            stored: 40,
            duplicates: 2,
            missing: 1,
            refused: vec![cardlog::Refusal::NotMember {
                author: DeviceId([0x66; 16]),
            }],
            void: 1,
            bytes_sent: 512,
            bytes_received: 9_000,
            handshake_bytes: 400,
            summary_bytes: 120,
            forks: vec![Fork {
                author: DeviceId([0x63; 16]),
                seq: 7,
                ours: OpId([0x07; 32]),
                theirs: OpId([0x08; 32]),
            }],
            calibration: Some(cardlog::sync_layer::Calibration {
                offset_ms: -1_500,
                rtt_ms: 12,
            }),
            taken_back: Some(TakenBack {
                from_seq: 5,
                recovered: 4,
                reissued: 2,
            }),
            restored: false,
            settled: vec![DeviceId([0x64; 16])],
            converged: true,
            busy_retries: 1,
        }
    }

    #[test]
    fn sync_report_json_matches_its_golden_file() {
        golden("sync_report.json", &report_json(&report()));
    }

    #[test]
    fn imported_json_matches_its_golden_file() {
        let r = report();
        let imported = Imported {
            from: DeviceId([0x62; 16]),
            created_ms: 1_795_338_000_000,
            received: cardlog::sync_layer::Received {
                ops: 44,
                applied: cardlog::sync_layer::Applied {
                    stored: r.stored,
                    duplicates: r.duplicates,
                    missing: r.missing,
                    refused: r.refused,
                    void: r.void,
                },
                forks: r.forks,
                taken_back: r.taken_back,
                settled: r.settled,
            },
        };
        golden(
            "imported.json",
            &imported_json(std::path::Path::new("phone.bundle"), &imported),
        );
    }

    #[test]
    fn calibration_and_pairing_json_match_their_golden_file() {
        let c = CalibrationInfo {
            peer: DeviceId([0x65; 16]),
            offset_ms: 86_400_000,
            rtt_ms: 30,
            at_ms: 1_795_338_000_000,
            beyond_bound: true,
            in_force: false,
        };
        let p = Pairing {
            device: DeviceId([0x65; 16]),
            addr: Some("relay.example.org:7447".to_owned()),
        };
        golden(
            "calibration.json",
            &json!({"calibration": calibration_json(&c), "paired": pairing_json(&p)}),
        );
    }

    #[test]
    fn member_json_matches_its_golden_file() {
        let m = cardlog::Member {
            role: cardlog::MemberRole::Write,
            name: "Ada's iPad".to_owned(),
            added_by: Some(DeviceId([0x61; 16])),
            added_in: OpId([0x01; 32]),
            removed: Some(cardlog::Removal {
                by: DeviceId([0x61; 16]),
                after: 12,
                op: OpId([0x0c; 32]),
            }),
        };
        golden("member.json", &to_json(&m));
    }

    #[test]
    fn contact_json_matches_its_golden_file() {
        golden("contact.json", &contact_json(&view(), &names(), &marks()));
    }

    #[test]
    fn version_json_matches_its_golden_file() {
        let v = view();
        golden(
            "version.json",
            &version_json(&v.conflicts[0].alternatives[0], &names(), &marks()),
        );
    }

    #[test]
    fn op_json_matches_its_golden_file() {
        let op = Op {
            author: DeviceId([0x62; 16]),
            seq: 3,
            prev: Some(OpId([0x0a; 32])),
            hlc: hlc(1_795_338_000_000, 0),
            writes: vec![
                Write {
                    contact: ContactId([0xc9; 16]),
                    path: Path::Exists,
                    value: Some(Value::Bool(true)),
                    replaces: vec![OpId([0x0b; 32])],
                },
                Write {
                    contact: ContactId([0xc9; 16]),
                    path: Path::Tag("friends".into()),
                    value: Some(Value::Present),
                    replaces: vec![],
                },
            ],
            members: vec![],
        }
        .seal()
        .unwrap();
        golden("op.json", &op_json(&op, &names()));
    }
}
