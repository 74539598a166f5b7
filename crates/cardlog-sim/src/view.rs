//! Read access to the replicas of a running simulation ([`Sim::replica`]), for properties an
//! app writes on top of the built-in ones (docs/SIM.md, "Writing your own properties"): what a
//! replica shows (contacts, one contact, conflicts, the history of a path), what it holds (its
//! summary and ops), and what the reference model says it should show.

use std::collections::BTreeMap;

use cardlog_core::{
    ContactId, ContactView, DeviceId, FieldConflict, HistoryEntry, Path, SealedOp, Summary,
};

use crate::model::ModelContact;
use crate::sim::{Node, Sim, Violation};

/// One replica of a [`Sim`], read-only. Reads fail (with a [`Violation`] naming the read)
/// only if the replica's store fails.
pub struct ReplicaView<'a> {
    sim: &'a Sim,
    node: &'a Node,
    index: usize,
}

impl Sim {
    /// How many replicas the simulation runs.
    pub fn replica_count(&self) -> usize {
        self.nodes().len()
    }

    /// Replica `index` (as the schedule numbers them), if there is one.
    pub fn replica(&self, index: usize) -> Option<ReplicaView<'_>> {
        self.nodes().get(index).map(|node| ReplicaView {
            sim: self,
            node,
            index,
        })
    }

    /// Every replica, in order.
    pub fn replicas(&self) -> impl Iterator<Item = ReplicaView<'_>> {
        (0..self.replica_count()).filter_map(|i| self.replica(i))
    }
}

impl ReplicaView<'_> {
    /// Its number in the schedule.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The device id it writes as.
    pub fn device(&self) -> Result<DeviceId, Violation> {
        self.node.device()
    }

    /// The contacts it shows (deleted ones left out), in id order.
    pub fn contacts(&self) -> Result<Vec<ContactView>, Violation> {
        Ok(self
            .node
            .views()?
            .into_iter()
            .filter(|v| !v.deleted)
            .collect())
    }

    /// One contact as it shows it (deleted ones too, marked), if it holds it.
    pub fn contact(&self, id: &ContactId) -> Result<Option<ContactView>, Violation> {
        Ok(self.node.views()?.into_iter().find(|v| v.contact.id == *id))
    }

    /// Every conflicted path it shows, by contact (deleted contacts left out).
    pub fn conflicts(&self) -> Result<Vec<(ContactId, FieldConflict)>, Violation> {
        Ok(self
            .contacts()?
            .into_iter()
            .flat_map(|v| {
                let id = v.contact.id;
                v.conflicts.into_iter().map(move |c| (id, c))
            })
            .collect())
    }

    /// Every value path `path` of contact `id` has had here, oldest first.
    pub fn history(&self, id: &ContactId, path: &Path) -> Result<Vec<HistoryEntry>, Violation> {
        self.node.history(id, path)
    }

    /// Per author, the last op it holds.
    pub fn summary(&self) -> Result<Summary, Violation> {
        self.node.summary()
    }

    /// Every op it holds, in an order where dependencies come first.
    pub fn ops(&self) -> Result<Vec<SealedOp>, Violation> {
        self.node.ops()
    }

    /// What the reference model ([`crate::model`]) says it should show, from the ops it holds
    /// (deleted contacts included, as [`ModelContact::deleted`]): the view the built-in
    /// "reference model" property compares with [`ReplicaView::contacts`].
    pub fn model(&self) -> Result<BTreeMap<ContactId, ModelContact>, Violation> {
        Ok(self.sim.model_of(&self.node.ops()?))
    }
}
