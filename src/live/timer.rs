//! A wake-up at a precise instant, for the customer driver's schedule.
//!
//! tokio's timer wheel has a resolution of one millisecond, and a sleep
//! ends on the tick after its deadline: on average a millisecond late. At
//! ×480 that is half a second of scenario time added to every latency the
//! driver measures. A thread waiting on a condition variable with a timeout
//! wakes within tens of microseconds of its deadline (the kernel's timer
//! slack), costs nothing while it waits, and hands the wake-up to the async
//! side through a `Notify`.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

#[derive(Default)]
struct Deadline {
    at: Option<Instant>,
    stop: bool,
}

/// See the module docs. Dropping it stops its thread.
pub(crate) struct PreciseTimer {
    state: Arc<(Mutex<Deadline>, Condvar)>,
    fired: Arc<Notify>,
}

impl PreciseTimer {
    pub(crate) fn new() -> PreciseTimer {
        let state: Arc<(Mutex<Deadline>, Condvar)> = Arc::default();
        let fired = Arc::new(Notify::new());
        let (s, f) = (state.clone(), fired.clone());
        std::thread::Builder::new()
            .name("kfsim-timer".into())
            .spawn(move || run(&s, &f))
            .expect("spawning the driver's timer thread");
        PreciseTimer { state, fired }
    }

    /// Wake at `at` (replacing the deadline set before).
    pub(crate) fn set(&self, at: Instant) {
        let (m, cv) = &*self.state;
        let old = m.lock().unwrap_or_else(|e| e.into_inner()).at.replace(at);
        // A later deadline needs no wake-up: the thread, woken at the old
        // one, finds the new one and waits on. The agents' loop sets one on
        // every turn; a wake-up each was a context switch each.
        if old.is_none_or(|old| at < old) {
            cv.notify_one();
        }
    }

    /// The deadline has passed (or passes now: a deadline that fired while
    /// nobody waited is remembered).
    pub(crate) async fn fired(&self) {
        self.fired.notified().await;
    }
}

impl Drop for PreciseTimer {
    fn drop(&mut self) {
        let (m, cv) = &*self.state;
        m.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_one();
    }
}

fn run(state: &(Mutex<Deadline>, Condvar), fired: &Notify) {
    let (m, cv) = state;
    let mut d = m.lock().unwrap_or_else(|e| e.into_inner());
    while !d.stop {
        d = match d.at {
            None => cv.wait(d).unwrap_or_else(|e| e.into_inner()),
            Some(at) => {
                let now = Instant::now();
                if at <= now {
                    d.at = None;
                    fired.notify_one();
                    continue;
                }
                cv.wait_timeout(d, at - now).unwrap_or_else(|e| e.into_inner()).0
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// It fires, once per deadline, and not before the deadline.
    #[tokio::test]
    async fn fires_at_the_deadline_not_before() {
        let t = PreciseTimer::new();
        for wait_ms in [5, 1, 20] {
            let at = Instant::now() + Duration::from_millis(wait_ms);
            t.set(at);
            tokio::time::timeout(Duration::from_secs(5), t.fired()).await.expect("fired");
            assert!(Instant::now() >= at, "early");
        }
        // a later deadline replaces an earlier one
        t.set(Instant::now() + Duration::from_secs(3600));
        t.set(Instant::now() + Duration::from_millis(2));
        tokio::time::timeout(Duration::from_secs(5), t.fired()).await.expect("the replacing deadline fired");
        // and an earlier one a later one, without firing at the earlier
        let later = Instant::now() + Duration::from_millis(30);
        t.set(Instant::now() + Duration::from_millis(10));
        t.set(later);
        tokio::time::timeout(Duration::from_secs(5), t.fired()).await.expect("the later deadline fired");
        assert!(Instant::now() >= later, "fired at the replaced deadline");
    }
}
