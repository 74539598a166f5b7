//! Change notifications: which contacts each save, apply, import, sync and rebuild changed,
//! for a UI that shows them ([`Replica::subscribe`]), and what changed while an app was not
//! running ([`Replica::changes_since`]).
//!
//! The store notes the contacts (and paths) whose registers each write changes while someone
//! listens (`cardlog_store`'s `changes.rs`). The replica hands them out once the write is
//! done: after each local save, after each [`Replica::apply`], after each message of a sync
//! session or each chunk of a bundle import, and after a rebuild (a removal that voids ops,
//! a restore taking ops back). Each change reaches every subscriber exactly once, in the order
//! the writes happened, tagged with what made it. The same hub carries the progress of sync
//! sessions and bundle imports to whoever asked ([`Replica::set_progress`]).

use crossbeam_channel::{Receiver, Sender};

use cardlog_store::{ChangeCursor, ContactChange, Since};
use cardlog_sync::SyncProgress;

use crate::{Error, Replica};

/// What made a change. As JSON its name in lowercase (`"save"`, `"sync"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ChangeSource {
    /// A local save on this replica (an edit, add, delete, restore, resolve, or a membership
    /// change). What a restored device re-issues during a sync or import is reported with
    /// that sync or import.
    Save,
    /// Ops given to [`Replica::apply`] or [`Replica::pull_from`].
    Apply,
    /// A bundle import ([`Replica::import_bundle`]).
    Import,
    /// A sync session (each message reported as it is applied), including sessions this
    /// replica serves (`cardlog_sync::transport::serve`) and bundles applied through
    /// `cardlog_sync::bundle::import` directly rather than [`Replica::import_bundle`].
    Sync,
    /// [`Replica::rebuild`] re-deriving the state from the log.
    Rebuild,
}

/// Contacts one write changed, as a subscriber receives them. As JSON
/// `{"source", "contacts": [{"contact", "paths"}], "cursor": "<hex>"}`: what an app hands to
/// a UI layer in another language.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Changes {
    /// What made the change.
    pub source: ChangeSource,
    /// The contacts whose state changed, in contact order, each with the paths whose
    /// registers changed. Never empty.
    pub contacts: Vec<ContactChange>,
    /// Where the history stands after this change: keep it to ask
    /// [`Replica::changes_since`] after a restart.
    pub cursor: ChangeCursor,
}

/// What a sync session or bundle import reports its progress to ([`Replica::set_progress`]).
pub type ProgressSink = Box<dyn FnMut(&SyncProgress) + Send>;

/// The subscribers, what the writes under way stem from, and where progress goes.
pub(crate) struct Hub {
    subscribers: Vec<Sender<Changes>>,
    pub(crate) source: ChangeSource,
    pub(crate) progress: Option<ProgressSink>,
}

impl Hub {
    /// Whether anyone subscribed (the store then notes what changes).
    pub(crate) fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            subscribers: Vec::new(),
            source: ChangeSource::Save,
            progress: None,
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("subscribers", &self.subscribers.len())
            .field("source", &self.source)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Replica {
    /// A channel that receives every change from now on, as [`Changes`] (unbounded: a writer
    /// never waits for a slow reader). Drop the receiver to stop; any number may subscribe.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let mut replica = cardlog::Replica::create(&dir.path().join("r"))?;
    /// let changes = replica.subscribe();
    /// let mut ada = cardlog::Contact::random()?;
    /// ada.set(cardlog::Field::Given, "Ada");
    /// replica.add_contact(&ada)?;
    /// let change = changes.try_recv()?;
    /// assert_eq!(change.source, cardlog::ChangeSource::Save);
    /// assert_eq!(change.contacts[0].contact, ada.id);
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&mut self) -> Receiver<Changes> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.hub.subscribers.push(tx);
        self.store.track_changes(true);
        rx
    }

    /// Shows the progress of every later sync session and bundle import on this replica
    /// (ops and bytes so far, and the ops the peer's hello announced), after each message;
    /// `None` stops it. A callback that blocks holds up the session.
    pub fn set_progress(&mut self, sink: Option<ProgressSink>) {
        self.hub.progress = sink;
    }

    /// Where the history stands now, for [`Replica::changes_since`]. Free right after a
    /// write; otherwise it reads the log index (built on first use).
    pub fn change_cursor(&self) -> Result<ChangeCursor, Error> {
        Ok(self.store.change_cursor()?)
    }

    /// The contacts changed since `cursor` (from [`Replica::change_cursor`] or a
    /// [`Changes`]), for an app that was not running: read back from the log, in time
    /// proportional to the ops since. [`Since::Everything`] asks it to read every contact
    /// again (a cursor of before a rebuild or restore, or of another replica).
    pub fn changes_since(&self, cursor: &ChangeCursor) -> Result<Since, Error> {
        Ok(self.store.changes_since(cursor)?)
    }

    /// Hands the changes noted so far to every subscriber (dropping those gone).
    pub(crate) fn publish(&mut self) {
        if self.hub.subscribers.is_empty() {
            return;
        }
        let contacts = self.store.take_changes();
        if contacts.is_empty() {
            return;
        }
        let changes = Changes {
            source: self.hub.source,
            contacts,
            // (Known after any write; should reading the log fail, the cursor asks for
            // everything rather than the change going unreported.)
            cursor: self
                .store
                .change_cursor()
                .unwrap_or_else(|_| ChangeCursor::everything(self.store.device_id())),
        };
        self.hub
            .subscribers
            .retain(|tx| tx.send(changes.clone()).is_ok());
        if self.hub.subscribers.is_empty() {
            self.store.track_changes(false);
        }
    }

    /// Runs `f` with the changes it makes reported as from `source`, and reports what it
    /// left unreported when it returns (whether or not it failed: what was stored stays).
    pub(crate) fn as_source<T>(
        &mut self,
        source: ChangeSource,
        f: impl FnOnce(&mut Self) -> T,
    ) -> T {
        let outer = std::mem::replace(&mut self.hub.source, source);
        let out = f(self);
        self.publish();
        self.hub.source = outer;
        out
    }
}
