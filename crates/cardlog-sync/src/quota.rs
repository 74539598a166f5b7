//! What one served session may push ([`Quota`]): ops, bytes of `Ops` messages, and authors
//! new to the server. A relay stores what its members push, so a member's key (or a stolen
//! phone's) could otherwise fill the relay's disk and its per-author records in one session.
//! Each `Ops` message is counted from its structure before its ops are rebuilt or applied
//! ([`crate::wire::segment::census`]); the message that would go over is refused whole, with
//! [`crate::SyncError::OverQuota`] here and an abort naming the quota at the peer. What earlier
//! messages brought stays (each message is applied whole or not at all).

use std::collections::BTreeSet;

use cardlog_core::DeviceId;

use crate::wire::message::Summary;

/// What one session may push to a server (`ServeOptions::quota`). The defaults let a device
/// bring a whole book of a few million ops to a new relay in one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Ops in the session's `Ops` messages, held here already or not.
    pub ops: u64,
    /// Bytes of the session's `Ops` messages, their segments counted as they inflate (a
    /// compressed message counts what it makes the server hold).
    pub bytes: u64,
    /// Authors the server held no op of when their first op arrived.
    pub new_authors: u64,
}

impl Quota {
    /// The default: 4,194,304 ops, 1 GiB, 16,384 new authors.
    pub const DEFAULT: Quota = Quota {
        ops: 1 << 22,
        bytes: 1 << 30,
        new_authors: 1 << 14,
    };
}

impl Default for Quota {
    fn default() -> Self {
        Quota::DEFAULT
    }
}

/// Which part of a [`Quota`] a session went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaPart {
    /// [`Quota::ops`].
    Ops,
    /// [`Quota::bytes`].
    Bytes,
    /// [`Quota::new_authors`].
    NewAuthors,
}

/// A session that went over its [`Quota`]: what, the limit, and what the session would have
/// reached with the refused message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("over this server's quota per session: {} {} (at most {limit})", .reached, match .part {
    QuotaPart::Ops => "ops pushed",
    QuotaPart::Bytes => "bytes of ops pushed",
    QuotaPart::NewAuthors => "authors new to the server",
})]
pub struct QuotaExceeded {
    /// The part gone over.
    pub part: QuotaPart,
    /// Its limit.
    pub limit: u64,
    /// What the session would have reached.
    pub reached: u64,
}

/// What a session pushed so far, against its quota.
#[derive(Debug, Default)]
pub(crate) struct Pushed {
    ops: u64,
    bytes: u64,
    new_authors: BTreeSet<DeviceId>,
}

impl Pushed {
    /// Counts one `Ops` message of `ops` ops in `bytes` bytes by `authors`, `held` being what
    /// the server holds; refuses it, counting nothing, if the session would go over `quota`.
    pub(crate) fn count(
        &mut self,
        quota: &Quota,
        ops: u64,
        bytes: u64,
        authors: &[DeviceId],
        held: &Summary,
    ) -> Result<(), QuotaExceeded> {
        let over = |part, limit, reached| {
            if reached > limit {
                Err(QuotaExceeded {
                    part,
                    limit,
                    reached,
                })
            } else {
                Ok(())
            }
        };
        let reached_ops = self.ops.saturating_add(ops);
        over(QuotaPart::Ops, quota.ops, reached_ops)?;
        let reached_bytes = self.bytes.saturating_add(bytes);
        over(QuotaPart::Bytes, quota.bytes, reached_bytes)?;
        let new: BTreeSet<DeviceId> = authors
            .iter()
            .filter(|a| !held.contains_key(*a) && !self.new_authors.contains(*a))
            .copied()
            .collect();
        let reached_authors = (self.new_authors.len() + new.len()) as u64;
        over(QuotaPart::NewAuthors, quota.new_authors, reached_authors)?;
        self.ops = reached_ops;
        self.bytes = reached_bytes;
        self.new_authors.extend(new);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_message_that_would_go_over_is_refused_and_not_counted() {
        let quota = Quota {
            ops: 10,
            bytes: 1000,
            new_authors: 2,
        };
        let (a, b, c) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
        let held: Summary = Summary::new();
        let mut pushed = Pushed::default();
        pushed.count(&quota, 6, 100, &[a], &held).unwrap();
        let e = pushed.count(&quota, 5, 100, &[a], &held).unwrap_err();
        assert_eq!((e.part, e.limit, e.reached), (QuotaPart::Ops, 10, 11));
        pushed.count(&quota, 4, 100, &[a, b], &held).unwrap();
        assert_eq!(pushed.ops, 10, "the refused message was not counted");
        let mut pushed = Pushed::default();
        pushed.count(&quota, 1, 999, &[a, b], &held).unwrap();
        let e = pushed.count(&quota, 1, 2, &[], &held).unwrap_err();
        assert_eq!(e.part, QuotaPart::Bytes);
        let e = pushed.count(&quota, 0, 0, &[b, c], &held).unwrap_err();
        assert_eq!((e.part, e.reached), (QuotaPart::NewAuthors, 3));
        assert!(
            e.to_string()
                .contains("authors new to the server (at most 2)"),
            "{e}"
        );
    }
}
