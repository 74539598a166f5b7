//! The command line: global options and one subcommand per job (docs/CLI.md).

use std::path::PathBuf;

use cardlog::sync_layer::Quota;
use clap::{Args, Parser, Subcommand};

/// Contacts kept in an append-only, content-hashed op log that syncs between devices without
/// losing edits. Edit contacts in a local replica and look inside its log.
#[derive(Debug, Parser)]
#[command(
    name = "cardlog",
    version,
    propagate_version = true,
    after_help = "\
Getting started:
  cardlog init
  ID=$(cardlog add --given Ada --family Lovelace --phone \"mobile=+44 20 7946 0000\")
  cardlog set $ID org=\"Analytical Engines\" tag+=friends
  cardlog show $ID
  cardlog history $ID org

Between devices, over the network:
  cardlog serve --listen 0.0.0.0:7447     (on one)
  cardlog sync laptop.local:7447          (on the other)
or with files (sneakernet, a shared folder):
  cardlog summary --out phone.summary     (on the phone)
  cardlog export --since phone.summary --out for-phone.bundle   (on the laptop)
  cardlog import for-phone.bundle         (on the phone)

Ids (contacts, items, ops, devices) may be shortened to any unique prefix.

Environment:
  CARDLOG_STORE  the store directory when --store is not given
  CARDLOG_NOW    an RFC 3339 time (e.g. 2026-11-22T09:00:00Z) used instead of the clock

Exit codes: 0 ok, 1 other failure (also an unreachable or failing peer), 2 invalid input
(also a damaged or forged bundle), 3 not found, 4 store damaged.
Full reference: docs/CLI.md"
)]
pub struct Cli {
    /// The replica directory [default: $CARDLOG_STORE if set and not empty, else the user's
    /// data directory, e.g. ~/.local/share/cardlog]
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Print machine-readable JSON instead of text (shapes in docs/CLI.md; `add` prints its
    /// id either way)
    #[arg(long, global = true)]
    pub json: bool,

    /// Open the store from its op log alone, writing nothing (read commands do so by
    /// themselves where the disk is full, the mount read-only or the database damaged)
    #[arg(long, global = true)]
    pub read_only: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new replica (a new device key) in the store directory: founding a new address
    /// book, this device its first admin, or with --join, a device of an existing book
    Init(InitArgs),
    /// Print this device's id: what an admin needs to add it (`cardlog members add ID`)
    Device,
    /// Print the id of the address book this replica belongs to
    Book,
    /// List the members of the address book, or add or remove one
    ///
    /// Example: cardlog members add 3f9a… --name "Ada's iPad" --role write
    Members {
        /// add or remove; nothing lists the members
        #[command(subcommand)]
        change: Option<MembersCommand>,
    },
    /// Add a contact; prints only its new id
    ///
    /// Give at least one value. Items take an optional label before the first '=':
    /// --phone work=+15550100 is labelled "work"; a label is a short word of letters, digits,
    /// spaces, '-' and '_', anything else before the '=' is part of the value.
    ///
    /// Example: cardlog add --given Ada --family Lovelace --phone mobile=+442079460000
    /// --email ada@example.org --tag friends
    Add(Box<AddArgs>),
    /// Change fields, items and tags of a contact
    ///
    /// Each ASSIGNMENT is one of:
    ///   FIELD=VALUE               set a field: given, family, middle, prefix, suffix,
    ///                             nickname, org, department, title, birthday,
    ///                             anniversary, note, formatted_name
    ///   FIELD=                    clear the field
    ///   KIND+=[LABEL=]VALUE       add an item; KIND is phone, email, address or url
    ///   KIND.ITEM=[LABEL=]VALUE   change an item (ITEM: its id or a unique prefix, as
    ///                             `cardlog show` prints it); without a label the old
    ///                             label stays
    ///   KIND-=ITEM, KIND.ITEM=    remove an item
    ///   tag+=T, tag-=T            add or remove a tag
    ///   custom.NAME=VALUE         set a custom field (custom.NAME= removes it)
    /// An address VALUE is STREET;CITY;REGION;CODE;COUNTRY. All assignments are saved
    /// together as one op.
    ///
    /// Example: cardlog set 3f2a org="Example Corp" phone+=work=+15550100 tag-=old
    #[command(verbatim_doc_comment)]
    Set {
        /// Contact id or unique prefix
        id: String,
        /// Assignments, e.g. org="Example Corp" phone+=work=+15550100 tag-=old
        #[arg(required = true, value_name = "ASSIGNMENT")]
        changes: Vec<String>,
    },
    /// Delete a contact (it stays in history and can be restored)
    Rm {
        /// Contact id or unique prefix
        id: String,
    },
    /// Restore a deleted contact
    Restore {
        /// Contact id or unique prefix
        id: String,
    },
    /// Show one contact with its conflicts
    Show {
        /// Contact id or unique prefix
        id: String,
    },
    /// List contacts, optionally only those matching a search text
    List {
        /// Words that must all occur, ignoring case, in fields, items, tags or custom fields; a
        /// word of digits (+44-20-7946) also finds a phone number however it is written
        search: Option<String>,
        /// Include deleted contacts
        #[arg(long)]
        deleted: bool,
        /// Only contacts with changes held here that this peer has not acknowledged (a device
        /// id, or a unique prefix of a peer `cardlog status` lists)
        #[arg(long, value_name = "PEER")]
        needs_sync: Option<String>,
    },
    /// Who changed what, when, replacing what: every value of a contact's fields
    ///
    /// Each value is listed with its time, device and op; `*` marks the current value(s).
    ///
    /// Example: cardlog history 3f2a phone.81c0
    History {
        /// Contact id or unique prefix
        id: String,
        /// Only this path: a field name (given, org…), phone/ITEM or phone.ITEM (likewise
        /// email, address, url; ITEM may be a prefix), tag/NAME, custom/NAME, or exists
        path: Option<String>,
    },
    /// The op log, in application order
    ///
    /// Example: cardlog log --contact 3f2a --from 2
    Log(LogArgs),
    /// One op decoded, with its size and an id check
    Op {
        /// Op id or unique prefix
        id: String,
    },
    /// The summary: each author's chain tip, its last op (what a peer compares to find what to
    /// send)
    ///
    /// With --out, writes it as a summary file instead (called a heads file before; `heads`
    /// still runs this command): carry it to another replica, which then exports only what
    /// this one lacks (cardlog export --since FILE).
    #[command(visible_alias = "heads")]
    Summary {
        /// Write a summary file to FILE (replaced atomically) instead of printing the tips
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Replica id, op count, authors, conflicts, clock skew, peers, forks and calibration
    Status,
    /// Every conflicted field of every contact
    Conflicts,
    /// Settle a field: keep one of the competing values (by op id prefix) or set a new one
    ///
    /// Example: cardlog resolve 3f2a note --keep 19d7
    Resolve(ResolveArgs),
    /// Re-hash every op, check every chain and compare the state with the log; exit 4 if not
    /// intact
    Verify,
    /// Rebuild the materialized state from the log
    Rebuild,
    /// Build a new database from the op log, for a store whose database is damaged or lost:
    /// the old one is set aside (never deleted), what it still gives is kept, the device id
    /// stays; ops found past damage in the op log are stored again; exit 4 if not intact
    /// after
    Repair,
    /// Rewrite the database in key order into a fresh one, which keeps the same contents in
    /// fewer bytes once contacts were edited many times (the op log is not touched)
    Compact,
    /// Ops and bytes per author, and the store's size on disk
    Stats,
    /// Write a bundle file of ops for another replica to import (sneakernet, a shared folder)
    ///
    /// Without --since the bundle holds every op; with a summary file written by the other
    /// replica (cardlog summary --out) it holds only what that replica lacks.
    ///
    /// A bundle is NOT encrypted: whoever holds the file can read the contacts in it. Its ops
    /// are signed, so nobody can alter them. Keep it where you would keep the address book.
    ///
    /// Example: cardlog export --since phone.summary --out to-phone.bundle
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
    /// Verify a bundle file (cardlog export) and apply its ops
    ///
    /// The whole file is checked before anything is applied: a damaged or forged bundle is
    /// refused with the fault named (exit 2) and the store is unchanged. Importing a bundle
    /// again stores nothing.
    Import {
        /// The bundle file ("-" reads standard input)
        file: PathBuf,
    },
    /// Serve this replica over TCP: members of its book run `cardlog sync ADDR` against it
    ///
    /// Prints `listening on ADDR` (the bound address, so port 0 picks a free one), then one
    /// line per finished session. Several peers are served at once. Every session is
    /// encrypted and both sides authenticated by their device keys; a device that is not a
    /// member of this book (or the device this one is paired with) is refused before it
    /// receives anything.
    ///
    /// Example: cardlog serve --listen 0.0.0.0:7447
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Sync with a served replica (cardlog serve): each side gets the ops it lacks
    ///
    /// The session is encrypted; the served replica must be a member of this book (or the
    /// paired device). Without ADDR, syncs with the paired relay (`cardlog pair`) and
    /// refuses any other device at its address.
    ///
    /// Example: cardlog sync laptop.local:7447
    Sync {
        /// The served replica's address, HOST:PORT [default: the paired relay's]
        #[arg(value_name = "ADDR")]
        addr: Option<String>,
        /// Seconds to wait for each message from the peer
        #[arg(long, value_name = "SECS", default_value_t = TIMEOUT_SECS_DEFAULT,
              value_parser = clap::value_parser!(u64).range(1..=TIMEOUT_SECS_MAX))]
        timeout: u64,
    },
    /// Pair this device with a relay (or, on a device that joined a book, with the member it
    /// first syncs with); without DEVICE, show the pairing
    ///
    /// Sessions with the paired device check its key ("relay key mismatch" if another device
    /// answers at its address), and a device that knows no members of its book yet admits
    /// only it. `cardlog sync` without an address syncs with it.
    ///
    /// Example: cardlog pair 3f9a0c… relay.example.org:7447
    Pair {
        /// The device id (32 hex digits) of the relay or member
        #[arg(value_name = "DEVICE")]
        device: Option<String>,
        /// Where it is served, HOST:PORT
        #[arg(value_name = "ADDR", requires = "device")]
        addr: Option<String>,
    },
    /// A relay of many address books: create one, serve it, see what it keeps
    ///
    /// One relay process serves the books of many devices; each book's admin adds the relay
    /// (`cardlog members add RELAY_ID --role relay`), and its devices pair with it (`cardlog
    /// pair RELAY_ID ADDR`). The relay takes a book on the first session of one of its
    /// members, once an admin added it.
    ///
    /// Example: cardlog relay init /srv/relay
    ///          cardlog relay serve /srv/relay --listen 0.0.0.0:7447
    #[command(subcommand, verbatim_doc_comment)]
    Relay(RelayCommand),
    /// The seed scenario, narrated: a phone and a tablet edit one contact while apart, then
    /// meet
    Demo,
    /// Import contacts from a vCard (.vcf) file, or export contacts as one
    ///
    /// Examples: cardlog vcard import contacts.vcf
    ///           cardlog vcard export --out contacts.vcf
    ///           cardlog vcard export --version 3 c902 d41f
    #[command(subcommand, verbatim_doc_comment)]
    Vcard(VcardCommand),
}

/// `cardlog init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Join this existing address book (its id, from `cardlog book` on one of its devices)
    /// instead of founding a new one; an admin then adds this device
    #[arg(long, value_name = "BOOK")]
    pub join: Option<String>,
    /// This device's name in the book ("Ada's iPhone"); used when founding one
    #[arg(long)]
    pub name: Option<String>,
}

/// `cardlog members`.
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Admit a device (its full id, from `cardlog device` on it), or widen its role
    Add {
        /// The device's id
        device: String,
        /// Its human name
        #[arg(long)]
        name: String,
        /// read, write, admin or relay
        #[arg(long, default_value = "write")]
        role: String,
    },
    /// Remove a device (a lost phone): its later ops are refused everywhere, for good
    Remove {
        /// The device's id (or a unique prefix of a member's)
        device: String,
    },
}

/// `cardlog vcard`.
#[derive(Debug, Subcommand)]
pub enum VcardCommand {
    /// Import every card of a .vcf file (vCard 2.1, 3.0 or 4.0), one save per card
    ///
    /// A card whose UID is already here updates that contact, saving only what changed; a
    /// card without a UID is left alone when a contact with exactly its content exists.
    /// Properties without a field of their own are kept as custom fields, so export gives
    /// them back. A broken card is rejected with its line and the rest are imported (exit 2
    /// when any card was rejected). Mapping and details: docs/VCARD.md.
    Import {
        /// The .vcf file ("-" reads standard input)
        file: PathBuf,
        /// Make the saves durable together at the end instead of one by one (much faster for
        /// large files; a crash part way loses some cards, never part of one)
        #[arg(long)]
        bulk: bool,
    },
    /// Write contacts as vCard 4.0 (or 3.0): all visible contacts, or those named
    #[command(disable_version_flag = true)]
    Export {
        /// Write to FILE instead of standard output
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The vCard version to write
        #[arg(long = "version", value_name = "3|4", default_value = "4",
              value_parser = ["3", "4"])]
        version: String,
        /// Contacts to export (ids or unique prefixes), in this order [default: every visible
        /// contact, in id order]
        #[arg(value_name = "ID")]
        ids: Vec<String>,
    },
}

/// Seconds `sync` and `serve` wait for each message from a peer, by default.
pub const TIMEOUT_SECS_DEFAULT: u64 = 30;
/// The longest wait `--timeout` accepts (a day).
pub const TIMEOUT_SECS_MAX: u64 = 86_400;

/// `cardlog export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The bundle file to write (replaced atomically: never left half-written)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// A summary file from the replica the bundle is for (cardlog summary --out there): only
    /// the ops it lacks are written
    #[arg(long, value_name = "HEADS_FILE")]
    pub since: Option<PathBuf>,
}

/// `cardlog relay`.
#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Create a relay in DIR (new or empty) with a new device key, and print its device id
    /// (what each book's admin adds with the relay role)
    Init {
        /// The relay directory
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Serve every book of the relay in DIR over TCP (the flags are those of `cardlog serve`)
    Serve {
        /// The relay directory
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// How to serve
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// The books the relay in DIR keeps: ops, authors, members, devices met, bytes
    Status {
        /// The relay directory
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `cardlog serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on, HOST:PORT (port 0 picks a free port)
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Exit after this many sessions (successful or not) [default: serve until killed]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub sessions: Option<u64>,
    /// Seconds to wait for each message from a peer
    #[arg(long, value_name = "SECS", default_value_t = TIMEOUT_SECS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=TIMEOUT_SECS_MAX))]
    pub timeout: u64,
    /// Seconds a whole session may take: a peer sending each message just in time is cut
    /// off after it
    #[arg(long, value_name = "SECS", default_value_t = SESSION_SECS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=TIMEOUT_SECS_MAX))]
    pub session_timeout: u64,
    /// Seconds a connection may take to authenticate (the handshake): one that has not by
    /// then is dropped, so idle or trickling strangers never hold a session
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=TIMEOUT_SECS_MAX))]
    pub handshake_timeout: u64,
    /// Connections authenticating at once (more are told busy); sessions (64) are counted
    /// only once a device authenticated
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_handshakes: u64,
    /// Sessions served at once for one IP address (more from that address are told busy)
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_per_address: u64,
    /// Sessions served at once for one device (more of its sessions are told busy)
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_per_device: u64,
    /// MiB of received messages held at once across all sessions (a session whose message
    /// does not fit waits for room; one message may take a quarter, so at least 40 leaves
    /// room for an honest device's largest, about 9 MiB)
    #[arg(long, value_name = "MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(40..=65536))]
    pub receive_budget_mib: u64,
    /// Ops one session may push; the message that would go over it is refused whole and
    /// the session ends, what came before kept (at least 131,072: a device's message may
    /// carry up to about 66,000 ops, and one refused stays refused)
    #[arg(long, value_name = "N", default_value_t = Quota::DEFAULT.ops,
          value_parser = clap::value_parser!(u64).range(1 << 17..))]
    pub quota_ops: u64,
    /// MiB of ops messages one session may push, compressed ones counted as they inflate (as
    /// --quota-ops; at least 32, twice the largest message a session takes at the default
    /// receive budget)
    #[arg(long, value_name = "MIB", default_value_t = Quota::DEFAULT.bytes >> 20,
          value_parser = clap::value_parser!(u64).range(32..=1 << 24))]
    pub quota_mib: u64,
    /// Authors new to this replica one session may bring (as --quota-ops)
    #[arg(long, value_name = "N", default_value_t = Quota::DEFAULT.new_authors,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub quota_authors: u64,
}

/// Seconds a served session may take in all, by default (ten minutes).
pub const SESSION_SECS_DEFAULT: u64 = 600;

/// `cardlog add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Given name
    #[arg(long)]
    pub given: Option<String>,
    /// Family name
    #[arg(long)]
    pub family: Option<String>,
    /// Middle name
    #[arg(long)]
    pub middle: Option<String>,
    /// Honorific prefix
    #[arg(long)]
    pub prefix: Option<String>,
    /// Honorific suffix
    #[arg(long)]
    pub suffix: Option<String>,
    /// Nickname
    #[arg(long)]
    pub nickname: Option<String>,
    /// The name as the contact wants it shown (vCard FN); without it, the name parts
    #[arg(long)]
    pub formatted_name: Option<String>,
    /// Organization
    #[arg(long)]
    pub org: Option<String>,
    /// Department
    #[arg(long)]
    pub department: Option<String>,
    /// Job title
    #[arg(long)]
    pub title: Option<String>,
    /// Birthday (free text, e.g. 1815-12-10)
    #[arg(long)]
    pub birthday: Option<String>,
    /// Anniversary
    #[arg(long)]
    pub anniversary: Option<String>,
    /// Note
    #[arg(long)]
    pub note: Option<String>,
    /// A phone number, optionally labelled: [LABEL=]NUMBER (repeatable)
    #[arg(long, value_name = "[LABEL=]NUMBER")]
    pub phone: Vec<String>,
    /// An e-mail address: [LABEL=]ADDRESS (repeatable)
    #[arg(long, value_name = "[LABEL=]ADDRESS")]
    pub email: Vec<String>,
    /// A web address: [LABEL=]URL (repeatable)
    #[arg(long, value_name = "[LABEL=]URL")]
    pub url: Vec<String>,
    /// A postal address, parts separated by ';':
    /// [LABEL=]STREET;CITY;REGION;CODE;COUNTRY (repeatable)
    #[arg(long, value_name = "[LABEL=]ADDRESS")]
    pub address: Vec<String>,
    /// A tag (repeatable)
    #[arg(long)]
    pub tag: Vec<String>,
    /// A custom field: NAME=VALUE, e.g. X-SHOE-SIZE=44 (repeatable)
    #[arg(long, value_name = "NAME=VALUE")]
    pub custom: Vec<String>,
}

/// `cardlog log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only ops by this device (id or prefix)
    #[arg(long)]
    pub author: Option<String>,
    /// Only ops writing this contact (id or prefix)
    #[arg(long)]
    pub contact: Option<String>,
    /// Only ops with seq at least this
    #[arg(long)]
    pub from: Option<u64>,
    /// Only ops with seq at most this
    #[arg(long)]
    pub to: Option<u64>,
}

/// `cardlog resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Contact id or unique prefix
    pub id: String,
    /// The conflicted path as `cardlog conflicts` prints it (note, phone/ITEM, tag/NAME,
    /// custom/NAME, exists; ITEM may be a prefix)
    pub path: String,
    /// Keep the value written by this op (id prefix; see `cardlog conflicts`)
    #[arg(long, value_name = "OP", conflicts_with_all = ["value", "remove"])]
    pub keep: Option<String>,
    /// Set this new value instead (text for fields; [LABEL=]VALUE for items)
    #[arg(long, conflicts_with = "remove")]
    pub value: Option<String>,
    /// Remove the field, item or tag
    #[arg(long)]
    pub remove: bool,
}
