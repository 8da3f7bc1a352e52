//! Check-and-set evaluation of a transaction, shared by both stores.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use mesh_core::Index;

use super::StoreError;
use crate::record::{TxnOp, Value};
use crate::table::TableName;

/// The final effect of a transaction on one record.
pub(crate) enum Effect {
    /// Write the value; `create` is the existing create index, `None` when the record is new.
    Put { value: Value, create: Option<Index> },
    /// Remove the record if present.
    Remove,
}

enum Slot {
    /// As in the store: `(create, modify)` or absent.
    Stored(Option<(Index, Index)>),
    /// Changed earlier in this transaction.
    Pending(Option<Index>, bool),
}

/// Evaluates `ops` in order against the store (read through `current`) and returns the effect on
/// each touched record, or the first check-and-set failure.
pub(crate) fn stage(
    ops: Vec<TxnOp>,
    mut current: impl FnMut(&TableName, &str) -> Result<Option<(Index, Index)>, StoreError>,
) -> Result<BTreeMap<(TableName, String), Effect>, StoreError> {
    let mut slots: BTreeMap<(TableName, String), (Slot, Option<Effect>)> = BTreeMap::new();
    for op in ops {
        let key = (op.table().clone(), op.id().to_owned());
        let entry = match slots.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let found = current(&v.key().0, &v.key().1)?;
                v.insert((Slot::Stored(found), None))
            }
        };
        // (exists, create index to keep, modify index visible to a CAS)
        let (exists, create, modify) = match &entry.0 {
            Slot::Stored(Some((c, m))) => (true, Some(*c), Some(*m)),
            Slot::Stored(None) => (false, None, None),
            Slot::Pending(c, exists) => (*exists, *c, None),
        };
        let cas = match &op {
            TxnOp::Upsert { cas, .. } | TxnOp::Delete { cas, .. } => *cas,
        };
        if let Some(expected) = cas {
            let ok = match (&op, exists) {
                (TxnOp::Upsert { .. }, false) => expected == Index::ZERO,
                (_, true) => modify == Some(expected),
                (TxnOp::Delete { .. }, false) => false,
            };
            if !ok {
                return Err(StoreError::CasConflict {
                    table: op.table().clone(),
                    id: op.id().to_owned(),
                    expected,
                    found: modify,
                });
            }
        }
        match op {
            TxnOp::Upsert { value, .. } => {
                let create = if exists { create } else { None };
                entry.0 = Slot::Pending(create, true);
                entry.1 = Some(Effect::Put { value, create });
            }
            TxnOp::Delete { .. } => {
                entry.0 = Slot::Pending(None, false);
                entry.1 = Some(Effect::Remove);
            }
        }
    }
    Ok(slots
        .into_iter()
        .filter_map(|(k, (_, e))| e.map(|e| (k, e)))
        .collect())
}
