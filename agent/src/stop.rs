//! A one-shot, thread-safe stop request (agent shutdown, Ctrl-C), with listeners and sleeps
//! that end early when it fires.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Why the agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// `SIGTERM` (or a service stop on Windows).
    Terminate,
    /// `SIGINT` / Ctrl-C.
    Interrupt,
    /// Asked for by the program itself (tests, embedding).
    Requested,
}

impl StopReason {
    /// The conventional "killed by signal" exit code, 128 + signal number.
    pub fn signal_exit_code(self) -> u8 {
        match self {
            StopReason::Interrupt => 130,
            StopReason::Terminate | StopReason::Requested => 143,
        }
    }
}

type Listener = Box<dyn Fn(StopReason) + Send + Sync>;

#[derive(Default)]
struct State {
    reason: Option<StopReason>,
    next_id: u64,
    listeners: Vec<(u64, Arc<Listener>)>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    cv: Condvar,
}

/// A stop request shared by every part of a run. Cloning shares it.
#[derive(Clone, Default)]
pub struct StopToken {
    inner: Arc<Inner>,
}

impl fmt::Debug for StopToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopToken")
            .field("reason", &self.reason())
            .finish()
    }
}

impl StopToken {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fires the token (only the first call counts) and calls the listeners.
    pub fn stop(&self, reason: StopReason) {
        let listeners: Vec<Arc<Listener>> = {
            let mut st = self.state();
            if st.reason.is_some() {
                return;
            }
            st.reason = Some(reason);
            st.listeners.iter().map(|(_, l)| Arc::clone(l)).collect()
        };
        self.inner.cv.notify_all();
        for listener in listeners {
            listener(reason);
        }
    }

    /// Why it fired, if it has.
    pub fn reason(&self) -> Option<StopReason> {
        self.state().reason
    }

    /// Whether it has fired.
    pub fn is_stopped(&self) -> bool {
        self.reason().is_some()
    }

    /// Calls `f` when the token fires, or right away if it has. The returned guard removes the
    /// listener when dropped.
    pub fn on_stop(&self, f: impl Fn(StopReason) + Send + Sync + 'static) -> Subscription {
        let listener: Arc<Listener> = Arc::new(Box::new(f));
        let (id, fired) = {
            let mut st = self.state();
            let id = st.next_id;
            st.next_id += 1;
            st.listeners.push((id, Arc::clone(&listener)));
            (id, st.reason)
        };
        if let Some(reason) = fired {
            listener(reason);
        }
        Subscription {
            token: self.clone(),
            id,
        }
    }

    /// Sleeps `duration`, or less if the token fires. Returns whether it fired.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut st = self.state();
        loop {
            if st.reason.is_some() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .inner
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Keeps a listener registered; dropping it unregisters.
pub struct Subscription {
    token: StopToken,
    id: u64,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.token
            .state()
            .listeners
            .retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn fires_once_and_calls_listeners() {
        let token = StopToken::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let sub = token.on_stop(move |r| {
            assert_eq!(r, StopReason::Interrupt);
            c.fetch_add(1, Ordering::SeqCst);
        });
        let c2 = Arc::clone(&calls);
        let dropped = token.on_stop(move |_| {
            c2.fetch_add(100, Ordering::SeqCst);
        });
        drop(dropped);
        assert!(!token.is_stopped());
        token.stop(StopReason::Interrupt);
        token.stop(StopReason::Terminate);
        assert_eq!(token.reason(), Some(StopReason::Interrupt));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Late subscribers are called at once.
        let c3 = Arc::clone(&calls);
        let _late = token.on_stop(move |_| {
            c3.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(calls.load(Ordering::SeqCst), 11);
        drop(sub);
    }

    #[test]
    fn sleep_ends_when_stopped() {
        let token = StopToken::new();
        assert!(!token.sleep(Duration::from_millis(1)));
        let t = token.clone();
        let waiter = std::thread::spawn(move || t.sleep(Duration::from_secs(600)));
        token.stop(StopReason::Requested);
        assert!(waiter.join().expect("no panic"));
        assert!(token.sleep(Duration::from_secs(600)));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(StopReason::Interrupt.signal_exit_code(), 130);
        assert_eq!(StopReason::Terminate.signal_exit_code(), 143);
    }
}
