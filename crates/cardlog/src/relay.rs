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
//! ```
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

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use cardlog_core::{BookId, DeviceId, DeviceKey, MemberRole, WallClock};
use cardlog_store::{read_key_file, write_key_file, OpenError, KEY_FILE};
use cardlog_sync::transport::Host;
use cardlog_sync::{AuthError, Identity, SyncError};

use crate::error::Error;
use crate::replica::{Options, Replica};
use crate::sync::SharedReplica;

/// The marker file of a relay directory, and what it holds.
pub const RELAY_MARKER: &str = "RELAY";
const RELAY_MARKER_V1: &str = "cardlog relay v1\n";
/// Where the books' replicas are, in a relay directory.
pub const BOOKS_DIR: &str = "books";
/// The suffix of the file marking a book being taken.
const TAKING_SUFFIX: &str = ".taking";

/// How a relay runs.
#[derive(Clone)]
pub struct RelayOptions {
    /// sled's page cache per book replica, in bytes (default 1 MiB: a relay's sessions read
    /// mostly what was just written).
    pub cache_bytes: u64,
    /// The most books the relay keeps; a session naming one more is refused (default 10,000).
    pub max_books: usize,
    /// How far ahead of its records each book's op log is extended with zeros while open
    /// (default 64 KiB rather than a device's 1 MiB: a relay keeps thousands of books open,
    /// and applies a message at a time, not one small save at a time).
    pub log_preallocate_bytes: u64,
    /// Where wall time comes from (tests inject a fake clock).
    pub wall: Arc<dyn WallClock>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 1 << 20,
            max_books: 10_000,
            log_preallocate_bytes: 64 << 10,
            wall: Arc::new(cardlog_core::SystemClock),
        }
    }
}

impl std::fmt::Debug for RelayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayOptions")
            .field("cache_bytes", &self.cache_bytes)
            .field("max_books", &self.max_books)
            .finish_non_exhaustive()
    }
}

/// One book of the relay.
enum Entry {
    /// Kept, its replica not open (opened by its next session).
    Closed,
    /// Kept, its replica open.
    Open(SharedReplica),
    /// Being taken in a session with `peer`: kept only if that session leaves a membership
    /// that names the relay and `peer`.
    Taking {
        /// The device that named the book.
        peer: DeviceId,
        /// The new replica.
        store: SharedReplica,
    },
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

fn io(path: &FsPath, e: std::io::Error) -> OpenError {
    OpenError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The bytes of the files under `path`.
fn bytes_under(path: &FsPath) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| bytes_under(&e.path()))
                .sum::<u64>()
        })
        .unwrap_or(0)
}

impl Relay {
    /// Creates a relay in `dir`, which must not exist or be empty: a new device key, no books.
    /// Its device id ([`Relay::id`]) is what a book's admin adds with the relay role.
    pub fn init(dir: &FsPath, options: RelayOptions) -> Result<Self, OpenError> {
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
            if entries.next().is_some() {
                return Err(OpenError::NotEmpty(dir.to_owned()));
            }
        }
        std::fs::create_dir_all(dir.join(BOOKS_DIR)).map_err(|e| io(dir, e))?;
        write_key_file(dir, KEY_FILE, &DeviceKey::generate()?)?;
        // The marker last: a directory without it is not a relay, and init can run again
        // once it is emptied.
        let marker = dir.join(RELAY_MARKER);
        std::fs::write(&marker, RELAY_MARKER_V1)
            .and_then(|()| std::fs::File::open(&marker)?.sync_all())
            .map_err(|e| io(&marker, e))?;
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        Self::open(dir, options)
    }

    /// Opens the relay in `dir`. Books are opened by their first session; a book whose taking
    /// was cut off (a crash during its first session) is removed.
    pub fn open(dir: &FsPath, options: RelayOptions) -> Result<Self, OpenError> {
        match std::fs::read(dir.join(RELAY_MARKER)) {
            Ok(text) if text == RELAY_MARKER_V1.as_bytes() => {}
            Ok(_) => return Err(OpenError::NotARelay(dir.to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OpenError::NotARelay(dir.to_owned()))
            }
            Err(e) => return Err(io(&dir.join(RELAY_MARKER), e)),
        }
        // One process serves a relay: its books' stores would refuse a second one midway.
        let marker = dir.join(RELAY_MARKER);
        let lock = std::fs::File::open(&marker).map_err(|e| io(&marker, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked(dir.to_owned()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&marker, e)),
        }
        let key = read_key_file(&dir.join(KEY_FILE))?;
        let books_dir = dir.join(BOOKS_DIR);
        let mut books = BTreeMap::new();
        let mut cut_off = Vec::new();
        for entry in std::fs::read_dir(&books_dir).map_err(|e| io(&books_dir, e))? {
            let entry = entry.map_err(|e| io(&books_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(book) = name.strip_suffix(TAKING_SUFFIX) {
                cut_off.push(book.to_owned());
            } else if let Some(book) = parse_book(&name) {
                books.insert(book, Entry::Closed);
            }
            // Anything else (a replica's half-created sibling) is not a book.
        }
        for name in cut_off {
            if let Some(book) = parse_book(&name) {
                books.remove(&book);
            }
            let _ = std::fs::remove_dir_all(books_dir.join(&name));
            let _ = std::fs::remove_file(books_dir.join(format!("{name}{TAKING_SUFFIX}")));
        }
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
            identity: Identity::any_book(&key),
            key,
            options,
            books: Mutex::new(books),
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
            .filter(|(_, e)| !matches!(e, Entry::Taking { .. }))
            .map(|(b, _)| *b)
            .collect()
    }

    /// The books kept, with what each holds (each book's replica is opened if it is not).
    pub fn status(&self) -> Result<RelayStatus, Error> {
        let mut books = Vec::new();
        for book in self.books() {
            let store = self.open_book(book)?;
            let replica = store.lock();
            let summary = replica.summary();
            books.push(BookStatus {
                book,
                ops: summary.values().map(|tip| tip.seq).sum(),
                authors: summary.len(),
                members: replica
                    .membership()
                    .members()
                    .filter(|(_, m)| m.removed.is_none())
                    .count(),
                devices: replica.peers()?.len(),
                bytes: bytes_under(&self.book_dir(book)),
            });
        }
        Ok(RelayStatus {
            device: self.id(),
            books,
            bytes: bytes_under(&self.dir),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<BookId, Entry>> {
        // Every change to the map is whole; a panic elsewhere leaves nothing half-done.
        self.books.lock().unwrap_or_else(|p| p.into_inner())
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
            ..Options::default()
        }
    }

    /// The replica of a kept book, opened if it is not.
    pub fn open_book(&self, book: BookId) -> Result<SharedReplica, Error> {
        let mut books = self.lock();
        match books.get(&book) {
            Some(Entry::Open(store)) => Ok(store.clone()),
            Some(Entry::Closed) => {
                let replica = Replica::open_with(&self.book_dir(book), self.replica_options())?;
                let store = SharedReplica::new(replica);
                books.insert(book, Entry::Open(store.clone()));
                Ok(store)
            }
            Some(Entry::Taking { .. }) | None => {
                Err(Error::Open(OpenError::NotAStore(self.book_dir(book))))
            }
        }
    }

    /// Starts taking `book` for a session with `peer`: a new replica of the book, paired with
    /// `peer`, marked as being taken.
    fn take(&self, book: BookId, peer: DeviceId) -> Result<SharedReplica, Error> {
        let taking = self.taking_file(book);
        std::fs::write(&taking, peer.to_string())
            .and_then(|()| std::fs::File::open(&taking)?.sync_all())
            .map_err(|e| io(&taking, e))?;
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
                let _ = std::fs::remove_dir_all(self.book_dir(book));
                let _ = std::fs::remove_file(&taking);
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
        let kept = {
            let books = self.lock();
            match books.get(&book) {
                Some(Entry::Taking { .. }) => return Err(SyncError::Auth(AuthError::Taking(book))),
                Some(_) => true,
                None => {
                    if books.len() >= self.options.max_books {
                        return Err(SyncError::Auth(AuthError::BooksFull(books.len())));
                    }
                    false
                }
            }
        };
        if kept {
            return self.open_book(book).map_err(SyncError::Store);
        }
        let mut books = self.lock();
        if books.contains_key(&book) {
            // Taken by another session between the two looks.
            return Err(SyncError::Auth(AuthError::Taking(book)));
        }
        let store = self.take(book, peer).map_err(SyncError::Store)?;
        books.insert(
            book,
            Entry::Taking {
                peer,
                store: store.clone(),
            },
        );
        Ok(store)
    }

    fn ended(&self, book: BookId, peer: DeviceId, _ok: bool) {
        let mut books = self.lock();
        let Some(Entry::Taking { peer: taker, store }) = books.get(&book) else {
            return;
        };
        if *taker != peer {
            return;
        }
        // Whether the session succeeded does not matter: what it left does.
        let keep = self.consented(&store.lock(), &peer);
        if keep {
            let taking = self.taking_file(book);
            if std::fs::remove_file(&taking).is_ok() {
                let _ = std::fs::File::open(self.dir.join(BOOKS_DIR)).and_then(|d| d.sync_all());
                if let Some(Entry::Taking { store, .. }) = books.remove(&book) {
                    books.insert(book, Entry::Open(store));
                }
                return;
            }
        }
        // Not kept: the replica closes (the map held its last handle) before its directory
        // goes.
        books.remove(&book);
        let _ = std::fs::remove_dir_all(self.book_dir(book));
        let _ = std::fs::remove_file(self.taking_file(book));
    }
}
