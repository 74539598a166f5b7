//! The transport hook: an app's own network between the two ends of a sync session.
//!
//! An app that carries cardlog's sessions over something of its own (an HTTP relay, a message
//! queue, its own server, a radio link) implements [`Network`]; schedules then drive sessions
//! through it ([`crate::SyncMode::Network`]) next to the built-in modes, and every property
//! holds over it.
//!
//! The contract is a reliable stream's, as TCP gives: every message an end accepts arrives
//! once and in order, or the session fails (a `send` or `recv` returns an error). A test
//! network injects faults to see that they end sessions cleanly: it may delay messages, cut
//! the line, alter a message (the session refuses it), or drop, duplicate or reorder messages
//! provided its ends notice and fail (sequence numbers, as an app's own protocol would carry).
//! The simulator accepts a session that a fault ends with an error, and keeps every property.
//! What it does not accept is a session that both ends call complete while one of them lacks
//! what the other held (property "a completed session delivers"): a network that loses or
//! misplaces a message and lets both sides believe all went well is caught. (The sessions
//! run in the clear here; cardlog's encrypted channel would refuse a lost, repeated or
//! misplaced message itself, but a transport that does so still syncs nothing.)
//!
//! ```
//! use cardlog_sim::network::{Ends, Link, Network};
//! use cardlog_sync::transport::channel_pair;
//! use cardlog_sync::TransportError;
//! use std::time::Duration;
//!
//! /// A perfect wire: what one end sends, the other receives, in order.
//! struct Wire;
//!
//! impl Network for Wire {
//!     fn connect(&mut self, _link: Link) -> Result<Ends, TransportError> {
//!         let (initiator, responder) = channel_pair(Duration::from_secs(5));
//!         Ok(Ends { initiator: Box::new(initiator), responder: Box::new(responder) })
//!     }
//! }
//! ```

use cardlog_sync::transport::Transport;
use cardlog_sync::TransportError;

/// One session the simulator asks a [`Network`] to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The replica that opens the session (it calibrates its clock to the responder's).
    pub initiator: usize,
    /// The replica that answers.
    pub responder: usize,
    /// Drawn with the schedule ([`crate::SyncMode::Network`]): a network that injects faults
    /// takes them from this number, so that a schedule replays exactly.
    pub seed: u64,
}

/// The two ends of one session over a [`Network`].
pub struct Ends {
    /// What the initiator sends and receives through.
    pub initiator: Box<dyn Transport + Send>,
    /// What the responder sends and receives through (it runs on another thread).
    pub responder: Box<dyn Transport + Send>,
}

/// An app's network: it opens the two ends of a session. What one end sends, the other end
/// receives as the network delivers it.
///
/// A fault must end the session with an error on at least one side, as it does on a real
/// line (module docs): a `recv` that waits for a lost message times out
/// ([`TransportError::Timeout`]), a cut line fails ([`TransportError::Disconnected`]), an
/// altered message is refused by the session itself, and a lost, repeated or misplaced one
/// must be noticed by the ends. Dropping an end closes it, and the other end's `recv` should
/// then fail rather than wait.
pub trait Network: Send {
    /// Opens the ends of the session `link`. An error is a session that could not start
    /// (the simulator counts it as a failed sync, not as a violation).
    fn connect(&mut self, link: Link) -> Result<Ends, TransportError>;

    /// How a schedule's story names this network ("over the app's network").
    fn name(&self) -> String {
        "the app's network".into()
    }
}
