//! A relay of many address books ([`Relay`]): one device, one process, one listener, and a
//! replica per book it keeps (docs/ARCHITECTURE.md, "Relay"; docs/SECURITY.md, "Relays").
//!
//! A relay directory holds:
//!
//! ```text
//! RELAY              marker: "cardlog relay v1"
//! device.key         the relay's ed25519 seed (owner-only), the same device in every book
//! books/BOOK/        a replica of book BOOK (32 hex digits), written as the relay's device
//! books/BOOK.taking  present while BOOK is being taken: its replica is not kept yet
//! books/BOOK.discard-* a book's replica on its way out (a taking that was not kept)
//! ```
//!
//! Each book's replica holds a copy of the relay's key (`device.key`, owner-only), as every
//! store holds its device's: whoever can read one book's directory can act as the relay.
//!
//! Devices reach the relay with a handshake addressed to its device id
//! ([`cardlog_sync::Expect::Device`], the paired relay), which names their book in its last
//! message; the relay answers as no book in particular ([`Identity::any_book`]) and serves the
//! session from that book's replica ([`Host`]). A book the relay does not keep yet is taken on
//! the first session of a device that names it: the relay joins the book in a new replica
//! paired with that device (so it admits that device alone), and keeps the replica only if, at
//! the end of the session, the book's membership names the relay as a relay member and that
//! device as a member. Only an admin can add the relay, so a book is kept only with an
//! admin's consent; a device of a book that did not add the relay leaves nothing behind.
//! At most [`RelayOptions::max_taking`] books are taken at once, so devices of books nobody
//! added the relay to (anyone's keys are free) hold at most that many sessions.
//!
//! Books open on their first session and stay open while used; past
//! [`RelayOptions::open_books_max`] the book used least recently that no session holds is
//! closed (each open book holds its state in memory, [`Database::Journal`]: a book kept by
//! a relay is small beside a device's store, and the bound keeps what they hold in check).

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use cardlog_core::{BookId, DeviceId, DeviceKey, MemberRole, WallClock};
use cardlog_store::{dir_bytes, read_key_file, write_key_file, OpenError, KEY_FILE};
use cardlog_sync::transport::Host;
use cardlog_sync::{AuthError, Identity, SyncError};

use crate::error::Error;
use crate::replica::{Options, Replica};
use crate::sync::SharedReplica;
use cardlog_store::{Database, Keeps};

/// The marker file of a relay directory, and what it holds.
pub const RELAY_MARKER: &str = "RELAY";
const RELAY_MARKER_V1: &str = "cardlog relay v1\n";
/// Where the books' replicas are, in a relay directory.
pub const BOOKS_DIR: &str = "books";
/// The suffix of the file marking a book being taken.
const TAKING_SUFFIX: &str = ".taking";
/// What a book's directory is renamed to (with a random suffix) before it is removed, so a
/// removal cut short never leaves a directory that reads as a kept book.
const DISCARD_INFIX: &str = ".discard-";

/// How a relay runs.
#[derive(Clone)]
pub struct RelayOptions {
    /// sled's page cache per book replica, in bytes (default 1 MiB: a relay's sessions read
    /// mostly what was just written), for its main database; its name index's database has a
    /// cache of its own, a quarter that size (each at least 64 KiB).
    pub cache_bytes: u64,
    /// The most books the relay keeps; a session naming one more is refused (default 10,000).
    pub max_books: usize,
    /// Books being taken at once (their first session, from a device the relay cannot check
    /// yet); a session naming one more is told busy (default 4).
    pub max_taking: usize,
    /// How long a session taking a book may take in all (default 2 minutes, against a
    /// member's 10): strangers taking books free their sessions sooner. What decides is the
    /// membership the session leaves, so the session must carry the book's history up to the
    /// op that added the relay within it (about 50 MB of ops at 1 MB/s for 200,000 ops); an
    /// operator whose users bring larger books over slow links raises it.
    pub taking_timeout: std::time::Duration,
    /// Books open at once; past it the one used least recently that no session holds is
    /// closed (default 64).
    pub open_books_max: usize,
    /// How far ahead of its records each book's op log is extended with zeros while a session
    /// holds it, cut when its last session ends (default 16 KiB rather than a device's 1 MiB:
    /// a relay keeps up to `open_books_max` books open, thousands across a day, and applies a
    /// message at a time, not one small save at a time; 64 KiB before session 36).
    pub log_preallocate_bytes: u64,
    /// What keeps the state of a book the relay takes (default [`Database::Journal`]: a small
    /// book costs the bytes it holds, not a sled database's megabyte of segments and its
    /// threads). Books taken before keep what they were made with.
    pub database: Database,
    /// Where wall time comes from (tests inject a fake clock).
    pub wall: Arc<dyn WallClock>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 1 << 20,
            max_books: 10_000,
            max_taking: 4,
            taking_timeout: std::time::Duration::from_secs(120),
            open_books_max: 64,
            log_preallocate_bytes: 16 << 10,
            database: Database::Journal,
            wall: Arc::new(cardlog_core::SystemClock),
        }
    }
}

impl std::fmt::Debug for RelayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayOptions")
            .field("cache_bytes", &self.cache_bytes)
            .field("max_books", &self.max_books)
            .field("max_taking", &self.max_taking)
            .field("open_books_max", &self.open_books_max)
            .finish_non_exhaustive()
    }
}

/// One book of the relay.
enum Entry {
    /// Kept, its replica not open (opened by its next session).
    Closed,
    /// Kept, its replica open; `used` orders the open books by their last session.
    Open {
        /// The replica.
        store: SharedReplica,
        /// When a session last asked for it ([`Relay::tick`]).
        used: u64,
    },
    /// Its replica being created for a first session, or removed after one: any other
    /// session naming it is told busy meanwhile.
    Busy,
    /// Being taken in a session with `peer`: kept only if that session leaves a membership
    /// that names the relay and `peer`.
    Taking {
        /// The device that named the book.
        peer: DeviceId,
        /// The new replica.
        store: SharedReplica,
    },
}

impl Entry {
    /// Whether the book is kept (not being taken, created or removed).
    fn kept(&self) -> bool {
        matches!(self, Entry::Closed | Entry::Open { .. })
    }
}

/// A relay of many address books. See the module docs.
pub struct Relay {
    dir: PathBuf,
    /// The marker file, locked while the relay is open.
    _lock: std::fs::File,
    key: DeviceKey,
    identity: Identity,
    options: RelayOptions,
    books: Mutex<BTreeMap<BookId, Entry>>,
    /// One gate per book being opened: its opening (a replay of its log's tail, a check of
    /// its home, perhaps sled's recovery) runs outside the map's lock, and a second session
    /// naming it waits for the first's replica instead of opening it again.
    opening: Mutex<BTreeMap<BookId, Arc<Mutex<()>>>>,
    /// Counts sessions asking for books: the clock of [`Entry::Open`]'s `used`.
    tick: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("dir", &self.dir)
            .field("device", &self.key.device())
            .finish_non_exhaustive()
    }
}

/// What [`Relay::status`] reports of one book.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BookStatus {
    /// The book.
    pub book: BookId,
    /// Ops the relay holds of it.
    pub ops: u64,
    /// Authors of those ops.
    pub authors: usize,
    /// Current members of the book (removed ones not counted).
    pub members: usize,
    /// Devices the relay keeps a record of having met in a session.
    pub devices: usize,
    /// Bytes of the book's replica on disk.
    pub bytes: u64,
    /// Why the book's replica could not be read (the counts above are then 0), or `None`.
    pub problem: Option<String>,
}

/// What [`Relay::status`] reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RelayStatus {
    /// The relay's device id (what an admin adds with the relay role).
    pub device: DeviceId,
    /// Each book kept, in id order.
    pub books: Vec<BookStatus>,
    /// Bytes of the whole relay directory on disk.
    pub bytes: u64,
}

impl Relay {
    /// Creates a relay in `dir`, which must not exist or be empty: a new device key, no books.
    /// Its device id ([`Relay::id`]) is what a book's admin adds with the relay role.
    pub fn init(dir: &FsPath, options: RelayOptions) -> Result<Self, OpenError> {
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(|e| OpenError::io(dir, e))?;
            if entries.next().is_some() {
                return Err(OpenError::NotEmpty(dir.to_owned()));
            }
        }
        std::fs::create_dir_all(dir.join(BOOKS_DIR)).map_err(|e| OpenError::io(dir, e))?;
        write_key_file(dir, KEY_FILE, &DeviceKey::generate()?)?;
        // The marker last: a directory without it is not a relay, and init can run again
        // once it is emptied.
        let marker = dir.join(RELAY_MARKER);
        std::fs::write(&marker, RELAY_MARKER_V1)
            .and_then(|()| std::fs::File::open(&marker)?.sync_all())
            .map_err(|e| OpenError::io(&marker, e))?;
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        Self::open(dir, options)
    }

    /// Opens the relay in `dir`. Books are opened by their first session; a book whose taking
    /// was cut off (a crash during its first session) is removed.
    pub fn open(dir: &FsPath, options: RelayOptions) -> Result<Self, OpenError> {
        // One process serves a relay: its books' stores would refuse a second one midway. The
        // marker is read through the handle that holds the lock.
        let marker = dir.join(RELAY_MARKER);
        let mut lock = match std::fs::File::open(&marker) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OpenError::NotARelay(dir.to_owned()))
            }
            Err(e) => return Err(OpenError::io(&marker, e)),
        };
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut lock, &mut text).map_err(|e| OpenError::io(&marker, e))?;
        if text != RELAY_MARKER_V1.as_bytes() {
            return Err(OpenError::NotARelay(dir.to_owned()));
        }
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked(dir.to_owned()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(OpenError::io(&marker, e)),
        }
        let key = read_key_file(&dir.join(KEY_FILE))?;
        let books_dir = dir.join(BOOKS_DIR);
        let mut books = BTreeMap::new();
        let mut cut_off = Vec::new();
        for entry in std::fs::read_dir(&books_dir).map_err(|e| OpenError::io(&books_dir, e))? {
            let entry = entry.map_err(|e| OpenError::io(&books_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(book) = name.strip_suffix(TAKING_SUFFIX) {
                cut_off.push(book.to_owned());
            } else if let Some(book) = parse_book(&name) {
                books.insert(book, Entry::Closed);
            } else if name.contains(DISCARD_INFIX) || name.starts_with('.') {
                // A removal cut short, or a replica's creation cut short (`.BOOK.creating-*`).
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        for name in cut_off {
            if let Some(book) = parse_book(&name) {
                books.remove(&book);
                // The mark goes only once the directory is out of the way.
                discard(&books_dir, book).map_err(|e| OpenError::io(&books_dir.join(&name), e))?;
            } else {
                let _ = std::fs::remove_file(books_dir.join(format!("{name}{TAKING_SUFFIX}")));
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
            identity: Identity::any_book(&key),
            key,
            options,
            books: Mutex::new(books),
            opening: Mutex::default(),
            tick: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The relay's device id: what a book's admin adds with the relay role
    /// (`cardlog members add RELAY_ID --role relay`), and devices pair with.
    pub fn id(&self) -> DeviceId {
        self.key.device()
    }

    /// The books kept, in id order.
    pub fn books(&self) -> Vec<BookId> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.kept())
            .map(|(b, _)| *b)
            .collect()
    }

    /// The books whose replicas are open now, in id order.
    pub fn open_books(&self) -> Vec<BookId> {
        self.lock()
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Open { .. }))
            .map(|(b, _)| *b)
            .collect()
    }

    /// The books kept, with what each holds. A book that is not open is opened for the
    /// count and closed again; one that cannot be read is listed with the problem.
    pub fn status(&self) -> Result<RelayStatus, Error> {
        let mut books = Vec::new();
        for book in self.books() {
            let open = match self.lock().get(&book) {
                Some(Entry::Open { store, .. }) => Some(store.clone()),
                _ => None,
            };
            let mut status = BookStatus {
                book,
                ops: 0,
                authors: 0,
                members: 0,
                devices: 0,
                bytes: dir_bytes(&self.book_dir(book)),
                problem: None,
            };
            let counted = match open {
                Some(store) => count(&store.lock(), &mut status),
                None => Replica::open_with(&self.book_dir(book), self.replica_options())
                    .map_err(Error::from)
                    .and_then(|replica| count(&replica, &mut status)),
            };
            if let Err(e) = counted {
                status.problem = Some(e.to_string());
            }
            books.push(status);
        }
        Ok(RelayStatus {
            device: self.id(),
            books,
            bytes: dir_bytes(&self.dir),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<BookId, Entry>> {
        // Every change to the map is whole; a panic elsewhere leaves nothing half-done.
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn book_dir(&self, book: BookId) -> PathBuf {
        self.dir.join(BOOKS_DIR).join(book.to_string())
    }

    fn taking_file(&self, book: BookId) -> PathBuf {
        self.dir
            .join(BOOKS_DIR)
            .join(format!("{book}{TAKING_SUFFIX}"))
    }

    fn replica_options(&self) -> Options {
        Options {
            cache_bytes: self.options.cache_bytes,
            log_preallocate_bytes: self.options.log_preallocate_bytes,
            wall: Arc::clone(&self.options.wall),
            database: self.options.database,
            // A relay passes ops on and never reads a contact: no registers, no name index.
            keeps: Keeps::OpsOnly,
            ..Options::default()
        }
    }

    /// The replica of a kept book, opened if it is not (closing the book used least recently
    /// that no session holds, past [`RelayOptions::open_books_max`]).
    pub fn open_book(&self, book: BookId) -> Result<SharedReplica, Error> {
        if let Some(open) = self.find_open(book)? {
            return Ok(open);
        }
        // Opened outside the map's lock, once: sessions of other books go on meanwhile, and
        // another session of this one waits for this replica.
        let gate = {
            let mut gates = self.opening.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(gates.entry(book).or_default())
        };
        let opened = {
            let _one = gate.lock().unwrap_or_else(|p| p.into_inner());
            match self.find_open(book) {
                Ok(None) => self.open_closed(book),
                found => found.and_then(|open| {
                    open.ok_or_else(|| Error::Open(OpenError::NotAStore(self.book_dir(book))))
                }),
            }
        };
        // The gate goes with its last holder (the map's clone and this one).
        let mut gates = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&gate) <= 2 && gates.get(&book).is_some_and(|g| Arc::ptr_eq(g, &gate))
        {
            gates.remove(&book);
        }
        opened
    }

    /// The replica of `book` if it is open (marked used), `None` if it is kept but closed.
    fn find_open(&self, book: BookId) -> Result<Option<SharedReplica>, Error> {
        let mut books = self.lock();
        let used = self.next_tick();
        match books.get_mut(&book) {
            Some(Entry::Open { store, used: at }) => {
                *at = used;
                Ok(Some(store.clone()))
            }
            Some(Entry::Closed) => Ok(None),
            _ => Err(Error::Open(OpenError::NotAStore(self.book_dir(book)))),
        }
    }

    /// Opens the replica of `book`, kept and closed (its gate held), and marks it open.
    fn open_closed(&self, book: BookId) -> Result<SharedReplica, Error> {
        let replica = Replica::open_with(&self.book_dir(book), self.replica_options())?;
        let store = SharedReplica::new(replica);
        let closing = {
            let mut books = self.lock();
            books.insert(
                book,
                Entry::Open {
                    store: store.clone(),
                    used: self.next_tick(),
                },
            );
            self.close_idle(&mut books, book)
        };
        // Closed outside the lock: a close may checkpoint the database.
        drop(closing);
        Ok(store)
    }

    /// Past [`RelayOptions::open_books_max`] open books, marks closed the ones used least
    /// recently that no session holds (never `keep`), and gives their replicas back to be
    /// dropped once the lock is let go (a close may checkpoint the database).
    fn close_idle(&self, books: &mut BTreeMap<BookId, Entry>, keep: BookId) -> Vec<SharedReplica> {
        let mut idle: Vec<(u64, BookId)> = books
            .iter()
            .filter_map(|(b, e)| match e {
                Entry::Open { store, used } if *b != keep && store.is_unique() => Some((*used, *b)),
                _ => None,
            })
            .collect();
        let excess = books
            .values()
            .filter(|e| matches!(e, Entry::Open { .. }))
            .count()
            .saturating_sub(self.options.open_books_max.max(1));
        idle.sort_unstable();
        idle.into_iter()
            .take(excess)
            .filter_map(|(_, b)| match books.insert(b, Entry::Closed) {
                Some(Entry::Open { store, .. }) => Some(store),
                _ => None,
            })
            .collect()
    }

    /// Creates the replica of `book`, being taken for a session with `peer`: marked as being
    /// taken, joined to the book, paired with `peer`.
    fn take(&self, book: BookId, peer: DeviceId) -> Result<SharedReplica, Error> {
        let taking = self.taking_file(book);
        std::fs::write(&taking, peer.to_string())
            .and_then(|()| std::fs::File::open(&taking)?.sync_all())
            .map_err(|e| OpenError::io(&taking, e))?;
        let made = Replica::join_as(
            &self.book_dir(book),
            book,
            &self.key,
            self.replica_options(),
        )
        .map_err(Error::from)
        .and_then(|mut replica| replica.pair(peer, None).map(|()| replica));
        match made {
            Ok(replica) => Ok(SharedReplica::new(replica)),
            Err(e) => {
                let _ = discard(&self.dir.join(BOOKS_DIR), book);
                Err(e)
            }
        }
    }

    /// Whether `replica`'s membership names this relay as a relay member and `peer` as a
    /// member, none of them removed.
    fn consented(&self, replica: &Replica, peer: &DeviceId) -> bool {
        let membership = replica.membership();
        let relay = membership
            .member(&self.id())
            .is_some_and(|m| m.role == MemberRole::Relay && m.removed.is_none());
        let device = membership.member(peer).is_some_and(|m| m.removed.is_none());
        relay && device
    }
}

/// What a book's replica holds, into `status`.
fn count(replica: &Replica, status: &mut BookStatus) -> Result<(), Error> {
    let summary = replica.summary();
    status.ops = summary.values().map(|tip| tip.seq).sum();
    status.authors = summary.len();
    status.members = replica
        .membership()
        .members()
        .filter(|(_, m)| m.removed.is_none())
        .count();
    status.devices = replica.peers()?.len();
    Ok(())
}

/// A book whose last session ended rests (its op log cut to its records, its journal
/// compacted as at its close) while it stays open: a relay's books at rest take about what
/// they hold. A session starting meanwhile waits for the replica; a failure leaves the book as
/// it was (its close tries again).
fn rest(book: SharedReplica) {
    let _ = book.lock().rest();
}

/// Removes the replica of `book` from `books_dir` and then its taking mark: the directory is
/// first renamed out of the way (so a removal cut short leaves nothing that reads as a kept
/// book; the next open removes the rest), and the mark goes only once that rename succeeded.
fn discard(books_dir: &FsPath, book: BookId) -> std::io::Result<()> {
    let dir = books_dir.join(book.to_string());
    if dir.exists() {
        let suffix = DeviceId::random()
            .map(|d| d.to_string())
            .unwrap_or_else(|_| "0".to_owned());
        let trash = books_dir.join(format!("{book}{DISCARD_INFIX}{suffix}"));
        std::fs::rename(&dir, &trash)?;
        let _ = std::fs::File::open(books_dir).and_then(|d| d.sync_all());
        let _ = std::fs::remove_dir_all(&trash);
    }
    match std::fs::remove_file(books_dir.join(format!("{book}{TAKING_SUFFIX}"))) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A book id from a directory name: exactly as the id prints.
fn parse_book(name: &str) -> Option<BookId> {
    name.parse::<BookId>()
        .ok()
        .filter(|book| book.to_string() == name)
}

impl Host for Relay {
    type Store = Replica;

    fn identity(&self) -> Identity {
        self.identity.clone()
    }

    fn store_for(&self, book: BookId, peer: DeviceId) -> Result<SharedReplica, SyncError<Error>> {
        {
            let mut books = self.lock();
            match books.get(&book) {
                Some(Entry::Taking { .. } | Entry::Busy) => {
                    return Err(SyncError::Auth(AuthError::Taking(book)))
                }
                Some(_) => {}
                None => {
                    // One look under one lock: the counts cannot change before the entry is in.
                    let taking = books.values().filter(|e| !e.kept()).count();
                    if books.len() >= self.options.max_books {
                        return Err(SyncError::Auth(AuthError::BooksFull));
                    }
                    if taking >= self.options.max_taking {
                        // Told busy: the device comes back once a taking ended.
                        return Err(SyncError::Auth(AuthError::Taking(book)));
                    }
                    books.insert(book, Entry::Busy);
                    drop(books);
                    // Created outside the lock (files, fsyncs): other books' sessions go on.
                    let taken = self.take(book, peer);
                    let mut books = self.lock();
                    return match taken {
                        Ok(store) => {
                            books.insert(
                                book,
                                Entry::Taking {
                                    peer,
                                    store: store.clone(),
                                },
                            );
                            Ok(store)
                        }
                        Err(e) => {
                            books.remove(&book);
                            Err(SyncError::Store(e))
                        }
                    };
                }
            }
        }
        self.open_book(book).map_err(SyncError::Store)
    }

    /// A session taking a book has [`RelayOptions::taking_timeout`]: its device is admitted
    /// on its own word until the session shows the book's membership.
    fn session_timeout(&self, book: BookId) -> Option<std::time::Duration> {
        match self.lock().get(&book) {
            Some(Entry::Taking { .. }) => Some(self.options.taking_timeout),
            _ => None,
        }
    }

    fn ended(&self, book: BookId, peer: DeviceId, _ok: bool) {
        // The book's last session ended: it rests (outside the map's lock).
        let resting = match self.lock().get(&book) {
            Some(Entry::Open { store, .. }) if store.is_unique() => Some(store.clone()),
            _ => None,
        };
        if let Some(book) = resting {
            return rest(book);
        }
        let store = match self.lock().get(&book) {
            Some(Entry::Taking { peer: taker, store }) if *taker == peer => store.clone(),
            _ => return,
        };
        // Whether the session succeeded does not matter: what it left does.
        let keep = self.consented(&store.lock(), &peer);
        if keep && std::fs::remove_file(self.taking_file(book)).is_ok() {
            let _ = std::fs::File::open(self.dir.join(BOOKS_DIR)).and_then(|d| d.sync_all());
            let used = self.next_tick();
            let resting = store.clone();
            let closing = {
                let mut books = self.lock();
                books.insert(book, Entry::Open { store, used });
                self.close_idle(&mut books, book)
            };
            drop(closing);
            // Taken, it rests as after any last session (no other session held it: it was
            // being taken).
            rest(resting);
            return;
        }
        // Not kept (or its mark could not go: the next open discards it). The entry held the
        // last handle but this one: the replica closes before its directory goes, and other
        // sessions naming the book are told busy until it is gone.
        self.lock().insert(book, Entry::Busy);
        drop(store);
        let _ = discard(&self.dir.join(BOOKS_DIR), book);
        self.lock().remove(&book);
    }
}
