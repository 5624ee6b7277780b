//! `rust_fanout_server [--bind 127.0.0.1:4000]`: the smallest fan-out server
//! we know how to write with tokio + tungstenite, speaking the bench's plain
//! JSON protocol (see `proto.rs`). It is this machine's practical ceiling
//! for the fan-out scenario, not a product.
//!
//! * `{"type":"join","topic":T,"ref":n}` → joins T, reply `{"type":"reply","ref":n,"status":"ok","payload":{}}`
//! * `{"type":"ping"|"new_msg","ref":n,"payload":P}` → reply with payload P
//! * `{"type":"publish","topic":T,"ref":n,"payload":P}` → `{"type":"msg","topic":T,"payload":P}`
//!   to every connection joined to T (encoded once, shared), then a reply
//! * `{"type":"heartbeat"}` → nothing
//!
//! Writes are batched per connection: each connection has a writer task that
//! takes everything queued for it (shared `Arc<str>` payloads, no copy per
//! subscriber), frames it into one buffer (WebSocket header + payload per
//! message) and hands the buffer to the kernel with one `write` — one
//! syscall for as many messages as were waiting. tungstenite only does the
//! handshake and reads (it never writes after the handshake here: the bench
//! clients send no WebSocket pings, and a close ends the connection).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Most messages one batch takes from a connection's queue, and most bytes
/// it frames before writing (so one busy connection cannot grow the buffer
/// without bound).
const MAX_BATCH_MSGS: usize = 1024;
const MAX_BATCH_BYTES: usize = 256 * 1024;

type Topics = Mutex<HashMap<String, HashMap<u64, mpsc::UnboundedSender<Arc<str>>>>>;

#[derive(Default)]
struct Hub {
    topics: Topics,
    next_id: AtomicU64,
}

fn main() {
    let mut bind = "127.0.0.1:4000".to_string();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bind" => bind = it.next().cloned().unwrap_or(bind),
            "-h" | "--help" => {
                println!("usage: rust_fanout_server [--bind HOST:PORT]");
                return;
            }
            other => {
                eprintln!("rust_fanout_server: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(&bind).await.unwrap_or_else(|e| {
            eprintln!("rust_fanout_server: cannot listen on {bind}: {e}");
            std::process::exit(1);
        });
        eprintln!("rust_fanout_server: listening on {bind} ({threads} threads)");
        let hub = Arc::new(Hub::default());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, hub.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("rust_fanout_server: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
}

async fn serve(stream: TcpStream, hub: Arc<Hub>) {
    let _ = stream.set_nodelay(true);
    let stream = Arc::new(stream);
    let Ok(ws) = tokio_tungstenite::accept_async(SharedStream(stream.clone())).await else {
        return;
    };
    let (_, mut source) = ws.split();
    let (tx, rx) = mpsc::unbounded_channel::<Arc<str>>();
    let writer = tokio::spawn(write_batches(stream, rx));
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let mut joined: Vec<String> = Vec::new();
    while let Some(Ok(msg)) = source.next().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        let r = v.get("ref").cloned().unwrap_or(Value::Null);
        let topic = v.get("topic").and_then(Value::as_str).unwrap_or_default();
        let reply = |payload: &Value| -> Arc<str> {
            serde_json::json!({"type": "reply", "ref": r, "status": "ok", "payload": payload})
                .to_string()
                .into()
        };
        match kind {
            "join" => {
                hub.topics
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(topic.to_string())
                    .or_default()
                    .insert(id, tx.clone());
                joined.push(topic.to_string());
                let _ = tx.send(reply(&serde_json::json!({})));
            }
            "ping" | "new_msg" => {
                let _ = tx.send(reply(v.get("payload").unwrap_or(&Value::Null)));
            }
            "publish" => {
                let payload = v.get("payload").unwrap_or(&Value::Null);
                let out: Arc<str> =
                    serde_json::json!({"type": "msg", "topic": topic, "payload": payload})
                        .to_string()
                        .into();
                {
                    let topics = hub.topics.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(subs) = topics.get(topic) {
                        for sub in subs.values() {
                            let _ = sub.send(out.clone());
                        }
                    }
                }
                let _ = tx.send(reply(&serde_json::json!({})));
            }
            _ => {}
        }
    }
    {
        let mut topics = hub.topics.lock().unwrap_or_else(|p| p.into_inner());
        for t in &joined {
            if let Some(subs) = topics.get_mut(t) {
                subs.remove(&id);
                if subs.is_empty() {
                    topics.remove(t);
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Drains a connection's queue: waits for one message, takes whatever else
/// is already queued (bounded), frames all of it into one buffer and writes
/// it with one syscall (more only when the socket buffer is full).
async fn write_batches(stream: Arc<TcpStream>, mut rx: mpsc::UnboundedReceiver<Arc<str>>) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    while let Some(first) = rx.recv().await {
        buf.clear();
        push_text_frame(&mut buf, first.as_bytes());
        let mut n = 1;
        while n < MAX_BATCH_MSGS && buf.len() < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(more) => push_text_frame(&mut buf, more.as_bytes()),
                Err(_) => break,
            }
            n += 1;
        }
        if write_all(&stream, &buf).await.is_err() {
            return;
        }
    }
}

/// An unmasked, unfragmented server-to-client text frame (RFC 6455 §5.2).
fn push_text_frame(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.push(0x81);
    let len = payload.len();
    if len < 126 {
        buf.push(len as u8);
    } else if len <= u16::MAX as usize {
        buf.push(126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    buf.extend_from_slice(payload);
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One TCP stream shared by the reader (tungstenite, through this) and the
/// batching writer (directly); tokio's readiness API works through `&TcpStream`.
struct SharedStream(Arc<TcpStream>);

impl AsyncRead for SharedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::push_text_frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    #[test]
    fn hand_framed_text_matches_tungstenite_at_every_length_encoding() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            let payload = vec![b'x'; len];
            let mut ours = Vec::new();
            push_text_frame(&mut ours, &payload);
            let mut theirs = Vec::new();
            Frame::message(payload, OpCode::Data(Data::Text), true)
                .format(&mut theirs)
                .expect("format");
            assert_eq!(ours, theirs, "payload of {len} bytes");
        }
    }

    #[test]
    fn several_frames_in_one_buffer_follow_each_other() {
        let mut buf = Vec::new();
        push_text_frame(&mut buf, b"ab");
        push_text_frame(&mut buf, b"cde");
        assert_eq!(buf, [0x81, 2, b'a', b'b', 0x81, 3, b'c', b'd', b'e']);
    }
}
