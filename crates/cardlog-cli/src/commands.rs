//! One function per subcommand. Each opens the replica, does its work through the `cardlog`
//! facade and prints through `render`; nothing here knows about sled or the op encoding.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use cardlog::{
    Contact, ContactId, ContactRow, ContactView, DeviceId, Field, IdPrefix, Item, ItemBody, ItemId,
    ItemKind, ItemValue, Keeps, OpId, Options, Path, PostalAddress, Replica, RowWidths, Value,
    WallClock,
};
use serde_json::json;

use crate::args::{AddArgs, LogArgs, ResolveArgs};
use crate::error::CliError;
use crate::out::{out, outln};
use crate::render::{self, Marks, Names};

/// How many candidates an ambiguous prefix lists.
const CANDIDATES: usize = 5;
/// Widest value column in aligned output; longer values overflow it.
const VALUE_WIDTH_MAX: usize = 40;

/// What every command needs: where the store is, how to print, what time it is.
pub struct Ctx {
    /// The store directory.
    pub dir: PathBuf,
    /// JSON output.
    pub json: bool,
    /// The wall clock (`CARDLOG_NOW` fixes it).
    pub wall: Arc<dyn WallClock>,
    /// `--read-only`: every command opens the store from its op log alone, writing nothing.
    pub read_only: bool,
}

pub(crate) type Res = Result<(), CliError>;

impl Ctx {
    pub(crate) fn options(&self) -> Options {
        Options {
            wall: self.wall.clone(),
            ..Options::default()
        }
    }

    /// Opens the replica (read-only with `--read-only`).
    pub(crate) fn open(&self) -> Result<Replica, CliError> {
        if self.read_only {
            return self.open_read_only();
        }
        Replica::open_with(&self.dir, self.options()).map_err(|e| self.open_error(e))
    }

    /// Opens the replica for a command that only reads: as [`Ctx::open`] does, or, where
    /// nothing can be written (a full disk, a read-only mount) or the database is damaged,
    /// from the op log alone, writing nothing, with a note on stderr saying so.
    pub(crate) fn open_to_read(&self) -> Result<Replica, CliError> {
        self.open_to_read_with(self.options())
    }

    /// [`Ctx::open_to_read`] with `options`.
    fn open_to_read_with(&self, options: Options) -> Result<Replica, CliError> {
        if self.read_only {
            return self.open_read_only();
        }
        // A relay's copy of a book keeps no contacts: they are replayed from its log (a journal
        // store says so without being opened; a sled one only once open).
        let ops_only = || -> Result<Replica, CliError> {
            let r = self.open_read_only()?;
            eprintln!(
                "cardlog: note: this store keeps ops only (a relay's copy of an address book): \
                 read from its op log"
            );
            Ok(r)
        };
        if cardlog::Store::keeps_in(&self.dir) == Keeps::OpsOnly {
            return ops_only();
        }
        match Replica::open_with(&self.dir, options) {
            Ok(r) if r.store().keeps() == Keeps::OpsOnly => {
                drop(r);
                ops_only()
            }
            Ok(r) => Ok(r),
            Err(e) if e.is_unwritable() || e.is_database_damage() => {
                // If the log cannot be read either, the first failure is the one to tell.
                let Ok(r) = Replica::open_read_only(&self.dir, self.options()) else {
                    return Err(self.open_error(e));
                };
                let mend = if e.is_database_damage() {
                    "; `cardlog repair` builds a new database from the op log"
                } else {
                    ""
                };
                eprintln!(
                    "cardlog: note: {e}\ncardlog: note: read from the op log alone, writing \
                     nothing{mend}"
                );
                Ok(r)
            }
            Err(e) => Err(self.open_error(e)),
        }
    }

    fn open_read_only(&self) -> Result<Replica, CliError> {
        let r =
            Replica::open_read_only(&self.dir, self.options()).map_err(|e| self.open_error(e))?;
        if let Some(why) = &r.store().recovery().damaged_tail {
            eprintln!(
                "cardlog: note: the op log is damaged ({why}): only what comes before the \
                 damage is shown; `cardlog repair` keeps what it can of the rest"
            );
        }
        Ok(r)
    }

    /// An open's failure in the words the CLI uses.
    pub(crate) fn open_error(&self, e: cardlog::OpenError) -> CliError {
        match e {
            cardlog::OpenError::NotAStore(_) if !self.dir.exists() => CliError::NotFound(format!(
                "no cardlog store at {}: the directory does not exist (create one with \
                 `cardlog init`, or pick one with --store DIR / CARDLOG_STORE)",
                self.dir.display()
            )),
            cardlog::OpenError::NotAStore(_) => CliError::NotFound(format!(
                "{} is not a cardlog store (create one with `cardlog init`, or pick one with \
                 --store DIR / CARDLOG_STORE)",
                self.dir.display()
            )),
            e @ cardlog::OpenError::Locked(_) => CliError::Failed(format!(
                "the store at {} is in use by another process (a running `cardlog serve`?): {e}",
                self.dir.display()
            )),
            other => other.into(),
        }
    }

    /// Prints one item of a JSON array as `print_json` would print it inside the whole
    /// array (pretty, indented one level), opening the array before the first.
    pub(crate) fn print_json_item(&self, value: &serde_json::Value, first: bool) -> Res {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Failed(format!("JSON output: {e}")))?;
        let indented: Vec<String> = text.lines().map(|l| format!("  {l}")).collect();
        let lead = if first { "[\n" } else { ",\n" };
        out!("{lead}{}", indented.join("\n"))?;
        Ok(())
    }

    /// Ends a JSON array begun by `print_json_item` (`[]` when it had no item).
    pub(crate) fn end_json_array(&self, empty: bool) -> Res {
        if empty {
            outln!("[]")?;
        } else {
            outln!("\n]")?;
        }
        Ok(())
    }

    pub(crate) fn print_json(&self, value: &serde_json::Value) -> Res {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Failed(format!("JSON output: {e}")))?;
        outln!("{text}")?;
        Ok(())
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> CliError {
    CliError::Invalid(msg.into())
}

fn parse_prefix(s: &str, what: &str) -> Result<IdPrefix, CliError> {
    IdPrefix::parse(s).map_err(|e| invalid(format!("{what} {s:?}: {e}")))
}

fn one<T: std::fmt::Display + Copy>(found: Vec<T>, s: &str, what: &str) -> Result<T, CliError> {
    match found.as_slice() {
        [] => Err(CliError::NotFound(format!("no {what} with id {s}"))),
        [only] => Ok(*only),
        many => Err(invalid(format!(
            "{what} id prefix {s} is ambiguous: it matches {}{}; give more digits",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if many.len() >= CANDIDATES {
                ", …"
            } else {
                ""
            }
        ))),
    }
}

/// The contact a full id or unique prefix names (deleted contacts included).
pub fn find_contact(r: &Replica, s: &str) -> Result<ContactId, CliError> {
    let prefix = parse_prefix(s, "contact")?;
    one(r.contacts_matching(&prefix, CANDIDATES)?, s, "contact")
}

fn find_op(r: &Replica, s: &str) -> Result<OpId, CliError> {
    let prefix = parse_prefix(s, "op")?;
    one(r.ops_matching(&prefix, CANDIDATES)?, s, "op")
}

fn find_author(r: &Replica, s: &str) -> Result<DeviceId, CliError> {
    let prefix = parse_prefix(s, "device")?;
    let found: Vec<DeviceId> = r
        .summary()
        .keys()
        .filter(|a| a.matches(&prefix))
        .copied()
        .collect();
    one(found, s, "device")
}

/// The peer a device id or a unique prefix of a known peer (one this replica synced with)
/// names. A full id needs no history: a device never synced with has acknowledged nothing.
fn find_peer(r: &Replica, s: &str) -> Result<DeviceId, CliError> {
    let id = match s.parse::<DeviceId>() {
        Ok(id) => id,
        Err(_) => {
            let prefix = parse_prefix(s, "peer")?;
            let found: Vec<DeviceId> = r
                .peers()?
                .iter()
                .map(|p| p.id)
                .filter(|id| id.matches(&prefix))
                .collect();
            one(found, s, "peer").map_err(|e| match e {
                CliError::NotFound(text) => CliError::NotFound(format!(
                    "{text} among the peers this replica synced with (`cardlog status` lists \
                     them; a full device id is accepted for any device)"
                )),
                other => other,
            })?
        }
    };
    if id == r.id() {
        return Err(invalid(format!("{id} is this replica itself, not a peer")));
    }
    Ok(id)
}

/// Splits `[LABEL=]VALUE`. A label is a short word (letters, digits, space, `-`, `_`); anything
/// else before the first `=` belongs to the value (URLs with queries, `+` numbers).
fn labelled(s: &str) -> (String, String) {
    if let Some((label, value)) = s.split_once('=') {
        if !label.is_empty()
            && label.len() <= 32
            && label
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        {
            return (label.to_owned(), value.to_owned());
        }
    }
    (String::new(), s.to_owned())
}

/// `STREET;CITY;REGION;CODE;COUNTRY` (fewer parts leave the rest empty).
fn address(s: &str) -> Result<PostalAddress, CliError> {
    let parts: Vec<&str> = s.split(';').map(str::trim).collect();
    if parts.len() > 5 {
        return Err(invalid(format!(
            "address {s:?} has {} parts; expected STREET;CITY;REGION;CODE;COUNTRY",
            parts.len()
        )));
    }
    let part = |i: usize| parts.get(i).copied().unwrap_or_default().to_owned();
    Ok(PostalAddress {
        street: part(0),
        locality: part(1),
        region: part(2),
        code: part(3),
        country: part(4),
        ..PostalAddress::default()
    })
}

fn item_body(kind: ItemKind, s: &str) -> Result<ItemBody, CliError> {
    Ok(match kind {
        ItemKind::Address => ItemBody::Address(Box::new(address(s)?)),
        _ => ItemBody::Text(s.to_owned()),
    })
}

fn new_item(kind: ItemKind, spec: &str) -> Result<Item, CliError> {
    let (label, value) = labelled(spec);
    if value.trim().is_empty() {
        return Err(invalid(format!("{} {spec:?} has no value", kind.name())));
    }
    Ok(Item {
        id: ItemId::random().map_err(|e| CliError::Failed(e.to_string()))?,
        label,
        body: item_body(kind, &value)?,
    })
}

// ---- init, add, set, rm, restore ---------------------------------------------------------

/// `cardlog add`.
pub fn add(ctx: &Ctx, a: &AddArgs) -> Res {
    let mut c = Contact::random().map_err(|e| CliError::Failed(e.to_string()))?;
    for (field, value) in [
        (Field::Given, &a.given),
        (Field::Family, &a.family),
        (Field::Middle, &a.middle),
        (Field::Prefix, &a.prefix),
        (Field::Suffix, &a.suffix),
        (Field::Nickname, &a.nickname),
        (Field::FormattedName, &a.formatted_name),
        (Field::Org, &a.org),
        (Field::Department, &a.department),
        (Field::Title, &a.title),
        (Field::Birthday, &a.birthday),
        (Field::Anniversary, &a.anniversary),
        (Field::Note, &a.note),
    ] {
        if let Some(v) = value {
            c.set(field, v.clone());
        }
    }
    for (kind, specs) in [
        (ItemKind::Phone, &a.phone),
        (ItemKind::Email, &a.email),
        (ItemKind::Url, &a.url),
        (ItemKind::Address, &a.address),
    ] {
        for spec in specs {
            let item = new_item(kind, spec)?;
            c.items_mut(kind).push(item);
        }
    }
    for tag in &a.tag {
        c.tags.insert(tag.clone());
    }
    for spec in &a.custom {
        let (name, value) = spec
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| invalid(format!("custom field {spec:?}: expected NAME=VALUE")))?;
        c.custom.insert(name.to_owned(), value.to_owned());
    }
    // `to_changes` lists the contact's values only (the `exists` write is added when saving).
    if c.to_changes()
        .map_err(|e| invalid(e.to_string()))?
        .is_empty()
    {
        return Err(invalid(
            "a contact needs at least one value (e.g. --given NAME); see `cardlog add --help`",
        ));
    }
    let mut r = ctx.open()?;
    r.add_contact(&c)?;
    outln!("{}", c.id)?;
    Ok(())
}

/// One parsed `cardlog set` assignment.
enum Assign {
    Field(Field, Option<String>),
    ItemSet(ItemKind, ItemId, String),
    ItemAdd(ItemKind, Item),
    ItemRemove(ItemKind, ItemId),
    TagAdd(String),
    TagRemove(String),
    Custom(String, Option<String>),
}

fn find_item(c: &Contact, kind: ItemKind, prefix: &str) -> Result<ItemId, CliError> {
    let p = parse_prefix(prefix, kind.name())?;
    let found: Vec<ItemId> = c
        .items(kind)
        .iter()
        .map(|i| i.id)
        .filter(|id| id.matches(&p))
        .collect();
    one(found, prefix, kind.name())
}

/// What `set` accepts, for error messages.
fn assignment_forms() -> String {
    format!(
        "fields: {}; items: KIND+=[LABEL=]VALUE, KIND.ITEM=[LABEL=]VALUE, KIND-=ITEM with KIND \
         one of {}; tags: tag+=T, tag-=T; custom fields: custom.NAME=VALUE",
        Field::ALL.map(Field::name).join(", "),
        ItemKind::ALL.map(ItemKind::name).join(", ")
    )
}

/// Parses one assignment. The operator is found at the first `=`: `+=` and `-=` when the
/// character before it is `+` or `-`, else `=`. Everything after it is the value, so values
/// may contain `=`, `+=` and `-=` (`note=a+=b` sets the note to `a+=b`).
fn parse_assign(c: &Contact, s: &str) -> Result<Assign, CliError> {
    let (lhs, value) = s.split_once('=').ok_or_else(|| {
        invalid(format!(
            "{s:?} is not an assignment (no '='); {}",
            assignment_forms()
        ))
    })?;
    if let Some(key) = lhs.strip_suffix('+') {
        if key == "tag" {
            if value.is_empty() {
                return Err(invalid(format!("{s:?}: tag+= needs a tag name")));
            }
            return Ok(Assign::TagAdd(value.to_owned()));
        }
        let kind = ItemKind::from_name(key).ok_or_else(|| {
            invalid(format!(
                "{s:?}: {key:?} takes no +=; only tag and the item kinds (phone, email, \
                 address, url) do"
            ))
        })?;
        return Ok(Assign::ItemAdd(kind, new_item(kind, value)?));
    }
    if let Some(key) = lhs.strip_suffix('-') {
        if key == "tag" {
            return Ok(Assign::TagRemove(value.to_owned()));
        }
        let kind = ItemKind::from_name(key).ok_or_else(|| {
            invalid(format!(
                "{s:?}: {key:?} takes no -=; only tag and the item kinds (phone, email, \
                 address, url) do"
            ))
        })?;
        return Ok(Assign::ItemRemove(kind, find_item(c, kind, value)?));
    }
    let value = (!value.is_empty()).then(|| value.to_owned());
    if let Some(field) = Field::from_name(lhs) {
        return Ok(Assign::Field(field, value));
    }
    if lhs == "tag" {
        return Err(invalid(format!(
            "{s:?}: tags are added with tag+=T and removed with tag-=T"
        )));
    }
    if let Some(kind) = ItemKind::from_name(lhs) {
        return Err(invalid(format!(
            "{s:?}: {lhs} is a list; add with {lhs}+=[LABEL=]VALUE, change one with \
             {lhs}.ITEM=VALUE, remove one with {lhs}-=ITEM (ITEM: an id prefix from `cardlog \
             show`)",
            lhs = kind.name()
        )));
    }
    let unknown = || {
        invalid(format!(
            "{s:?}: unknown field {lhs:?}; {}",
            assignment_forms()
        ))
    };
    let (head, rest) = lhs.split_once('.').ok_or_else(unknown)?;
    if head == "custom" {
        if rest.is_empty() {
            return Err(invalid(format!("{s:?}: custom.NAME needs a name")));
        }
        return Ok(Assign::Custom(rest.to_owned(), value));
    }
    let kind = ItemKind::from_name(head).ok_or_else(unknown)?;
    let id = find_item(c, kind, rest)?;
    match value {
        Some(v) => Ok(Assign::ItemSet(kind, id, v)),
        None => Ok(Assign::ItemRemove(kind, id)),
    }
}

fn apply_assign(c: &mut Contact, a: Assign) -> Result<(), CliError> {
    match a {
        Assign::Field(f, Some(v)) => {
            c.set(f, v);
        }
        Assign::Field(f, None) => {
            c.fields.remove(&f);
        }
        Assign::ItemSet(kind, id, spec) => {
            let (label, value) = labelled(&spec);
            if value.trim().is_empty() {
                return Err(invalid(format!(
                    "{}.{}={spec}: no value (to remove the item, write {}-={})",
                    kind.name(),
                    render::short(&id),
                    kind.name(),
                    render::short(&id)
                )));
            }
            let body = item_body(kind, &value)?;
            if let Some(item) = c.items_mut(kind).iter_mut().find(|i| i.id == id) {
                if !label.is_empty() {
                    item.label = label;
                }
                item.body = body;
            }
        }
        Assign::ItemAdd(kind, item) => c.items_mut(kind).push(item),
        Assign::ItemRemove(kind, id) => {
            c.remove_item(kind, id);
        }
        Assign::TagAdd(t) => {
            c.tags.insert(t);
        }
        Assign::TagRemove(t) => {
            c.tags.remove(&t);
        }
        Assign::Custom(name, Some(v)) => {
            c.custom.insert(name, v);
        }
        Assign::Custom(name, None) => {
            c.custom.remove(&name);
        }
    }
    Ok(())
}

/// `cardlog set`.
pub fn set(ctx: &Ctx, id: &str, changes: &[String]) -> Res {
    let mut r = ctx.open()?;
    let id = find_contact(&r, id)?;
    let view = r
        .contact(&id)?
        .ok_or(CliError::NotFound(format!("no contact {id}")))?;
    if view.deleted {
        return Err(invalid(format!(
            "contact {id} is deleted; `cardlog restore {}` first",
            render::short(&id)
        )));
    }
    let mut edited = view.contact.clone();
    for s in changes {
        let assign = parse_assign(&edited, s)?;
        apply_assign(&mut edited, assign)?;
    }
    match r.edit(id, |c| *c = edited)? {
        Some(op) if ctx.json => ctx
            .print_json(&json!({"contact": id.to_string(), "op": op.to_string(), "changed": true})),
        Some(op) => {
            outln!("saved op {op}")?;
            Ok(())
        }
        None if ctx.json => {
            ctx.print_json(&json!({"contact": id.to_string(), "op": null, "changed": false}))
        }
        None => {
            outln!("nothing changed")?;
            Ok(())
        }
    }
}

/// `cardlog rm`.
pub fn rm(ctx: &Ctx, id: &str) -> Res {
    let mut r = ctx.open()?;
    let id = find_contact(&r, id)?;
    if r.contact(&id)?.is_some_and(|v| v.deleted) {
        return Err(invalid(format!("contact {id} is already deleted")));
    }
    let op = r.delete(id)?;
    if ctx.json {
        return ctx.print_json(&json!({"contact": id.to_string(), "op": op.to_string()}));
    }
    outln!(
        "deleted {id} (op {op}); `cardlog restore {}` undoes it",
        render::short(&id)
    )
}

/// `cardlog restore`.
pub fn restore(ctx: &Ctx, id: &str) -> Res {
    let mut r = ctx.open()?;
    let id = find_contact(&r, id)?;
    let op = r.restore(id)?;
    if ctx.json {
        return ctx.print_json(&json!({"contact": id.to_string(), "op": op.to_string()}));
    }
    outln!("restored {id} (op {op})")
}

// ---- show, list, history, conflicts, resolve ---------------------------------------------

fn view(r: &Replica, id: &str) -> Result<ContactView, CliError> {
    let id = find_contact(r, id)?;
    r.contact(&id)?
        .ok_or_else(|| CliError::NotFound(format!("no contact {id}")))
}

/// `cardlog show`.
pub fn show(ctx: &Ctx, id: &str) -> Res {
    let r = ctx.open_to_read()?;
    let v = view(&r, id)?;
    let marks = Marks::of_conflicts(&r, &v)?;
    if ctx.json {
        return ctx.print_json(&render::contact_json(&v, &Names::of(&r), &marks));
    }
    out!("{}", render::contact_text(&v, &Names::of(&r), &marks))?;
    Ok(())
}

/// The page cache `list` opens the store with (the name index's database gets a quarter).
const LIST_CACHE_BYTES: u64 = 4 << 20;

/// `cardlog list`: rows in display-name order, read from the name index (`Replica::each_row`);
/// a search or `--json` reads each listed contact whole.
pub fn list(ctx: &Ctx, search: Option<&str>, deleted: bool, needs_sync: Option<&str>) -> Res {
    // A list reads each index page (and each contact) once: a small page cache costs it no
    // time, and the pages read do not stay (docs/PERFORMANCE.md).
    let r = ctx.open_to_read_with(Options {
        cache_bytes: LIST_CACHE_BYTES,
        ..ctx.options()
    })?;
    let unacked = match needs_sync {
        Some(peer) => Some(r.needs_sync(&find_peer(&r, peer)?)?),
        None => None,
    };
    let unacked_only = |row: &ContactRow| unacked.as_ref().is_none_or(|u| u.contains(&row.id));
    // The contact behind a row when a search or the JSON needs it whole: `None` when the
    // search does not keep it.
    let whole = |row: &ContactRow| -> Result<Option<ContactView>, CliError> {
        let v = r.contact(&row.id)?.ok_or_else(|| {
            CliError::Corrupt(format!(
                "the name index lists contact {}, which the store lacks (run cardlog rebuild)",
                row.id
            ))
        })?;
        Ok(search.is_none_or(|s| v.contact.matches(s)).then_some(v))
    };
    let mut failed: Option<CliError> = None;
    let mut shown = 0usize;
    if ctx.json {
        let names = Names::of(&r);
        let scanned = r.each_row(deleted, |row| {
            if !unacked_only(&row) {
                return ControlFlow::Continue(());
            }
            let item = whole(&row).and_then(|v| {
                let Some(v) = v else { return Ok(false) };
                let marks = Marks::of_conflicts(&r, &v)?;
                ctx.print_json_item(&render::contact_json(&v, &names, &marks), shown == 0)?;
                Ok(true)
            });
            match item {
                Ok(printed) => {
                    shown += usize::from(printed);
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            }
        });
        // An error midway still closes the array, so what was printed parses; the exit
        // status says it is not all.
        ctx.end_json_array(shown == 0)?;
        scanned?;
        return failed.map_or(Ok(()), Err);
    }
    // One pass over the name index where every row is shown: the column widths are counts
    // the index keeps (`Replica::row_widths`). Otherwise two: the first finds the rows to show
    // and their widths, the second prints them. Memory is the index scan's, not the listing's
    // text; a search keeps the ids it matched (16 bytes each) so that the second pass does
    // not search again. (A store without its index lists by reading every contact, on each
    // pass.)
    let kept = match (search, &unacked) {
        (None, None) => r.row_widths(deleted)?,
        _ => None,
    };
    if let Some(widths) = kept {
        return print_rows(&r, deleted, widths, |_| true);
    }
    let mut widths = RowWidths::default();
    let mut matched: Option<HashSet<ContactId>> = search.map(|_| HashSet::new());
    r.each_row(deleted, |row| {
        if !unacked_only(&row) {
            return ControlFlow::Continue(());
        }
        if let Some(matched) = &mut matched {
            match whole(&row) {
                Ok(Some(_)) => {
                    matched.insert(row.id);
                }
                Ok(None) => return ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
            }
        }
        widths.fit(&row);
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    print_rows(&r, deleted, widths, |row| match &matched {
        Some(matched) => matched.contains(&row.id),
        None => unacked_only(row),
    })
}

/// `list`'s rows that `shown` keeps, aligned to `widths` (of exactly those rows), in one pass
/// over the name index; "no contacts" when there are none.
fn print_rows(
    r: &Replica,
    deleted: bool,
    widths: RowWidths,
    shown: impl Fn(&ContactRow) -> bool,
) -> Res {
    if widths.rows == 0 {
        eprintln!("no contacts");
        return Ok(());
    }
    let mut failed: Option<CliError> = None;
    let mut lines = Lines::new(widths);
    r.each_row(deleted, |row| {
        if shown(&row) {
            if let Err(e) = lines.push(&row) {
                failed = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    lines.finish()
}

/// `list`'s rows printed aligned to [`RowWidths`] known before, in writes of about 64 KiB (not
/// one per line).
struct Lines {
    widths: RowWidths,
    out: String,
}

impl Lines {
    const CHUNK: usize = 1 << 16;

    fn new(widths: RowWidths) -> Lines {
        Lines {
            widths,
            out: String::with_capacity(Self::CHUNK + 1024),
        }
    }

    fn push(&mut self, row: &ContactRow) -> Res {
        use std::fmt::Write as _;
        let out = &mut self.out;
        let line_start = out.len();
        // The short id (`render::short`): the first four bytes in hex, without formatting
        // all sixteen into a string first.
        for b in row.id.0.iter().take(4) {
            let _ = write!(out, "{b:02x}");
        }
        let (name, name_width) = (&row.name, self.widths.name);
        let first = row.phone_or_email.as_deref().unwrap_or_default();
        let first_width = self.widths.first;
        let _ = write!(out, "  {name:<name_width$}  {first:<first_width$}  ");
        if row.deleted {
            out.push_str("[deleted]");
        }
        if row.conflicts > 0 {
            if row.deleted {
                out.push(' ');
            }
            let _ = write!(out, "[{} conflict(s)]", row.conflicts);
        }
        let kept = out[line_start..].trim_end().len();
        out.truncate(line_start + kept);
        out.push('\n');
        if out.len() >= Self::CHUNK {
            out!("{out}")?;
            out.clear();
        }
        Ok(())
    }

    fn finish(&mut self) -> Res {
        if !self.out.is_empty() {
            out!("{}", self.out)?;
            self.out.clear();
        }
        Ok(())
    }
}

/// The paths of a contact a path argument names: a path in its display form (`org`,
/// `phone/ITEM`, `tag/NAME`, `custom/NAME`, `exists`), the dotted form `set` and `show` use
/// (`phone.ITEM`, `custom.NAME`), item ids as unique prefixes. Empty when the contact never had
/// the path.
fn select_paths(paths: Vec<Path>, arg: &str) -> Result<Vec<Path>, CliError> {
    let slashed = match arg.split_once('.') {
        Some((head, rest))
            if !arg.contains('/')
                && (matches!(head, "tag" | "custom") || ItemKind::from_name(head).is_some()) =>
        {
            format!("{head}/{rest}")
        }
        _ => arg.to_owned(),
    };
    let not_a_path = match slashed.parse::<Path>() {
        Ok(exact) => return Ok(paths.into_iter().filter(|p| *p == exact).collect()),
        Err(e) => e,
    };
    let (head, rest) = slashed
        .split_once('/')
        .ok_or_else(|| invalid(not_a_path.to_string()))?;
    let kind = ItemKind::from_name(head).ok_or_else(|| invalid(not_a_path.to_string()))?;
    let prefix = parse_prefix(rest, kind.name())?;
    let found: Vec<Path> = paths
        .into_iter()
        .filter(|p| matches!(p, Path::Item(k, id) if *k == kind && id.matches(&prefix)))
        .collect();
    if found.len() > 1 {
        return Err(invalid(format!(
            "{} item id prefix {rest} is ambiguous: it matches {}; give more digits",
            kind.name(),
            found
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(found)
}

/// `cardlog history`.
pub fn history(ctx: &Ctx, id: &str, path: Option<&str>) -> Res {
    let r = ctx.open_to_read()?;
    let id = find_contact(&r, id)?;
    let mut all = r.contact_history(&id)?;
    let names = Names::of(&r);
    if let Some(arg) = path {
        let wanted = select_paths(all.iter().map(|(p, _)| p.clone()).collect(), arg)?;
        if wanted.is_empty() {
            return Err(CliError::NotFound(format!(
                "contact {id} has no path {arg}"
            )));
        }
        all.retain(|(p, _)| wanted.contains(p));
    }
    if ctx.json {
        let out: Vec<serde_json::Value> = all
            .iter()
            .map(|(p, versions)| {
                let marks = Marks::of_history(&r, versions);
                json!({"path": p.to_string(), "versions": versions.iter().map(|v| render::version_json(v, &names, &marks)).collect::<Vec<_>>()})
            })
            .collect();
        return ctx.print_json(&json!({"contact": id.to_string(), "paths": out}));
    }
    // One value column for the whole output, capped so one long note does not push every
    // line far right.
    let width = all
        .iter()
        .flat_map(|(_, versions)| versions)
        .map(|v| render::value_text(v.value.as_ref()).chars().count())
        .max()
        .unwrap_or(0)
        .min(VALUE_WIDTH_MAX);
    for (p, versions) in &all {
        outln!("{p}")?;
        let marks = Marks::of_history(&r, versions);
        for v in versions {
            let replaces = if v.replaces.is_empty() {
                "new".to_owned()
            } else {
                format!(
                    "replaces {}",
                    v.replaces
                        .iter()
                        .map(render::short)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            outln!(
                "  {}  {}  by {}  op {}  {:<width$}  {replaces}{}",
                if v.head { "*" } else { " " },
                render::time(v.hlc),
                names.by(&v.author),
                render::short(&v.op),
                render::value_text(v.value.as_ref()),
                marks.text(&v.op),
            )?;
        }
    }
    Ok(())
}

/// `cardlog conflicts`.
pub fn conflicts(ctx: &Ctx) -> Res {
    let r = ctx.open_to_read()?;
    let all = r.conflicts()?;
    let names = Names::of(&r);
    if ctx.json {
        let mut out: Vec<serde_json::Value> = Vec::with_capacity(all.len());
        for (c, f) in &all {
            let marks = Marks::of_paths(&r, c, [&f.path])?;
            let mut j = render::conflict_json(f, &names, &marks);
            if let Some(obj) = j.as_object_mut() {
                obj.insert("contact".into(), json!(c.to_string()));
            }
            out.push(j);
        }
        return ctx.print_json(&serde_json::Value::Array(out));
    }
    if all.is_empty() {
        outln!("no conflicts")?;
    }
    for (c, f) in &all {
        let name = r
            .contact(c)?
            .map(|v| v.contact.display_name())
            .unwrap_or_default();
        outln!("{}  {name}", render::short(c))?;
        let marks = Marks::of_paths(&r, c, [&f.path])?;
        out!("{}", render::conflict_text(&f.path, f, &names, &marks))?;
    }
    Ok(())
}

fn value_for(path: &Path, s: &str) -> Result<Value, CliError> {
    Ok(match path {
        Path::Exists => Value::Bool(match s {
            "true" => true,
            "false" => false,
            _ => return Err(invalid(format!("exists takes true or false, not {s:?}"))),
        }),
        Path::Field(_) | Path::Custom(_) => Value::Text(s.to_owned()),
        Path::Tag(_) => Value::Present,
        Path::Item(kind, _) => {
            let (label, value) = labelled(s);
            Value::Item(ItemValue {
                label,
                body: item_body(*kind, &value)?,
            })
        }
    })
}

/// `cardlog resolve`.
pub fn resolve(ctx: &Ctx, a: &ResolveArgs) -> Res {
    let mut r = ctx.open()?;
    let id = find_contact(&r, &a.id)?;
    let paths = select_paths(r.paths(&id)?, &a.path)?;
    let path = paths
        .into_iter()
        .next()
        .ok_or_else(|| CliError::NotFound(format!("contact {id} has no path {}", a.path)))?;
    let value = match (&a.keep, &a.value, a.remove) {
        (Some(op), None, false) => {
            let heads = r.heads(&id, &path)?;
            let prefix = parse_prefix(op, "op")?;
            let found: Vec<_> = heads.iter().filter(|h| h.key.op.matches(&prefix)).collect();
            match found.as_slice() {
                [one] => one.value.clone(),
                [] => {
                    return Err(CliError::NotFound(format!(
                    "no competing value of {path} was written by op {op} (see `cardlog conflicts`)"
                )))
                }
                _ => return Err(invalid(format!("op prefix {op} is ambiguous"))),
            }
        }
        (None, Some(v), false) => Some(value_for(&path, v)?),
        (None, None, true) => None,
        _ => {
            return Err(invalid(
                "give exactly one of --keep OP, --value VALUE or --remove",
            ))
        }
    };
    let op = r.resolve(id, path.clone(), value)?;
    if ctx.json {
        return ctx.print_json(&json!({
            "contact": id.to_string(),
            "path": path.to_string(),
            "op": op.to_string(),
        }));
    }
    outln!("resolved {path} of {} (op {op})", render::short(&id))
}

// ---- log, op, heads, status, stats --------------------------------------------------------

/// `cardlog log`.
pub fn log(ctx: &Ctx, a: &LogArgs) -> Res {
    let r = ctx.open_to_read()?;
    let author = a
        .author
        .as_deref()
        .map(|s| find_author(&r, s))
        .transpose()?;
    let contact = a
        .contact
        .as_deref()
        .map(|s| find_contact(&r, s))
        .transpose()?;
    let names = Names::of(&r);
    let mut out = Vec::new();
    for (order, op) in r.ops().enumerate() {
        let op = op?;
        let o = op.op();
        if author.is_some_and(|x| x != o.author)
            || a.from.is_some_and(|f| o.seq < f)
            || a.to.is_some_and(|t| o.seq > t)
            || contact.is_some_and(|c| !o.writes.iter().any(|w| w.contact == c))
        {
            continue;
        }
        if ctx.json {
            let mut j = render::op_json(&op, &names);
            if let Some(obj) = j.as_object_mut() {
                obj.insert("order".into(), json!(order));
            }
            out.push(j);
        } else if o.is_membership() {
            let changes: Vec<String> = o.members.iter().map(render::member_text).collect();
            outln!(
                "{order:>6}  {}  {}#{:<4}  op {}  {}{}",
                render::time(o.hlc),
                render::short(&o.author),
                o.seq,
                render::short(&op.id()),
                changes.join("; "),
                by_name(&names, &o.author)
            )?;
        } else {
            let contacts: std::collections::BTreeSet<_> =
                o.writes.iter().map(|w| render::short(&w.contact)).collect();
            let paths: Vec<String> = o.writes.iter().map(|w| w.path.to_string()).collect();
            outln!(
                "{order:>6}  {}  {}#{:<4}  op {}  {} write(s) to {}: {}{}",
                render::time(o.hlc),
                render::short(&o.author),
                o.seq,
                render::short(&op.id()),
                o.writes.len(),
                contacts.into_iter().collect::<Vec<_>>().join(","),
                paths.join(" "),
                by_name(&names, &o.author)
            )?;
        }
    }
    if ctx.json {
        return ctx.print_json(&serde_json::Value::Array(out));
    }
    Ok(())
}

/// `  (by NAME)` after a log line, for an author with a name.
fn by_name(names: &Names, author: &cardlog::DeviceId) -> String {
    names
        .get(author)
        .map(|n| format!("  (by {n})"))
        .unwrap_or_default()
}

/// `cardlog op`.
pub fn op(ctx: &Ctx, id: &str) -> Res {
    let r = ctx.open_to_read()?;
    let id = find_op(&r, id)?;
    let op = r
        .op(&id)?
        .ok_or_else(|| CliError::NotFound(format!("no op {id}")))?;
    // The store re-decodes and re-hashes the bytes on every read; say so explicitly.
    let id_ok = op.id() == id && cardlog::OpId::of_bytes(op.bytes()) == id;
    if ctx.json {
        let mut j = render::op_json(&op, &Names::of(&r));
        if let Some(obj) = j.as_object_mut() {
            obj.insert("id_ok".into(), json!(id_ok));
        }
        return ctx.print_json(&j);
    }
    let o = op.op();
    outln!("op      {}", op.id())?;
    outln!(
        "id      {}",
        if id_ok {
            "ok (hash of the bytes)"
        } else {
            "MISMATCH"
        }
    )?;
    outln!("author  {}", o.author)?;
    outln!("seq     {}", o.seq)?;
    outln!(
        "prev    {}",
        o.prev.map_or("(first op)".to_owned(), |p| p.to_string())
    )?;
    outln!("time    {}  (hlc {})", render::time(o.hlc), o.hlc)?;
    outln!("bytes   {}", op.bytes().len())?;
    outln!("writes  {}", o.writes.len())?;
    let rows: Vec<(String, String, String)> = o
        .writes
        .iter()
        .map(|w| {
            (
                w.path.to_string(),
                render::value_text(w.value.as_ref()),
                w.replaces
                    .iter()
                    .map(render::short)
                    .collect::<Vec<_>>()
                    .join(","),
            )
        })
        .collect();
    let path_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .min(VALUE_WIDTH_MAX);
    for (w, (path, value, replaces)) in o.writes.iter().zip(&rows) {
        outln!(
            "  {}  {path:<path_width$}  {value:<value_width$}  replaces [{replaces}]",
            render::short(&w.contact),
        )?;
    }
    Ok(())
}

/// `cardlog summary` (alias `heads`).
pub fn summary(ctx: &Ctx) -> Res {
    let r = ctx.open_to_read()?;
    if ctx.json {
        let out: Vec<serde_json::Value> = r
            .summary()
            .iter()
            .map(|(a, h)| json!({"author": a.to_string(), "seq": h.seq, "op": h.op.to_string(), "time": render::time(h.hlc)}))
            .collect();
        return ctx.print_json(&serde_json::Value::Array(out));
    }
    for (a, h) in r.summary() {
        let me = if *a == r.id() { "  (this replica)" } else { "" };
        outln!(
            "{a}  seq {:<6}  op {}  {}{me}",
            h.seq,
            h.op,
            render::time(h.hlc)
        )?;
    }
    Ok(())
}

/// `cardlog status`.
pub fn status(ctx: &Ctx) -> Res {
    let r = ctx.open_to_read()?;
    // Counted one contact at a time: memory stays flat in the store's size.
    let (mut live, mut deleted) = (0usize, 0usize);
    r.each_contact(true, |v| {
        if v.deleted {
            deleted += 1;
        } else {
            live += 1;
        }
        ControlFlow::Continue(())
    })?;
    let conflicts = r.conflicts()?.len();
    let now = ctx.wall.now_ms();
    let bound = r.clock().skew_bound_ms();
    let ahead: Vec<(DeviceId, u64)> = r
        .summary()
        .iter()
        .filter(|(a, h)| **a != r.id() && h.hlc.wall_ms > now.saturating_add(bound))
        .map(|(a, h)| (*a, h.hlc.wall_ms - now))
        .collect();
    let former = r.former_ids()?;
    let peers = r
        .peers()?
        .into_iter()
        .map(|p| Ok((r.needs_sync(&p.id)?.len(), p)))
        .collect::<Result<Vec<_>, CliError>>()?;
    let forks = r.forks()?;
    let restored = r.is_restored()?;
    let calibration = r.last_calibration()?;
    let paired = r.paired()?;
    // This device's standing in its book: its role, or none until an admin's op admits it.
    let me = r
        .members()
        .into_iter()
        .find(|(d, _)| *d == r.id())
        .map(|(_, m)| m);
    let role = me.as_ref().map(|m| {
        if m.removed.is_some() {
            "removed"
        } else {
            m.role.name()
        }
    });
    if ctx.json {
        return ctx.print_json(&json!({
            "replica": r.id().to_string(),
            "device": r.id().to_string(),
            "book": r.book().to_string(),
            "role": role,
            "paired": paired.as_ref().map(render::pairing_json),
            "previous_replica": r.previous_id().map(|p| p.to_string()),
            "restored": restored,
            "former_replicas": former.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "store": ctx.dir,
            "ops": r.op_count(),
            "authors": r.summary().len(),
            "contacts": live,
            "deleted": deleted,
            "conflicts": conflicts,
            "clock": r.clock().last().to_string(),
            "skew": ahead.iter().map(|(a, ms)| json!({"author": a.to_string(), "ahead_ms": ms})).collect::<Vec<_>>(),
            "peers": peers.iter().map(|(n, p)| json!({
                "peer": p.id.to_string(),
                "last_sync": render::time_ms(p.last_ms),
                "needs_sync": n,
            })).collect::<Vec<_>>(),
            "forks": forks.iter().map(render::fork_json).collect::<Vec<_>>(),
            "calibration": calibration.as_ref().map(render::calibration_json),
        }));
    }
    // Forks first and loud: they mean a device was restored from a backup and wrote again.
    for f in &forks {
        outln!("{}", render::fork_text(f, "at a peer"))?;
    }
    if !forks.is_empty() {
        outln!("{}", render::FORK_HINT)?;
    }
    if restored {
        outln!("{}", render::RESTORED_TEXT)?;
    }
    outln!("replica    {}", r.id())?;
    for p in &former {
        outln!("           (this store was copied or restored; it wrote as {p} before)")?;
    }
    outln!("book       {}", r.book())?;
    outln!(
        "role       {}",
        role.unwrap_or("none yet (an admin adds this device with `cardlog members add`)")
    )?;
    if let Some(p) = &paired {
        match &p.addr {
            Some(addr) => outln!("paired     {} at {addr}", p.device)?,
            None => outln!("paired     {}", p.device)?,
        }
    }
    outln!("store      {}", ctx.dir.display())?;
    outln!("ops        {}", r.op_count())?;
    outln!("authors    {}", r.summary().len())?;
    outln!("contacts   {live} ({deleted} deleted)")?;
    outln!("conflicts  {conflicts}")?;
    outln!("clock      {}", r.clock().last())?;
    for (a, ms) in &ahead {
        outln!(
            "skew       device {} writes {}s ahead of this clock (bound {}s)",
            render::short(a),
            ms / 1000,
            bound / 1000
        )?;
    }
    for (n, p) in &peers {
        outln!(
            "peer       {}  last sync {}  {}",
            p.id,
            render::time_ms(p.last_ms),
            match n {
                0 => "in sync".to_owned(),
                n => format!("{n} contact(s) need sync"),
            }
        )?;
    }
    if let Some(c) = &calibration {
        outln!(
            "calibrated offset {:+} ms, round trip {} ms, to peer {} at {}",
            c.offset_ms,
            c.rtt_ms,
            c.peer,
            render::time_ms(c.at_ms)
        )?;
        if !c.in_force {
            outln!(
                "           no longer applied: the clock was set since (or it is too old to \
                 tell); saves use the clock as it reads until the next sync with the relay"
            )?;
        } else if c.beyond_bound {
            outln!(
                "warning    this device's clock was {} s off the relay's at the last sync (more \
                 than the {} s bound): set it right",
                c.offset_ms.unsigned_abs() / 1000,
                bound / 1000
            )?;
        }
    }
    Ok(())
}

/// `cardlog stats`.
pub fn stats(ctx: &Ctx) -> Res {
    let r = ctx.open_to_read()?;
    let mut per: BTreeMap<DeviceId, (u64, u64, u64)> = BTreeMap::new();
    for op in r.ops() {
        let op = op?;
        let e = per.entry(op.op().author).or_default();
        e.0 += 1;
        e.1 += op.bytes().len() as u64;
        e.2 += op.op().writes.len() as u64;
    }
    let size = cardlog::dir_bytes(&ctx.dir);
    if ctx.json {
        let authors: Vec<serde_json::Value> = per
            .iter()
            .map(|(a, (n, b, w))| json!({"author": a.to_string(), "ops": n, "bytes": b, "writes": w}))
            .collect();
        return ctx.print_json(&json!({
            "ops": r.op_count(),
            "op_bytes": per.values().map(|v| v.1).sum::<u64>(),
            "store_bytes": size,
            "authors": authors,
        }));
    }
    outln!(
        "{:<32}  {:>8}  {:>10}  {:>8}",
        "author",
        "ops",
        "bytes",
        "writes"
    )?;
    for (a, (n, b, w)) in &per {
        outln!("{a}  {n:>8}  {b:>10}  {w:>8}")?;
    }
    outln!(
        "total ops {}, op bytes {}, store on disk {} bytes",
        r.op_count(),
        per.values().map(|v| v.1).sum::<u64>(),
        size
    )?;
    Ok(())
}

// ---- verify, rebuild ------------------------------------------------------------------------

/// A progress bar on stderr when it is a terminal and the output is for people; otherwise
/// nothing (piped output stays clean).
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn update(&self, p: cardlog::Progress) {
        if let Some(bar) = &self.0 {
            bar.set_length(p.total);
            bar.set_position(p.done);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

fn progress_bar(ctx: &Ctx, what: &str) -> Bar {
    use std::io::IsTerminal;
    if ctx.json || !std::io::stderr().is_terminal() {
        return Bar(None);
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {percent}% ({eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    Bar(Some(bar))
}

/// Shows the progress of `r`'s next sync or import on stderr when it is a terminal and the
/// output is for people (ops received of those the peer announced, ops sent, bytes both
/// ways); returns the bar to clear when done.
pub(crate) fn show_sync_progress(
    ctx: &Ctx,
    r: &mut cardlog::Replica,
    what: &str,
) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if ctx.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} ops in, {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_owned());
    let shown = bar.clone();
    r.set_progress(Some(Box::new(move |p: &cardlog::SyncProgress| {
        shown.set_length(p.expected_ops.unwrap_or(0).max(p.received_ops));
        shown.set_position(p.received_ops);
        shown.set_message(format!(
            "{} ops out, {} in / {} out",
            p.sent_ops,
            indicatif::HumanBytes(p.bytes_received),
            indicatif::HumanBytes(p.bytes_sent)
        ));
    })));
    Some(bar)
}

/// `cardlog verify`.
pub fn verify(ctx: &Ctx) -> Res {
    let r = ctx.open()?;
    let bar = progress_bar(ctx, "verifying");
    let report = r.verify_with(&mut |p| bar.update(p));
    bar.finish();
    let report = report?;
    if ctx.json {
        ctx.print_json(&render::to_json(&report))?;
    } else if report.is_ok() {
        outln!(
            "ok: {} ops from {} device(s) re-hashed, chains intact, {} registers match the log",
            report.ops,
            report.authors,
            report.registers
        )?;
    }
    match report.problems.first() {
        None => Ok(()),
        Some(first) => Err(CliError::Corrupt(format!(
            "store not intact ({} problem(s)); first: {first}; `cardlog rebuild` rewrites the \
             state from the log (`cardlog repair` where the log itself is damaged)",
            report.problems.len()
        ))),
    }
}

/// `cardlog repair`.
pub fn repair(ctx: &Ctx) -> Res {
    if ctx.read_only {
        return Err(invalid(
            "repair builds a new database and may cut the op log: it cannot run --read-only",
        ));
    }
    let report = cardlog::Replica::repair(&ctx.dir, ctx.options()).map_err(|e| match e {
        cardlog::Error::Open(e) => ctx.open_error(e),
        other => other.into(),
    })?;
    if ctx.json {
        ctx.print_json(&render::to_json(&report))?;
    } else {
        outln!("repaired: {} ops replayed into a new database", report.ops)?;
        if let Some(aside) = &report.set_aside {
            outln!("the old database is kept at {}", aside.display())?;
        }
        if !report.kept.is_empty() {
            outln!("kept from it: {}", report.kept.join(", "))?;
        }
        for lost in &report.lost {
            outln!("not kept: {lost}")?;
        }
        if let Some(d) = &report.log_damage {
            outln!(
                "the op log was damaged at byte {} ({}); it was cut there, its copy kept at {}",
                d.at,
                d.why,
                d.set_aside.display()
            )?;
            outln!(
                "past the damage: {} whole op(s) found, {} stored again, {} waiting for ops \
                 lost in the damage ({} of them written by this device){}",
                d.records_after,
                d.salvaged,
                d.waiting,
                d.own_waiting,
                if d.search_stopped {
                    "; the search stopped before the log's end"
                } else {
                    ""
                }
            )?;
            if d.waiting > 0 {
                outln!(
                    "sync with a device of the book (`cardlog sync`) to get back the ops lost in \
                     the damage; ops of this device that never synced exist only in the copy"
                )?;
            }
        }
    }
    match report.problems.first() {
        None => Ok(()),
        Some(first) => Err(CliError::Corrupt(format!(
            "repaired, but the store is not intact ({} problem(s)); first: {first}",
            report.problems.len()
        ))),
    }
}

/// `cardlog compact`.
pub fn compact(ctx: &Ctx) -> Res {
    if ctx.read_only {
        return Err(invalid(
            "compact writes a new database in place of the old: it cannot run --read-only",
        ));
    }
    let done = cardlog::Replica::compact(&ctx.dir, ctx.options()).map_err(|e| match e {
        cardlog::Error::Open(e) => ctx.open_error(e),
        other => other.into(),
    })?;
    if ctx.json {
        ctx.print_json(&render::to_json(&done))?;
    } else if done.journal {
        outln!("the database is a journal, which compacts itself: nothing to do")?;
    } else if done.kept {
        outln!(
            "the database is compact already: a copy took {} bytes against its {}, so it was \
             kept as it is; the op log is unchanged",
            done.copy_bytes,
            done.after
        )?;
    } else {
        let packed = match done.packed {
            0 => String::new(),
            n => format!(", {n} contact values packed"),
        };
        outln!(
            "compacted: database {} -> {} bytes ({} pairs, {} bytes of keys and values{packed}); \
             the op log is unchanged",
            done.before,
            done.after,
            done.pairs,
            done.live
        )?;
    }
    Ok(())
}

/// `cardlog rebuild`.
pub fn rebuild(ctx: &Ctx) -> Res {
    let mut r = ctx.open()?;
    let bar = progress_bar(ctx, "rebuilding");
    let n = r.rebuild_with(&mut |p| bar.update(p));
    bar.finish();
    let n = n?;
    if ctx.json {
        return ctx.print_json(&json!({"ops": n}));
    }
    outln!("rebuilt the state from {n} ops")?;
    Ok(())
}

// ---- vcard import, export ---------------------------------------------------------------------

fn outcome_name(o: &cardlog_vcard::Outcome) -> &'static str {
    use cardlog_vcard::Outcome;
    match o {
        Outcome::Created(_) => "created",
        Outcome::Updated(_) => "updated",
        Outcome::Unchanged(_) => "unchanged",
        Outcome::Skipped(_) => "skipped",
        Outcome::Rejected(_) => "rejected",
        _ => "other",
    }
}

fn outcome_contact(o: &cardlog_vcard::Outcome) -> Option<ContactId> {
    use cardlog_vcard::Outcome;
    match o {
        Outcome::Created(id)
        | Outcome::Updated(id)
        | Outcome::Unchanged(id)
        | Outcome::Skipped(id) => Some(*id),
        _ => None,
    }
}

/// `cardlog vcard import FILE`.
pub fn vcard_import(ctx: &Ctx, file: &FsPath, bulk: bool) -> Res {
    use std::io::Read;
    let mut input = Vec::new();
    let read = if file == FsPath::new("-") {
        std::io::stdin().read_to_end(&mut input).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut input).map(|_| ()))
    };
    read.map_err(|e| CliError::Failed(format!("cannot read {}: {e}", file.display())))?;
    let mut r = ctx.open()?;
    let bar = progress_bar(ctx, "importing");
    let report = cardlog_vcard::import_with(
        &mut r,
        &input,
        &cardlog_vcard::ImportOptions::bulk(bulk),
        &mut |p| bar.update(p),
    );
    bar.finish();
    let report = report.map_err(|e| match e {
        cardlog_vcard::ImportError::Replica { source, line } => {
            let inner = CliError::from(source);
            let text = format!("importing the card at line {line}: {inner}");
            match inner {
                CliError::Corrupt(_) => CliError::Corrupt(text),
                _ => CliError::Failed(text),
            }
        }
        other => CliError::Failed(other.to_string()),
    })?;
    let rejected: Vec<(usize, String)> = report
        .rejected()
        .map(|(line, e)| (line, e.to_string()))
        .collect();
    if ctx.json {
        ctx.print_json(&json!({
            "file": file,
            "cards": report.cards.len(),
            "created": report.created(),
            "updated": report.updated(),
            "unchanged": report.unchanged(),
            "skipped": report.skipped(),
            "rejected": rejected
                .iter()
                .map(|(line, reason)| json!({"line": line, "reason": reason}))
                .collect::<Vec<_>>(),
            "kept": report.kept,
            "warnings": report.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "contacts": report
                .cards
                .iter()
                .map(|c| json!({
                    "line": c.line,
                    "contact": outcome_contact(&c.outcome).map(|id| id.to_string()),
                    "outcome": outcome_name(&c.outcome),
                }))
                .collect::<Vec<_>>(),
        }))?;
    } else {
        outln!(
            "read {} card(s) from {}: {} created, {} updated, {} unchanged, {} skipped, {} \
             rejected; {} propert{} kept as custom fields",
            report.cards.len(),
            file.display(),
            report.created(),
            report.updated(),
            report.unchanged(),
            report.skipped(),
            rejected.len(),
            report.kept,
            if report.kept == 1 { "y" } else { "ies" }
        )?;
        for (line, reason) in &rejected {
            outln!("rejected: line {line}: {reason}")?;
        }
        for warning in &report.warnings {
            outln!("warning: {warning}")?;
        }
    }
    match rejected.len() {
        0 => Ok(()),
        n => Err(invalid(format!(
            "{n} of {} card(s) rejected (listed on stdout); the others were imported",
            report.cards.len()
        ))),
    }
}

/// `cardlog vcard export`.
pub fn vcard_export(ctx: &Ctx, out: Option<&FsPath>, version: &str, ids: &[String]) -> Res {
    let r = ctx.open_to_read()?;
    let version = match version {
        "3" => cardlog_vcard::Version::V3,
        _ => cardlog_vcard::Version::V4,
    };
    let ids = ids
        .iter()
        .map(|s| find_contact(&r, s))
        .collect::<Result<Vec<ContactId>, CliError>>()?;
    let text = cardlog_vcard::export(&r, &ids, version).map_err(|e| match e {
        cardlog_vcard::ExportError::NotFound(_) => CliError::NotFound(e.to_string()),
        cardlog_vcard::ExportError::Deleted(_) => invalid(e.to_string()),
        cardlog_vcard::ExportError::Replica(e) => e.into(),
        other => CliError::Failed(other.to_string()),
    })?;
    let Some(path) = out else {
        out!("{text}")?;
        return Ok(());
    };
    std::fs::write(path, &text)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    let cards = text.lines().filter(|l| *l == "BEGIN:VCARD").count();
    let version = match version {
        cardlog_vcard::Version::V3 => "3.0",
        _ => "4.0",
    };
    if ctx.json {
        return ctx.print_json(&json!({"contacts": cards, "out": path, "version": version}));
    }
    outln!(
        "exported {cards} contact(s) to {} (vCard {version})",
        path.display()
    )?;
    Ok(())
}
