//! The three wire protocols, as text in and text out.
//!
//! * **Phoenix V2**: `[join_ref, ref, topic, event, payload]`; join with
//!   `phx_join`, replies are `phx_reply` with `{"status", "response"}`,
//!   heartbeat `[null, ref, "phoenix", "heartbeat", {}]`.
//! * **Socket.IO v4** over engine.io 4 on a WebSocket: `0{..}` open, `40`
//!   connect, `42<id>["event", topic, data]` emit with ack id,
//!   `43<id>[data]` ack, `2` ping (answered with `3`). Every event carries
//!   the topic as its first argument, the data as its second.
//! * **JSON**: `{"type": event, "topic": .., "ref": n, "payload": ..}` up,
//!   `{"type": "reply", "ref": n, "status": "ok", "payload": ..}` and
//!   `{"type": "msg", "topic": .., "payload": ..}` down.

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Phoenix,
    SocketIo,
    Json,
}

/// A decoded frame from the server.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// The answer to our request `r`.
    Reply { r: u64, ok: bool, payload: Value },
    /// A push or broadcast.
    Event {
        topic: String,
        event: String,
        payload: Value,
    },
    /// engine.io ping: answer with [`Proto::pong`].
    EioPing,
    /// Anything else (open/connect packets, heartbeat noise, malformed).
    Other,
}

impl Proto {
    pub fn parse(name: &str) -> Result<Proto, String> {
        match name {
            "phoenix" => Ok(Proto::Phoenix),
            "socketio" => Ok(Proto::SocketIo),
            "json" => Ok(Proto::Json),
            _ => Err(format!(
                "unknown protocol {name:?} (phoenix | socketio | json)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Phoenix => "phoenix",
            Proto::SocketIo => "socketio",
            Proto::Json => "json",
        }
    }

    /// The WebSocket path (and query) each protocol's servers answer on.
    pub fn default_path(self) -> &'static str {
        match self {
            Proto::Phoenix => "/ws/websocket?vsn=2.0.0",
            Proto::SocketIo => "/socket.io/?EIO=4&transport=websocket",
            Proto::Json => "/ws",
        }
    }

    /// Join `topic`; the server answers with a reply to `r`.
    pub fn join(self, topic: &str, r: u64, payload: &str) -> String {
        let t = json_str(topic);
        match self {
            Proto::Phoenix => format!(r#"["{r}","{r}",{t},"phx_join",{payload}]"#),
            Proto::SocketIo => format!(r#"42{r}["join",{t},{payload}]"#),
            Proto::Json => {
                format!(r#"{{"type":"join","topic":{t},"ref":{r},"payload":{payload}}}"#)
            }
        }
    }

    /// Push `event` on `topic` (joined with `join_ref`); answered with a reply to `r`.
    pub fn push(self, topic: &str, join_ref: u64, r: u64, event: &str, payload: &str) -> String {
        let t = json_str(topic);
        let e = json_str(event);
        match self {
            Proto::Phoenix => format!(r#"["{join_ref}","{r}",{t},{e},{payload}]"#),
            Proto::SocketIo => format!(r#"42{r}[{e},{t},{payload}]"#),
            Proto::Json => format!(r#"{{"type":{e},"topic":{t},"ref":{r},"payload":{payload}}}"#),
        }
    }

    /// The client heartbeat, for protocols where the client sends it.
    pub fn heartbeat(self, r: u64) -> Option<String> {
        match self {
            Proto::Phoenix => Some(format!(r#"[null,"{r}","phoenix","heartbeat",{{}}]"#)),
            Proto::Json => Some(r#"{"type":"heartbeat"}"#.to_string()),
            Proto::SocketIo => None,
        }
    }

    /// The answer to an engine.io ping.
    pub fn pong(self) -> &'static str {
        "3"
    }

    /// Like [`Proto::decode`], except that frames carrying a `bench_t`
    /// stamp (broadcast copies) are not decoded.
    pub fn decode_light(self, text: &str) -> Incoming {
        if text.contains("\"bench_t\":") {
            Incoming::Other
        } else {
            self.decode(text)
        }
    }

    /// Decodes one text frame.
    pub fn decode(self, text: &str) -> Incoming {
        match self {
            Proto::Phoenix => decode_phoenix(text),
            Proto::SocketIo => decode_socketio(text),
            Proto::Json => decode_json(text),
        }
    }
}

fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn ref_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn decode_phoenix(text: &str) -> Incoming {
    let Ok(Value::Array(mut parts)) = serde_json::from_str::<Value>(text) else {
        return Incoming::Other;
    };
    if parts.len() != 5 {
        return Incoming::Other;
    }
    let payload = parts.pop().unwrap_or(Value::Null);
    let event = parts.pop().unwrap_or(Value::Null);
    let topic = parts.pop().unwrap_or(Value::Null);
    let r = parts.pop().unwrap_or(Value::Null);
    let event = event.as_str().unwrap_or_default().to_string();
    if event == "phx_reply" {
        let Some(r) = ref_of(&r) else {
            return Incoming::Other;
        };
        let ok = payload.get("status").and_then(Value::as_str) == Some("ok");
        let response = payload.get("response").cloned().unwrap_or(Value::Null);
        return Incoming::Reply {
            r,
            ok,
            payload: response,
        };
    }
    Incoming::Event {
        topic: topic.as_str().unwrap_or_default().to_string(),
        event,
        payload,
    }
}

fn decode_socketio(text: &str) -> Incoming {
    if text == "2" {
        return Incoming::EioPing;
    }
    let Some(rest) = text.strip_prefix('4') else {
        return Incoming::Other;
    };
    if let Some(ack) = rest.strip_prefix('3') {
        let digits = ack.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(r) = ack[..digits].parse::<u64>() else {
            return Incoming::Other;
        };
        let payload = match serde_json::from_str::<Value>(&ack[digits..]) {
            Ok(Value::Array(mut items)) if !items.is_empty() => items.swap_remove(0),
            Ok(_) => Value::Null,
            Err(_) => return Incoming::Other,
        };
        return Incoming::Reply {
            r,
            ok: true,
            payload,
        };
    }
    if let Some(ev) = rest.strip_prefix('2') {
        let digits = ev.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&ev[digits..]) else {
            return Incoming::Other;
        };
        let mut items = items.into_iter();
        let event = items
            .next()
            .and_then(|e| e.as_str().map(str::to_string))
            .unwrap_or_default();
        let payload = items.next().unwrap_or(Value::Null);
        return Incoming::Event {
            topic: String::new(),
            event,
            payload,
        };
    }
    Incoming::Other
}

fn decode_json(text: &str) -> Incoming {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Incoming::Other;
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let payload = v.get("payload").cloned().unwrap_or(Value::Null);
    if kind == "reply" {
        let Some(r) = v.get("ref").and_then(ref_of) else {
            return Incoming::Other;
        };
        let ok = v.get("status").and_then(Value::as_str).unwrap_or("ok") == "ok";
        return Incoming::Reply { r, ok, payload };
    }
    let topic = v
        .get("topic")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Incoming::Event {
        topic,
        event: kind.to_string(),
        payload,
    }
}

/// The unsigned integer after `key` in `text` (e.g. `"bench_t":`), without
/// decoding the JSON: the fan-out receivers' hot path.
pub fn scan_u64(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits = text[at..].trim_start();
    let n = digits.bytes().take_while(u8::is_ascii_digit).count();
    digits[..n].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn phoenix_frames() {
        assert_eq!(
            Proto::Phoenix.join("room:a", 3, "{}"),
            r#"["3","3","room:a","phx_join",{}]"#
        );
        assert_eq!(
            Proto::Phoenix
                .decode(r#"["3","7","room:a","phx_reply",{"status":"ok","response":{"x":1}}]"#),
            Incoming::Reply {
                r: 7,
                ok: true,
                payload: json!({"x": 1})
            }
        );
        assert_eq!(
            Proto::Phoenix.decode(r#"[null,null,"room:a","msg",{"bench_t":5}]"#),
            Incoming::Event {
                topic: "room:a".into(),
                event: "msg".into(),
                payload: json!({"bench_t": 5})
            }
        );
        assert_eq!(
            Proto::Phoenix.heartbeat(9).unwrap(),
            r#"[null,"9","phoenix","heartbeat",{}]"#
        );
    }

    #[test]
    fn socketio_frames() {
        assert_eq!(
            Proto::SocketIo.push("room:a", 1, 12, "ping", "{}"),
            r#"4212["ping","room:a",{}]"#
        );
        assert_eq!(Proto::SocketIo.decode("2"), Incoming::EioPing);
        assert_eq!(
            Proto::SocketIo.decode(r#"4312[{"ok":true}]"#),
            Incoming::Reply {
                r: 12,
                ok: true,
                payload: json!({"ok": true})
            }
        );
        assert_eq!(
            Proto::SocketIo.decode(r#"42["msg",{"seq":1}]"#),
            Incoming::Event {
                topic: String::new(),
                event: "msg".into(),
                payload: json!({"seq": 1})
            }
        );
        assert_eq!(Proto::SocketIo.decode(r#"40{"sid":"x"}"#), Incoming::Other);
    }

    #[test]
    fn json_frames() {
        assert_eq!(
            Proto::Json.decode(r#"{"type":"reply","ref":4,"status":"ok","payload":{"a":1}}"#),
            Incoming::Reply {
                r: 4,
                ok: true,
                payload: json!({"a": 1})
            }
        );
        assert_eq!(
            Proto::Json.decode(r#"{"type":"msg","topic":"room:a","payload":{}}"#),
            Incoming::Event {
                topic: "room:a".into(),
                event: "msg".into(),
                payload: json!({})
            }
        );
    }

    #[test]
    fn scans_integers_without_decoding() {
        let t = r#"[null,null,"room:a","msg",{"bench_t": 123456,"seq":42,"pad":"xx"}]"#;
        assert_eq!(scan_u64(t, "\"bench_t\":"), Some(123456));
        assert_eq!(scan_u64(t, "\"seq\":"), Some(42));
        assert_eq!(scan_u64(t, "\"nope\":"), None);
    }
}
