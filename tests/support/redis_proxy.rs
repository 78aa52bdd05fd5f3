//! A TCP relay in front of the real Redis that can lose one batch commit
//! on the wire: the two ways a network fails a request whose outcome the
//! client must then work out.
//!
//! tocsin's commit script carries its commit marker key (`\x1ecommit\x1f`
//! plus the batch token) among its arguments. Armed, the relay watches
//! client → Redis bytes for that marker and, on the first request that
//! carries it, either
//! - [`Loss::Answer`]: forwards it, waits until Redis has answered (so the
//!   commit applied), drops the answer and closes the client's connection;
//! - [`Loss::Request`]: drops it unsent and closes both sides (so the
//!   commit never ran).
//!
//! Then it disarms: every later byte and connection is relayed as is.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bytes tocsin's commit marker key starts with.
const MARKER: &[u8] = b"\x1ecommit\x1f";

/// What the armed relay loses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Redis applies the commit; its answer never reaches tocsin.
    Answer,
    /// The commit never reaches Redis.
    Request,
}

const DISARMED: u8 = 0;

impl Loss {
    fn code(self) -> u8 {
        match self {
            Loss::Answer => 1,
            Loss::Request => 2,
        }
    }
}

/// A running relay; stops with the test process.
pub struct RedisProxy {
    /// `redis://127.0.0.1:<port>` of the relay.
    pub url: String,
    armed: Arc<AtomicU8>,
    fired: Arc<AtomicU64>,
}

impl RedisProxy {
    /// Relays an ephemeral local port to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("redis://{}", listener.local_addr()?);
        let armed = Arc::new(AtomicU8::new(DISARMED));
        let fired = Arc::new(AtomicU64::new(0));
        let upstream = upstream.to_string();
        let (a, f) = (armed.clone(), fired.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (a, f, up) = (a.clone(), f.clone(), upstream.clone());
                tokio::spawn(async move {
                    if let Err(e) = relay(client, &up, a, f).await {
                        eprintln!("redis proxy: {e:#}");
                    }
                });
            }
        });
        Ok(Self { url, armed, fired })
    }

    /// Loses the next commit as `loss` says.
    pub fn arm(&self, loss: Loss) {
        self.armed.store(loss.code(), Ordering::SeqCst);
    }

    /// How many commits the relay lost so far.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::SeqCst)
    }
}

async fn relay(
    client: TcpStream,
    upstream: &str,
    armed: Arc<AtomicU8>,
    fired: Arc<AtomicU64>,
) -> Result<()> {
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("connecting to {upstream}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Redis → client runs on its own task until told to swallow one answer.
    let (swallow_tx, mut swallow_rx) =
        tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>(1);
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                n = sr.read(&mut buf) => {
                    let n = n?;
                    if n == 0 { return anyhow::Ok(()); }
                    cw.write_all(&buf[..n]).await?;
                }
                Some(done) = swallow_rx.recv() => {
                    // What Redis sends from now on answers the lost commit
                    // (or requests behind it): drop it until Redis has been
                    // quiet for a while, then close the client's side.
                    let quiet = std::time::Duration::from_millis(500);
                    while let Ok(Ok(n)) = tokio::time::timeout(quiet, sr.read(&mut buf)).await {
                        if n == 0 { break; }
                    }
                    let _ = cw.shutdown().await;
                    drop(cw);
                    let _ = done.send(());
                    return Ok(());
                }
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    // The last bytes of the previous read, so a marker split across two
    // reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = cr.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let mut seen = tail.clone();
        seen.extend_from_slice(chunk);
        let hit = seen.windows(MARKER.len()).any(|w| w == MARKER);
        tail = seen[seen.len().saturating_sub(MARKER.len())..].to_vec();
        let mode = if hit {
            armed.swap(DISARMED, Ordering::SeqCst)
        } else {
            DISARMED
        };
        if mode == Loss::Request.code() {
            fired.fetch_add(1, Ordering::SeqCst);
            down.abort();
            return Ok(()); // both halves dropped: both sides closed
        }
        if mode == Loss::Answer.code() {
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            swallow_tx.send(done_tx).await?;
            sw.write_all(chunk).await?;
            let _ = done_rx.await;
            fired.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        sw.write_all(chunk).await?;
    }
    down.abort();
    Ok(())
}
