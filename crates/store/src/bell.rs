//! Wakes the readers waiting for a client's queue to gain messages (the
//! client API's long polls), once the messages are durable: a waiting read
//! costs nothing until its client has something, however many wait.
//!
//! It rings for what this process stores; a store shared by several
//! processes (PostgreSQL) also rings it for what the others store (by
//! `LISTEN`/`NOTIFY`). A reader still looks again now and then on its own,
//! for a notification lost while the store reconnected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Who waits for which client's queue.
#[derive(Default)]
pub struct QueueBell {
    clients: Mutex<HashMap<String, Arc<Notify>>>,
}

/// One reader's place at the bell; dropping it leaves.
pub struct Listener<'a> {
    bell: &'a QueueBell,
    client: String,
    notify: Arc<Notify>,
}

impl QueueBell {
    /// Starts listening for `client`'s queue. Take [`Listener::notified`]
    /// and enable it before looking at the queue, so that nothing stored
    /// between the look and the wait is missed.
    pub fn listen(&self, client: &str) -> Listener<'_> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let notify = clients.entry(client.to_owned()).or_default().clone();
        Listener {
            bell: self,
            client: client.to_owned(),
            notify,
        }
    }

    /// Wakes every reader of these clients' queues.
    pub(crate) fn ring<'c>(&self, clients: impl IntoIterator<Item = &'c str>) {
        let waiting = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.is_empty() {
            return;
        }
        for client in clients {
            if let Some(notify) = waiting.get(client) {
                notify.notify_waiters();
            }
        }
    }

    /// Clients with a reader waiting.
    pub fn listening(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Listener<'_> {
    /// Resolves when the client's queue gained messages after this future
    /// was enabled (or first polled).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        let mut clients = self
            .bell
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map's and this one: the last listener of its client.
        if Arc::strong_count(&self.notify) == 2 {
            clients.remove(&self.client);
        }
    }
}
