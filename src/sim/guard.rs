//! [`FaultGuard`]: a fault injected for a scope, cleared when the guard drops (turmoil's rule
//! guards), so a test cannot leave a fault behind for the next part of it by forgetting to.

use crate::fault::FaultId;
use crate::mock::HttpMocks;

/// A fault in force until the guard drops; [`FaultGuard::keep`] leaves it in force for good.
///
/// The fault set is shared by every mock, so this clears an SMTP fault as well as an HTTP one.
#[derive(Debug)]
#[must_use = "the fault is cleared when the guard drops; call keep() to leave it in force"]
pub struct FaultGuard {
    mocks: HttpMocks,
    id: FaultId,
    kept: bool,
}

impl FaultGuard {
    pub(crate) fn new(mocks: HttpMocks, id: FaultId) -> FaultGuard {
        FaultGuard {
            mocks,
            id,
            kept: false,
        }
    }

    /// The fault's id in the shared fault set.
    pub fn id(&self) -> FaultId {
        self.id
    }

    /// Leaves the fault in force after the guard is gone; its id still clears it
    /// ([`HttpMocks::clear`]).
    pub fn keep(mut self) -> FaultId {
        self.kept = true;
        self.id
    }

    /// Clears the fault now (as dropping the guard does, but where the reader sees it).
    pub fn clear(self) {}
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        if !self.kept {
            self.mocks.clear(self.id);
        }
    }
}
