//! The diff between a local copy and the primary's complete listing (Consul's `diffACLType` and
//! `diffConfigEntries` rules).

use std::cmp::Ordering;

use mesh_core::Index;

use crate::record::Record;

/// What the diff needs from an item.
pub trait DiffItem {
    /// The key the two sides are matched on; an empty key is skipped.
    fn key(&self) -> &str;
    /// The content hash; an empty hash counts as "different" from everything.
    fn hash(&self) -> &[u8];
    /// The index of the last change, on the side the item comes from.
    fn modify_index(&self) -> Index;
}

impl DiffItem for Record {
    fn key(&self) -> &str {
        &self.id
    }
    fn hash(&self) -> &[u8] {
        self.hash.as_bytes()
    }
    fn modify_index(&self) -> Index {
        self.modify_index
    }
}

/// The result of [`diff`]: positions into the inputs, each list sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Local items whose key the remote listing no longer holds.
    pub deletes: Vec<usize>,
    /// Remote items to write locally: absent locally, or changed since `last_remote_index`.
    pub upserts: Vec<usize>,
    /// Local items with an empty key (left alone).
    pub local_skipped: usize,
    /// Remote items with an empty key (ignored).
    pub remote_skipped: usize,
}

impl Diff {
    /// Whether nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.upserts.is_empty()
    }
}

/// Compares the local copy with the primary's COMPLETE listing.
///
/// Rules (Consul's ACL and config-entry replication, see docs/consul-compatibility.md,
/// 'Replication'): items are matched by key; a key only local is deleted, a key only remote is
/// upserted; a key on both sides is upserted when the remote modify index is above
/// `last_remote_index` and the hashes differ (an empty hash on either side counts as different);
/// empty keys are skipped and counted. Passing `Index::ZERO` (full resync) compares every hash.
///
/// Only a complete listing may be diffed: a partial one would turn missing items into deletes.
pub fn diff<L: DiffItem, R: DiffItem>(local: &[L], remote: &[R], last_remote_index: Index) -> Diff {
    let mut out = Diff::default();
    let mut l: Vec<usize> = (0..local.len()).collect();
    let mut r: Vec<usize> = (0..remote.len()).collect();
    l.retain(|&i| {
        let keep = !local[i].key().is_empty();
        if !keep {
            out.local_skipped += 1;
        }
        keep
    });
    r.retain(|&i| {
        let keep = !remote[i].key().is_empty();
        if !keep {
            out.remote_skipped += 1;
        }
        keep
    });
    l.sort_by(|&a, &b| local[a].key().cmp(local[b].key()));
    r.sort_by(|&a, &b| remote[a].key().cmp(remote[b].key()));
    let (mut i, mut j) = (0, 0);
    while i < l.len() || j < r.len() {
        let ord = match (l.get(i), r.get(j)) {
            (Some(&a), Some(&b)) => local[a].key().cmp(remote[b].key()),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match ord {
            Ordering::Less => {
                out.deletes.push(l[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.upserts.push(r[j]);
                j += 1;
            }
            Ordering::Equal => {
                let (a, b) = (&local[l[i]], &remote[r[j]]);
                let differ = a.hash().is_empty() || b.hash().is_empty() || a.hash() != b.hash();
                if b.modify_index() > last_remote_index && differ {
                    out.upserts.push(r[j]);
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct It(&'static str, &'static [u8], u64);
    impl DiffItem for It {
        fn key(&self) -> &str {
            self.0
        }
        fn hash(&self) -> &[u8] {
            self.1
        }
        fn modify_index(&self) -> Index {
            Index(self.2)
        }
    }

    #[test]
    fn duplicate_local_keys_do_not_panic() {
        let local = [It("a", b"1", 1), It("a", b"1", 1)];
        let remote = [It("a", b"1", 1)];
        let d = diff(&local, &remote, Index(0));
        assert_eq!(d.deletes, vec![1]);
        assert!(d.upserts.is_empty());
    }

    #[test]
    fn unchanged_is_empty() {
        let local = [It("a", b"1", 1), It("b", b"2", 4)];
        let remote = [It("b", b"2", 9), It("a", b"1", 7)];
        assert!(diff(&local, &remote, Index(0)).is_empty());
    }
}
