//! Opening WebSocket connections: a source address per connection (to get
//! past the ~28k ephemeral ports of one address pair), the Socket.IO
//! handshake, join, and bounded-concurrency opening of many connections.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::proto::{Incoming, Proto};

pub type Ws = WebSocketStream<TcpStream>;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// `ws://host:port/path?query`
    pub url: String,
}

impl Target {
    /// `base` is `ws://host:port` (a path in it replaces the protocol's default).
    pub fn new(proto: Proto, base: &str, path: Option<&str>) -> Result<Target, String> {
        let rest = base
            .strip_prefix("ws://")
            .ok_or_else(|| format!("--url must start with ws://, got {base:?}"))?;
        let (hostport, url_path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| format!("no IPv4 address for {hostport}"))?;
        let path = path.or(url_path).unwrap_or(proto.default_path());
        Ok(Target {
            proto,
            addr,
            url: format!("ws://{hostport}{path}"),
        })
    }
}

/// Source addresses handed out round-robin (`127.0.0.2-127.0.0.9`, or a comma list).
#[derive(Debug)]
pub struct SrcIps {
    ips: Vec<Ipv4Addr>,
    next: AtomicUsize,
}

impl SrcIps {
    pub fn parse(spec: &str) -> Result<SrcIps, String> {
        let mut ips = Vec::new();
        if spec.is_empty() || spec == "none" {
            return Ok(SrcIps {
                ips,
                next: AtomicUsize::new(0),
            });
        }
        for part in spec.split(',') {
            if let Some((a, b)) = part.split_once('-') {
                let a: Ipv4Addr = a.parse().map_err(|_| format!("bad address {a:?}"))?;
                let b: Ipv4Addr = b.parse().map_err(|_| format!("bad address {b:?}"))?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a > 1024 {
                    return Err(format!("bad address range {part:?}"));
                }
                ips.extend((a..=b).map(Ipv4Addr::from));
            } else {
                ips.push(part.parse().map_err(|_| format!("bad address {part:?}"))?);
            }
        }
        Ok(SrcIps {
            ips,
            next: AtomicUsize::new(0),
        })
    }

    pub fn next(&self) -> Option<Ipv4Addr> {
        if self.ips.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.ips[i % self.ips.len()])
    }

    pub fn describe(&self) -> String {
        self.ips
            .iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: thousands of mostly idle connections live in this process.
    WebSocketConfig {
        write_buffer_size: 0,
        max_write_buffer_size: 16 << 20,
        max_message_size: Some(16 << 20),
        max_frame_size: Some(16 << 20),
        ..Default::default()
    }
}

/// TCP connect (from `src` if given), WebSocket upgrade, and the Socket.IO
/// connect handshake where the protocol has one.
pub async fn connect(target: &Target, src: Option<Ipv4Addr>) -> Result<Ws, String> {
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    // Lets bind() reuse ports still in TIME_WAIT from earlier runs.
    sock.set_reuseaddr(true)
        .map_err(|e| format!("reuseaddr: {e}"))?;
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip.into(), 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = sock
        .connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(ws_config()))
            .await
            .map_err(|e| format!("upgrade: {e}"))?;
    if target.proto == Proto::SocketIo {
        // engine.io open `0{...}`, then socket.io connect `40` → `40{"sid":..}`.
        loop {
            let text = recv_text(&mut ws)
                .await?
                .ok_or("closed before the engine.io open packet")?;
            if text.starts_with('0') {
                break;
            }
        }
        send(&mut ws, "40".to_string()).await?;
        loop {
            let text = recv_text(&mut ws)
                .await?
                .ok_or("closed before the socket.io connect packet")?;
            if text.starts_with("40") {
                break;
            }
            if text.starts_with("44") {
                return Err(format!("socket.io connect refused: {text}"));
            }
            if text == "2" {
                send(&mut ws, "3".to_string()).await?;
            }
        }
    }
    Ok(ws)
}

pub async fn send(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::Text(text))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// The next text frame; `None` when the server closed.
pub async fn recv_text(ws: &mut Ws) -> Result<Option<String>, String> {
    loop {
        match ws.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(format!("recv: {e}")),
            Some(Ok(Message::Text(t))) => return Ok(Some(t)),
            Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(_)) => continue,
        }
    }
}

/// Sends `frame` and waits for the reply to `r`, answering engine.io pings
/// and handing every other frame to `other`.
pub async fn request(
    ws: &mut Ws,
    proto: Proto,
    frame: String,
    r: u64,
    mut other: impl FnMut(&str, Incoming),
) -> Result<(bool, Value), String> {
    send(ws, frame).await?;
    loop {
        let text = recv_text(ws)
            .await?
            .ok_or("closed while waiting for a reply")?;
        match proto.decode(&text) {
            Incoming::Reply {
                r: got,
                ok,
                payload,
            } if got == r => return Ok((ok, payload)),
            Incoming::EioPing => send(ws, proto.pong().to_string()).await?,
            msg => other(&text, msg),
        }
    }
}

/// Connects and joins `topic` with `payload`; the join must succeed.
pub async fn connect_and_join(
    target: &Target,
    src: Option<Ipv4Addr>,
    topic: &str,
    payload: &str,
) -> Result<(Ws, Value), String> {
    let mut ws = connect(target, src).await?;
    let frame = target.proto.join(topic, 1, payload);
    let (ok, reply) = request(&mut ws, target.proto, frame, 1, |_, _| {}).await?;
    if !ok {
        return Err(format!("join refused: {reply}"));
    }
    Ok((ws, reply))
}

/// Outcome of opening many connections.
pub struct Opened {
    pub conns: Vec<Ws>,
    pub failures: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

/// Opens (and joins, when `topic` is given) `n` connections, at most
/// `concurrency` handshakes in flight. Once `concurrency` attempts in a row
/// have timed out the server has stopped accepting (a full backlog behind a
/// connection limit, say): the remaining attempts fail at once instead of
/// each waiting out `timeout`.
pub async fn open_many(
    target: &Target,
    srcs: &Arc<SrcIps>,
    n: usize,
    concurrency: usize,
    topic: Option<&str>,
    timeout: Duration,
) -> Opened {
    let start = std::time::Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let timeouts_in_a_row = Arc::new(AtomicUsize::new(0));
    let give_up_after = concurrency.max(1);
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let target = target.clone();
        let srcs = srcs.clone();
        let sem = sem.clone();
        let timeouts = timeouts_in_a_row.clone();
        let topic = topic.map(str::to_string);
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(|e| e.to_string())?;
            if timeouts.load(Ordering::Relaxed) >= give_up_after {
                return Err(format!(
                    "not attempted: {give_up_after} handshakes in a row timed out (the server stopped accepting)"
                ));
            }
            let src = srcs.next();
            let fut = async {
                match topic {
                    Some(t) => connect_and_join(&target, src, &t, "{}")
                        .await
                        .map(|(ws, _)| ws),
                    None => connect(&target, src).await,
                }
            };
            match tokio::time::timeout(timeout, fut).await {
                Ok(result) => {
                    timeouts.store(0, Ordering::Relaxed);
                    result
                }
                Err(_) => {
                    timeouts.fetch_add(1, Ordering::Relaxed);
                    Err("timed out opening".to_string())
                }
            }
        }));
    }
    let mut conns = Vec::with_capacity(n);
    let mut failures = 0;
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(ws)) => conns.push(ws),
            Ok(Err(e)) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    Opened {
        conns,
        failures,
        first_error,
        elapsed: start.elapsed(),
    }
}

/// The open-file limit of this process.
pub fn fd_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_paths() {
        let t = Target::new(Proto::Phoenix, "ws://127.0.0.1:4000", None).unwrap();
        assert_eq!(t.url, "ws://127.0.0.1:4000/ws/websocket?vsn=2.0.0");
        let t = Target::new(Proto::Json, "ws://127.0.0.1:4000/custom", None).unwrap();
        assert_eq!(t.url, "ws://127.0.0.1:4000/custom");
        assert!(Target::new(Proto::Json, "http://x", None).is_err());
    }

    #[test]
    fn source_ranges() {
        let s = SrcIps::parse("127.0.0.2-127.0.0.4").unwrap();
        let got: Vec<_> = (0..4).map(|_| s.next().unwrap().to_string()).collect();
        assert_eq!(got, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"]);
        assert!(SrcIps::parse("none").unwrap().next().is_none());
    }

    /// A server that completes TCP handshakes (the kernel's backlog) but
    /// never answers: after `concurrency` timeouts the rest are not tried.
    #[tokio::test]
    async fn opening_gives_up_on_a_server_that_stopped_accepting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("ws://{}", listener.local_addr().unwrap());
        let target = Target::new(Proto::Phoenix, &base, None).unwrap();
        let srcs = Arc::new(SrcIps::parse("none").unwrap());
        let opened = open_many(&target, &srcs, 40, 4, None, Duration::from_millis(300)).await;
        assert_eq!(opened.conns.len(), 0);
        assert_eq!(opened.failures, 40);
        assert!(opened
            .first_error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")));
        // 4 rounds of 300 ms would be 3 s; giving up makes it one round.
        assert!(
            opened.elapsed < Duration::from_millis(2_500),
            "{:?}",
            opened.elapsed
        );
        drop(listener);
    }
}
