//! `rust_fanout_server [--bind 127.0.0.1:4000]`: the smallest fan-out server
//! we know how to write with tokio + tungstenite, speaking the bench's plain
//! JSON protocol (see `proto.rs`). It is this machine's practical ceiling
//! for the fan-out scenario, not a product.
//!
//! * `{"type":"join","topic":T,"ref":n}` → joins T, reply `{"type":"reply","ref":n,"status":"ok","payload":{}}`
//! * `{"type":"ping"|"new_msg","ref":n,"payload":P}` → reply with payload P
//! * `{"type":"publish","topic":T,"ref":n,"payload":P}` → `{"type":"msg","topic":T,"payload":P}`
//!   to every connection joined to T (encoded once), then a reply
//! * `{"type":"heartbeat"}` → nothing
//!
//! Each connection has a writer task that drains its queue and flushes once
//! per batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

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
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Arc<str>>();
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(Message::Text(first.to_string())).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(Message::Text(more.to_string())).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
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
