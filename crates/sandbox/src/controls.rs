//! Test hooks: make the sandbox slow or failing on purpose, and see what it received.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gateway_core::time::{Clock, SystemClock};
use http::{HeaderMap, StatusCode};

/// Why a control value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// `set_fail` was given something that is not a final HTTP status.
    #[error("{status} is not a status the sandbox can answer with (200..=599)")]
    InvalidStatus {
        /// The refused value.
        status: u16,
    },
}

/// Shared, live settings of one sandbox, held by the test (or the `/sandbox/*` endpoints) and
/// read by every request.
///
/// The controls act on *service* requests — everything outside `/sandbox/` — so polling or
/// changing them over HTTP does not disturb what a test observes.
///
/// ```
/// use std::time::Duration;
/// use gateway_sandbox::Controls;
///
/// let controls = Controls::new();
/// controls.set_stall(Some(Duration::from_millis(300))); // every answer waits 300 ms
/// controls.set_fail(Some(503)).unwrap();               // ... then is a 503
/// controls.reset();                                     // back to normal
/// assert_eq!(controls.stall(), None);
/// ```
#[derive(Debug)]
pub struct Controls {
    /// Stall in nanoseconds; [`NO_STALL`] when off.
    stall_nanos: AtomicU64,
    /// Status to fail with; 0 when off.
    fail: AtomicU16,
    /// Service requests received.
    requests: AtomicU64,
    /// Headers of the last service request; replaced (not merged) on every request.
    last_headers: Mutex<Option<HeaderMap>>,
    /// Where `registered_at` and `occurred_at` come from.
    clock: Arc<dyn Clock>,
}

const NO_STALL: u64 = u64::MAX;

impl Controls {
    /// Controls with nothing injected, on the system clock.
    pub fn new() -> Self {
        Controls::with_clock(Arc::new(SystemClock))
    }

    /// Controls whose referral timestamps come from `clock` (e.g. a `ManualClock`).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Controls {
            stall_nanos: AtomicU64::new(NO_STALL),
            fail: AtomicU16::new(0),
            requests: AtomicU64::new(0),
            last_headers: Mutex::new(None),
            clock,
        }
    }

    /// Makes every service request wait `stall` before it is answered; `None` answers at once.
    /// Applies to requests that arrive after the call.
    pub fn set_stall(&self, stall: Option<Duration>) {
        let nanos = stall.map_or(NO_STALL, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(NO_STALL - 1)
        });
        self.stall_nanos.store(nanos, Ordering::Relaxed);
    }

    /// The current stall.
    pub fn stall(&self) -> Option<Duration> {
        match self.stall_nanos.load(Ordering::Relaxed) {
            NO_STALL => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// Makes every service request answer `status` (after any stall) with a JSON error body;
    /// `None` answers normally.
    pub fn set_fail(&self, status: Option<u16>) -> Result<(), ControlError> {
        let value = match status {
            None => 0,
            Some(s @ 200..=599) => s,
            Some(status) => return Err(ControlError::InvalidStatus { status }),
        };
        self.fail.store(value, Ordering::Relaxed);
        Ok(())
    }

    /// The status service requests currently fail with.
    pub fn fail(&self) -> Option<StatusCode> {
        match self.fail.load(Ordering::Relaxed) {
            0 => None,
            // Only 200..=599 is ever stored, and every such value is a valid status code.
            code => StatusCode::from_u16(code).ok(),
        }
    }

    /// The headers of the last service request received, if any.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.last_headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many service requests were received (including stalled, failed and 404 ones).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Turns off stall and fail, forgets the last headers and zeroes the request counter.
    pub fn reset(&self) {
        self.set_stall(None);
        self.fail.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        *self
            .last_headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The clock referral timestamps are taken from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Counts a service request and keeps its headers.
    pub(crate) fn record(&self, headers: &HeaderMap) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // Clone outside the lock and drop the previous map after it, so the critical section
        // is a pointer swap even when requests arrive on both cores at once.
        let mut headers = Some(headers.clone());
        {
            let mut last = self
                .last_headers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut *last, &mut headers);
        }
        drop(headers);
    }
}

impl Default for Controls {
    fn default() -> Self {
        Controls::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_accepts_final_statuses_only() {
        let controls = Controls::new();
        assert_eq!(controls.set_fail(Some(503)), Ok(()));
        assert_eq!(controls.fail(), Some(StatusCode::SERVICE_UNAVAILABLE));
        for status in [0, 100, 199, 600, 999, u16::MAX] {
            assert_eq!(
                controls.set_fail(Some(status)),
                Err(ControlError::InvalidStatus { status })
            );
        }
        // A refused value leaves the previous setting in place.
        assert_eq!(controls.fail(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(controls.set_fail(None), Ok(()));
        assert_eq!(controls.fail(), None);
    }

    #[test]
    fn stall_round_trips_and_reset_clears_everything() {
        let controls = Controls::new();
        assert_eq!(controls.stall(), None);
        controls.set_stall(Some(Duration::from_millis(250)));
        assert_eq!(controls.stall(), Some(Duration::from_millis(250)));
        controls.set_stall(Some(Duration::ZERO));
        assert_eq!(controls.stall(), Some(Duration::ZERO));

        let mut headers = HeaderMap::new();
        headers.insert("x-test", "1".parse().unwrap());
        controls.record(&headers);
        controls.set_fail(Some(500)).unwrap();
        assert_eq!(controls.requests(), 1);
        assert_eq!(controls.last_headers(), Some(headers));

        controls.reset();
        assert_eq!(
            (
                controls.stall(),
                controls.fail(),
                controls.requests(),
                controls.last_headers()
            ),
            (None, None, 0, None)
        );
    }
}
