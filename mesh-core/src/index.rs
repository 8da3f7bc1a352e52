//! The monotonic index of a datacenter's state.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A position in a datacenter's history: every write bumps it by at least one.
/// Index 0 means "nothing yet"; readers block until the index passes a value they saw.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Index(pub u64);

impl Index {
    /// The index before any write.
    pub const ZERO: Index = Index(0);

    /// The next index.
    pub fn next(self) -> Index {
        Index(self.0.saturating_add(1))
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for Index {
    fn from(v: u64) -> Self {
        Index(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_saturates() {
        assert_eq!(Index::ZERO.next(), Index(1));
        assert_eq!(Index(u64::MAX).next(), Index(u64::MAX));
    }
}
