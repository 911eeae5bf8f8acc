//! The queue between the HTTP handlers and the GPU worker: a bounded FIFO of job ids behind a
//! small interface, so a distributed queue can replace the in-process one without touching the
//! handlers or the worker.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::jobs::JobId;

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its capacity already; try again later.
    Full { capacity: usize },
    /// The server is shutting down.
    Closed,
    /// An idempotency key already names the job of another body.
    KeyReused,
}

/// What the worker's wait for a job ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop {
    Job(JobId),
    /// Nothing came within the time asked for.
    Idle,
    /// The queue is closed: the worker stops.
    Closed,
}

/// What the handlers and the worker need of a queue.
pub trait JobQueue: Send + Sync {
    /// Adds `id` at the back, or says why not.
    fn push(&self, id: JobId) -> Result<(), Refused>;
    /// The front job, waiting for one at most `wait` (`None`: as long as it takes).
    fn pop(&self, wait: Option<Duration>) -> Pop;
    /// Takes `id` out of the queue; false when it is not queued (running or finished).
    fn remove(&self, id: JobId) -> bool;
    /// `id`'s place, 0 = next to run.
    fn position(&self, id: JobId) -> Option<usize>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Refuses new jobs, drops the queued ones (returned) and wakes the worker.
    fn close(&self) -> Vec<JobId>;
}

/// The in-process queue: a mutex-guarded deque and a condition variable for the worker.
pub struct LocalQueue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
}

struct State {
    ids: VecDeque<JobId>,
    closed: bool,
}

impl LocalQueue {
    pub fn new(capacity: usize) -> Self {
        LocalQueue {
            state: Mutex::new(State {
                ids: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // a panic while holding this lock cannot leave the deque half-changed
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl JobQueue for LocalQueue {
    fn push(&self, id: JobId) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.ids.len() >= self.capacity {
            return Err(Refused::Full {
                capacity: self.capacity,
            });
        }
        state.ids.push_back(id);
        self.ready.notify_one();
        Ok(())
    }

    fn pop(&self, wait: Option<Duration>) -> Pop {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut state = self.lock();
        loop {
            if state.closed {
                return Pop::Closed;
            }
            if let Some(id) = state.ids.pop_front() {
                return Pop::Job(id);
            }
            state = match deadline {
                None => self.ready.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return Pop::Idle;
                    };
                    let waited = self.ready.wait_timeout(state, left);
                    waited.unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    fn remove(&self, id: JobId) -> bool {
        let mut state = self.lock();
        let before = state.ids.len();
        state.ids.retain(|&queued| queued != id);
        state.ids.len() != before
    }

    fn position(&self, id: JobId) -> Option<usize> {
        self.lock().ids.iter().position(|&queued| queued == id)
    }

    fn len(&self) -> usize {
        self.lock().ids.len()
    }

    fn close(&self) -> Vec<JobId> {
        let mut state = self.lock();
        state.closed = true;
        self.ready.notify_all();
        state.ids.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_bounded_removable_closable() {
        let q = LocalQueue::new(2);
        let (a, b, c) = (JobId(1), JobId(2), JobId(3));
        assert_eq!(q.push(a), Ok(()));
        assert_eq!(q.push(b), Ok(()));
        assert_eq!(q.push(c), Err(Refused::Full { capacity: 2 }));
        assert_eq!(q.position(b), Some(1));
        assert!(q.remove(a));
        assert!(!q.remove(a));
        assert_eq!(q.position(b), Some(0));
        assert_eq!(q.push(c), Ok(()));
        assert_eq!(q.pop(None), Pop::Job(b));
        assert_eq!(q.pop(Some(Duration::ZERO)), Pop::Job(c));
        assert_eq!(q.pop(Some(Duration::from_millis(10))), Pop::Idle);
        assert_eq!(q.push(c), Ok(()));
        assert_eq!(q.close(), vec![c]);
        assert_eq!(q.pop(None), Pop::Closed);
        assert_eq!(q.push(a), Err(Refused::Closed));
    }
}
