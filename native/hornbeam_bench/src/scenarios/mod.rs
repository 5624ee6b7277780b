//! The scenarios. Each takes the parsed options and returns a [`Report`],
//! printed as one JSON object: `{"scenario", "server", "proto", "status",
//! "params", "figures"}`, `status` being `ok`, `not_supported` or `error`.

pub mod fanout;
pub mod idle;
pub mod presence;
pub mod roundtrip;
pub mod soak;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::args::Args;
use crate::conn::{SrcIps, Target};
use crate::proto::Proto;

/// Options every scenario has.
pub struct Common {
    pub server: String,
    pub target: Target,
    pub srcs: Arc<SrcIps>,
    pub server_pids: Vec<u32>,
    pub topic: String,
    pub concurrency: usize,
    pub connect_timeout: Duration,
    pub heartbeat: Duration,
}

impl Common {
    pub fn from_args(a: &Args) -> Result<Common, String> {
        let proto = Proto::parse(&a.str_or("proto", "phoenix"))?;
        let target = Target::new(
            proto,
            &a.str_or("url", "ws://127.0.0.1:4000"),
            a.opt_str("path").as_deref(),
        )?;
        let server_pids = a
            .str_or("server-pid", "")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u32>()
                    .map_err(|_| format!("--server-pid: bad pid {s:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Common {
            server: a.str_or("server", "unknown"),
            target,
            srcs: Arc::new(SrcIps::parse(&a.str_or("src-ips", "127.0.0.2-127.0.0.9"))?),
            server_pids,
            topic: a.str_or("topic", "room:bench"),
            concurrency: a.num_or("concurrency", 200usize)?,
            connect_timeout: Duration::from_millis(a.num_or("connect-timeout-ms", 30_000u64)?),
            heartbeat: Duration::from_millis(a.num_or("heartbeat-ms", 25_000u64)?),
        })
    }

    pub fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("url".into(), json!(self.target.url));
        m.insert("src_ips".into(), json!(self.srcs.describe()));
        m.insert("topic".into(), json!(self.topic));
        m.insert("connect_concurrency".into(), json!(self.concurrency));
        m
    }
}

pub struct Report {
    pub scenario: &'static str,
    pub server: String,
    pub proto: Proto,
    pub status: &'static str,
    pub params: Map<String, Value>,
    pub figures: Map<String, Value>,
    pub error: Option<String>,
}

impl Report {
    pub fn new(scenario: &'static str, c: &Common, params: Map<String, Value>) -> Report {
        Report {
            scenario,
            server: c.server.clone(),
            proto: c.target.proto,
            status: "ok",
            params,
            figures: Map::new(),
            error: None,
        }
    }

    pub fn fig(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.to_string(), value.into());
    }

    pub fn fail(mut self, status: &'static str, why: impl Into<String>) -> Report {
        self.status = status;
        self.error = Some(why.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "scenario": self.scenario,
            "server": self.server,
            "proto": self.proto.name(),
            "status": self.status,
            "params": self.params,
            "figures": self.figures,
        });
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }
}

/// A payload of about `size` bytes carrying the send time and a sequence number.
pub fn stamped_payload(seq: u64, size: usize) -> String {
    let t = crate::clock::now_us();
    format!(
        r#"{{"bench_t":{t},"seq":{seq},"pad":"{}"}}"#,
        "x".repeat(size)
    )
}
