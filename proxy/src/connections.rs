//! Client connection slots, and which connection gives its slot up when they run out.
//!
//! A slot is held from accept to close, `limits.maxConnections` of them. A connection is either
//! *waiting* for a request head (just connected, trickling a head, or idle between keep-alive
//! requests) or *busy* (a request of its own is being answered). At the limit, the next client
//! accepted takes the slot of the connection that has waited longest; a busy one is never taken.
//!
//! Why: a crowd of clients that connect and send their heads a byte at a time would otherwise
//! hold every slot until the head deadline (5 s by default), and Prometheus, arriving behind them,
//! would wait in the listen backlog that long. Prometheus sends its whole head the moment it
//! connects, so it is the youngest waiting connection, never the one evicted, and is busy a
//! millisecond later; each slow client keeps its slot only until a newer client needs one. Only
//! when every slot is answering a request does a new client wait, in the kernel's backlog, which
//! costs the sidecar no memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

const WAITING: u8 = 0;
const BUSY: u8 = 1;
/// Its slot was given to a newer client; the connection's task closes it.
const EVICTED: u8 = 2;

/// The open client connections and their slots.
pub struct Connections {
    permits: Arc<Semaphore>,
    max: usize,
    open: Mutex<HashMap<u64, Arc<State>>>,
    next_id: AtomicU64,
    /// Ticks once each time a connection starts waiting; the smallest tick waited longest.
    /// (An order is all eviction needs, so no clock is read per request.)
    ticks: AtomicU64,
    /// Raised when a busy connection goes back to waiting: a client held at the limit may take it.
    became_waiting: Notify,
}

struct State {
    phase: AtomicU8,
    /// The tick at which it last started waiting.
    waiting_since: AtomicU64,
    evict: Notify,
}

impl Connections {
    pub(crate) fn new(max: u64) -> Arc<Self> {
        let max =
            usize::try_from(max).unwrap_or(Semaphore::MAX_PERMITS).min(Semaphore::MAX_PERMITS);
        Arc::new(Connections {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            became_waiting: Notify::new(),
        })
    }

    /// Connections open now.
    pub fn in_use(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// A slot for a client just accepted: a free one, or at the limit the slot of the connection
    /// that has waited longest for a request head, which is closed for it. Waits only while
    /// every slot is answering a request. The second value is whether a connection was evicted.
    pub(crate) async fn admit(self: &Arc<Self>) -> (Slot, bool) {
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return (self.register(permit), false);
            }
            if self.evict_longest_waiting() {
                // The evicted connection's task drops its slot the next time it runs; the
                // listener is the only taker, so that slot comes here.
                return (self.register(self.take().await), true);
            }
            tokio::select! {
                permit = self.take() => return (self.register(permit), false),
                () = self.became_waiting.notified() => {}
            }
        }
    }

    async fn take(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed, so acquiring cannot fail.
        self.permits
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"))
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(State {
            phase: AtomicU8::new(WAITING),
            waiting_since: AtomicU64::new(self.tick()),
            evict: Notify::new(),
        });
        self.lock().insert(id, state.clone());
        Slot { id, state, connections: self.clone(), _permit: permit }
    }

    /// Marks the connection that has waited longest as evicted and wakes its task; `false` when
    /// every connection is busy. A scan of at most `maxConnections` entries, made only at the
    /// limit.
    fn evict_longest_waiting(&self) -> bool {
        let open = self.lock();
        let mut candidates: Vec<_> = open
            .values()
            .filter(|s| s.phase.load(Ordering::Relaxed) == WAITING)
            .map(|s| (s.waiting_since.load(Ordering::Relaxed), s))
            .collect();
        candidates.sort_unstable_by_key(|(since, _)| *since);
        // A candidate may turn busy between the scan and the exchange; then the next one.
        for (_, state) in candidates {
            if state
                .phase
                .compare_exchange(WAITING, EVICTED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                state.evict.notify_one();
                return true;
            }
        }
        false
    }

    fn tick(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<State>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's slot; dropping it frees the slot.
pub(crate) struct Slot {
    id: u64,
    state: Arc<State>,
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    /// The handle the connection's requests mark themselves busy with.
    pub(crate) fn activity(&self) -> Activity {
        Activity { state: self.state.clone(), connections: self.connections.clone() }
    }

    /// Resolves when a newer client has taken this slot; the connection must then be closed.
    pub(crate) async fn evicted(&self) {
        self.state.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
    }
}

/// Lets a connection's requests mark it busy while they are answered.
#[derive(Clone)]
pub(crate) struct Activity {
    state: Arc<State>,
    connections: Arc<Connections>,
}

impl Activity {
    /// Called when a request head has arrived; the connection is busy until the guard is
    /// dropped (with the response's body). A connection already evicted stays evicted.
    pub(crate) fn busy(&self) -> Busy {
        let _ =
            self.state.phase.compare_exchange(WAITING, BUSY, Ordering::AcqRel, Ordering::Relaxed);
        Busy(self.clone())
    }
}

/// Held while a request is answered; back to waiting for the next head when dropped.
pub(crate) struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        let Activity { state, connections } = &self.0;
        state.waiting_since.store(connections.tick(), Ordering::Relaxed);
        if state.phase.compare_exchange(BUSY, WAITING, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            connections.became_waiting.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_limit_the_longest_waiting_connection_gives_up_its_slot() {
        let connections = Connections::new(3);
        let (oldest, _) = connections.admit().await;
        let (busy, _) = connections.admit().await;
        let _serving = busy.activity().busy();
        let (young, _) = connections.admit().await;
        assert_eq!(connections.in_use(), 3);

        let admitting = {
            let connections = connections.clone();
            tokio::spawn(async move { connections.admit().await })
        };
        // The oldest waiting connection is told to go, not the busy one or the young one.
        tokio::time::timeout(std::time::Duration::from_secs(5), oldest.evicted())
            .await
            .expect("the longest-waiting connection was evicted");
        drop(oldest);
        let (_new, evicted) = admitting.await.unwrap();
        assert!(evicted);
        assert_eq!(connections.in_use(), 3);
        assert_eq!(young.state.phase.load(Ordering::Relaxed), WAITING);
        assert_eq!(busy.state.phase.load(Ordering::Relaxed), BUSY);
    }

    #[tokio::test]
    async fn when_every_connection_is_busy_a_new_client_waits_for_one_to_finish() {
        let connections = Connections::new(1);
        let (only, _) = connections.admit().await;
        let serving = only.activity().busy();
        let admitting = {
            let connections = connections.clone();
            tokio::spawn(async move { connections.admit().await })
        };
        tokio::task::yield_now().await;
        assert!(!admitting.is_finished(), "no slot may be taken from a busy connection");
        // The response ends: the connection waits again and is the one to give way.
        drop(serving);
        tokio::time::timeout(std::time::Duration::from_secs(5), only.evicted())
            .await
            .expect("evicted once it went back to waiting");
        drop(only);
        let (_new, evicted) = admitting.await.unwrap();
        assert!(evicted);
    }
}
