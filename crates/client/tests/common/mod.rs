//! The real server in-process (port 0, temporary data directory), a cuttable TCP proxy, and helpers.
#![allow(dead_code, missing_docs, unused_imports)]

use chat4all_client::{Client, Event, Watch};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[path = "../../../server/tests/common/mod.rs"]
mod server;

pub use server::{TestApp, bytes, sha256, spawn_app};

/// The server's test app (shared with the server's tests) as seen through the typed client.
pub trait Typed {
    /// A client of this server without a token.
    fn client(&self) -> Client;
    /// Registers `name` (password `<name>-password`) and returns a logged-in client and the user id.
    async fn logged_in(&self, name: &str) -> (Client, String);
}

impl Typed for TestApp {
    fn client(&self) -> Client {
        Client::new(&self.url("")).unwrap()
    }

    async fn logged_in(&self, name: &str) -> (Client, String) {
        let client = Typed::client(self);
        let password = format!("{name}-password");
        client.register(name, &password, None).await.unwrap();
        let token = client.login(name, &password).await.unwrap();
        (client, token.user_id)
    }
}

/// A TCP proxy in front of the server that a test can cut (every connection dropped, new ones refused) and
/// restore, possibly towards another server: a network outage, or a restart behind a stable address.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(upstream));
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let task = {
            let (upstream, up, generation) = (upstream.clone(), up.clone(), generation.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = *upstream.lock().unwrap();
                    let mut cut = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Proxy {
            addr,
            upstream,
            up,
            generation,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again, towards `upstream` when given.
    pub fn restore(&self, upstream: Option<SocketAddr>) {
        if let Some(upstream) = upstream {
            *self.upstream.lock().unwrap() = upstream;
        }
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The next event within 10 s.
pub async fn next_event(watch: &mut Watch) -> Event {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("an event within 10 s")
        .expect("the watch goes on")
        .expect("no fatal error")
}

/// Waits (up to 10 s) until `conversation`'s history holds `count` messages: a 202 means durable, history
/// follows within milliseconds.
pub async fn wait_for_history(client: &Client, conversation: &str, count: usize) {
    for _ in 0..200 {
        let query = chat4all_client::HistoryQuery {
            limit: Some(100),
            ..Default::default()
        };
        if let Ok(page) = client.history(conversation, &query).await
            && page.messages.len() >= count
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{conversation} did not reach {count} messages within 10 s");
}
