//! The fault lab's links: a UDP proxy under the test's control, standing at
//! a node's trust-list address and passing datagrams to where the node
//! really listens. The test cuts the link (every datagram dropped), lets it
//! flap, or makes it lossy and slow (a share dropped, each delayed); the
//! kernel here has no netem, so the proxy does what netem would.
//!
//! It counts what a retry storm would show: QUIC Initial packets from
//! clients (each connection attempt sends at least one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tokio::net::UdpSocket;

/// Largest datagram passed on (QUIC's are at most about 1,500 bytes here).
const MAX_DATAGRAM: usize = 65_535;

/// What the link does to each datagram, both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Passed on at once.
    Up,
    /// Dropped: a partition.
    Down,
    /// `drop_percent` of datagrams dropped, the others delayed by `delay`.
    Lossy { drop_percent: u32, delay: Duration },
}

/// Counts of what passed the proxy.
#[derive(Debug, Default)]
pub struct LinkCounts {
    pub passed: AtomicU64,
    pub dropped: AtomicU64,
    /// QUIC long-header Initial packets from clients: connection attempts
    /// (and their retransmissions).
    pub initials: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct UdpProxy {
    link: Arc<Mutex<Link>>,
    pub counts: Arc<LinkCounts>,
    task: tokio::task::JoinHandle<()>,
}

/// Whether a datagram starts a QUIC v1 Initial packet (long header, type 0).
fn is_initial(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b & 0xf0 == 0xc0)
}

impl UdpProxy {
    /// Listens at `front` and passes datagrams to and from `node`.
    pub async fn start(front: SocketAddr, node: SocketAddr) -> UdpProxy {
        let socket = Arc::new(UdpSocket::bind(front).await.expect("proxy binds its front"));
        let link = Arc::new(Mutex::new(Link::Up));
        let counts = Arc::new(LinkCounts::default());
        let task = tokio::spawn(serve(socket, node, link.clone(), counts.clone()));
        UdpProxy { link, counts, task }
    }

    /// Sets what the link does from now on.
    pub fn set(&self, link: Link) {
        *self.link.lock().unwrap() = link;
    }

    pub fn initials(&self) -> u64 {
        self.counts.initials.load(Ordering::Relaxed)
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `datagram` through `to` as the link says: now, later, or never.
fn pass(
    link: Link,
    counts: &LinkCounts,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    datagram: Vec<u8>,
) {
    match link {
        Link::Up => {
            counts.passed.fetch_add(1, Ordering::Relaxed);
            let _ = socket.try_send_to(&datagram, to);
        }
        Link::Down => {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Link::Lossy {
            drop_percent,
            delay,
        } => {
            if OsRng.next_u32() % 100 < drop_percent {
                counts.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            counts.passed.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(&datagram, to).await;
            });
        }
    }
}

/// The front socket's loop: each client gets a socket of its own towards
/// the node, whose answers go back to that client through the front.
async fn serve(
    front: Arc<UdpSocket>,
    node: SocketAddr,
    link: Arc<Mutex<Link>>,
    counts: Arc<LinkCounts>,
) {
    let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    // Aborted with this loop when the proxy is dropped.
    let mut answering = tokio::task::JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, client)) = front.recv_from(&mut buf).await else {
            continue;
        };
        let datagram = buf[..len].to_vec();
        if is_initial(&datagram) {
            counts.initials.fetch_add(1, Ordering::Relaxed);
        }
        let back = match backs.get(&client) {
            Some(back) => back.clone(),
            None => {
                let Ok(back) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                let back = Arc::new(back);
                answering.spawn(answers(
                    back.clone(),
                    front.clone(),
                    client,
                    link.clone(),
                    counts.clone(),
                ));
                backs.insert(client, back.clone());
                back
            }
        };
        let now = *link.lock().unwrap();
        pass(now, &counts, back, node, datagram);
    }
}

/// The node's answers to one client, back through the front socket.
async fn answers(
    back: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    link: Arc<Mutex<Link>>,
    counts: Arc<LinkCounts>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while let Ok((len, _)) = back.recv_from(&mut buf).await {
        let now = *link.lock().unwrap();
        pass(now, &counts, front.clone(), client, buf[..len].to_vec());
    }
}
