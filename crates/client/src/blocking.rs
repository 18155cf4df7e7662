//! The blocking facade: the same client for code without async.
//!
//! Each [`Client`] owns a small tokio runtime (one worker thread) that runs
//! the connection and the handlers; every method is the async client's
//! method run to completion on it, so there is one implementation. Methods
//! may be called from inside a handler (e.g. to answer a message or to
//! disconnect, as the seed's examples do).
//!
//! It is meant for code without async. Called from inside someone else's
//! tokio runtime (an `async fn`, `#[tokio::main]`, a current-thread
//! runtime) it still works rather than panicking: the call runs on a helper
//! thread while the calling thread waits, which stalls that thread (a whole
//! current-thread runtime) for the duration. In async code use
//! [`crate::Client`], or call the blocking client from
//! `tokio::task::spawn_blocking`. Dropping the last clone inside async code
//! is fine too: the client's runtime is then shut down in the background.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::{ConnectError, EmitError, FlushError, RequestError, SubscribeError};
use crate::{ClientBuilder, ListenerId, Message};

thread_local! {
    /// True on the threads of a blocking client's own runtime (where its
    /// handlers run), whose flavour allows `block_in_place`.
    static OWN_RUNTIME: Cell<bool> = const { Cell::new(false) };
}

/// A blocking client's runtime. Dropping a tokio runtime the ordinary way
/// blocks, which tokio refuses (with a panic) inside async code; there it
/// is shut down in the background instead.
#[derive(Debug)]
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            }
        }
    }
}

fn runtime() -> Result<Arc<Runtime>, ConnectError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("netcluster-client")
        .on_thread_start(|| OWN_RUNTIME.with(|c| c.set(true)))
        .enable_all()
        .build()
        .map(|rt| Arc::new(Runtime(Some(rt))))
        .map_err(|e| ConnectError::Io {
            path: "<runtime>".into(),
            cause: e,
        })
}

/// Where a blocking call is being made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Outside any runtime: run on the calling thread.
    Plain,
    /// On the client's own runtime (inside a handler): in place, as that
    /// runtime is multi-threaded and its other worker keeps the connection
    /// going.
    Own,
    /// Inside another runtime, possibly a current-thread one where blocking
    /// in place panics: on a helper thread while this one waits.
    Foreign,
}

fn caller() -> Caller {
    if tokio::runtime::Handle::try_current().is_err() {
        Caller::Plain
    } else if OWN_RUNTIME.with(Cell::get) {
        Caller::Own
    } else {
        Caller::Foreign
    }
}

/// Runs `f` to completion on `rt`, from any thread (see [`Caller`]).
fn block<F>(rt: &Runtime, f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    match caller() {
        Caller::Plain | Caller::Own => block_here(rt, f),
        Caller::Foreign => std::thread::scope(|s| {
            let rt = rt.get();
            std::thread::Builder::new()
                .name("netcluster-blocking-call".into())
                .spawn_scoped(s, || rt.block_on(f))
                .expect("spawn a thread for a blocking call")
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
    }
}

/// Runs `f` to completion on `rt` on this thread; for futures that cannot
/// move to another thread, called only when [`caller`] is not `Foreign`.
fn block_here<F: Future>(rt: &Runtime, f: F) -> F::Output {
    let rt = rt.get();
    match caller() {
        Caller::Own => tokio::task::block_in_place(|| rt.handle().block_on(f)),
        _ => rt.block_on(f),
    }
}

/// Options for a blocking connection; see [`crate::ClientBuilder`].
#[derive(Debug, Clone)]
pub struct Builder(ClientBuilder);

impl Builder {
    /// Applies an option of the async builder, e.g. `.with(|b| b.echo(false))`.
    pub fn with(self, f: impl FnOnce(ClientBuilder) -> ClientBuilder) -> Self {
        Builder(f(self.0))
    }

    /// Connects.
    pub fn connect(self) -> Result<Client, ConnectError> {
        let rt = runtime()?;
        let inner = block(&rt, self.0.connect())?;
        Ok(Client { inner, rt })
    }
}

/// A blocking connection to one channel. Clones share it.
#[derive(Clone, Debug)]
pub struct Client {
    inner: crate::Client,
    rt: Arc<Runtime>,
}

impl Client {
    /// Connects to `channel` with default options.
    pub fn connect(channel: &str) -> Result<Client, ConnectError> {
        Client::builder(channel).connect()
    }

    /// Options for connecting to `channel`.
    pub fn builder(channel: &str) -> Builder {
        Builder(crate::Client::builder(channel))
    }

    /// The async client underneath.
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        self.inner.channel()
    }

    /// The id the daemon gave this client.
    pub fn client_id(&self) -> u64 {
        self.inner.client_id()
    }

    /// The daemon's node id.
    pub fn node_id(&self) -> u64 {
        self.inner.node_id()
    }

    /// Emits `event` with `data` as JSON.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        if caller() == Caller::Foreign {
            // The data may not be shareable with the helper thread: turn
            // it into JSON text here.
            let json = serde_json::value::to_raw_value(data).map_err(EmitError::Serialize)?;
            return block(&self.rt, self.inner.emit(event, &*json));
        }
        block_here(&self.rt, self.inner.emit(event, data))
    }

    /// Emits `event` with a raw payload. When the output buffer has room it
    /// appends on the calling thread without entering the runtime (see
    /// [`crate::Client::emit_bytes`]); otherwise it waits there.
    pub fn emit_bytes(&self, event: &str, payload: impl AsRef<[u8]>) -> Result<(), EmitError> {
        let payload = payload.as_ref();
        if self.inner.emit_now(event, payload) {
            return Ok(());
        }
        block(&self.rt, self.inner.emit_bytes(event, payload))
    }

    /// A writable payload to fill in place; see [`crate::Client::loan`].
    pub fn loan(&self, len: usize) -> Result<crate::Loan, EmitError> {
        block(&self.rt, self.inner.loan(len))
    }

    /// Emits a loan, consuming it; see [`crate::Client::emit_loan`].
    pub fn emit_loan(&self, event: &str, loan: crate::Loan) -> Result<(), EmitError> {
        block(&self.rt, self.inner.emit_loan(event, loan))
    }

    /// Calls `handler` for every message with this event (`*` = all).
    pub fn on<F>(&self, event: &str, handler: F) -> Result<ListenerId, SubscribeError>
    where
        F: Fn(&Message) + Send + Sync + 'static,
    {
        block(&self.rt, self.inner.on(event, handler))
    }

    /// Calls `handler` for the next message with this event only.
    pub fn once<F>(&self, event: &str, handler: F) -> Result<ListenerId, SubscribeError>
    where
        F: Fn(&Message) + Send + Sync + 'static,
    {
        block(&self.rt, self.inner.once(event, handler))
    }

    /// Removes a listener; false if there was none with this id.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    /// An iterator-like receiver of the messages with this event.
    pub fn subscribe(&self, event: &str) -> Result<Subscription, SubscribeError> {
        let inner = block(&self.rt, self.inner.subscribe(event))?;
        Ok(Subscription {
            inner,
            rt: self.rt.clone(),
        })
    }

    /// One receiver of the messages of several events, in daemon order.
    pub fn subscribe_many<S: AsRef<str>>(
        &self,
        events: &[S],
    ) -> Result<Subscription, SubscribeError> {
        let events: Vec<&str> = events.iter().map(AsRef::as_ref).collect();
        let inner = block(&self.rt, self.inner.subscribe_many(&events))?;
        Ok(Subscription {
            inner,
            rt: self.rt.clone(),
        })
    }

    /// Waits until the daemon has handled everything emitted so far; see
    /// [`crate::Client::flush`] for what `Ok` promises and for
    /// [`FlushError::Unconfirmed`] when the connection broke meanwhile.
    pub fn flush(&self) -> Result<(), FlushError> {
        block(&self.rt, self.inner.flush())
    }

    /// Sends a control request and returns the answer.
    pub fn request<T: Serialize + ?Sized>(
        &self,
        name: &str,
        arg: &T,
    ) -> Result<serde_json::Value, RequestError> {
        let arg = serde_json::value::to_raw_value(arg).map_err(RequestError::Serialize)?;
        block(&self.rt, self.inner.request(name, &*arg))
    }

    /// Writes what is pending and closes the connection.
    pub fn disconnect(&self) -> Result<(), FlushError> {
        block(&self.rt, self.inner.disconnect())
    }
}

/// Messages of one event; unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    inner: crate::Subscription,
    rt: Arc<Runtime>,
}

impl Subscription {
    /// The next message; `None` once the connection is closed.
    pub fn recv(&mut self) -> Option<Message> {
        block(&self.rt, self.inner.recv())
    }

    /// The next message, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Message> {
        block(&self.rt, async {
            tokio::time::timeout(timeout, self.inner.recv())
                .await
                .ok()
                .flatten()
        })
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.inner.try_recv()
    }
}

impl Iterator for Subscription {
    type Item = Message;
    fn next(&mut self) -> Option<Message> {
        self.recv()
    }
}
