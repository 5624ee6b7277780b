//! Server RSS and CPU from `/proc`, summed over a process and its
//! descendants (Hornbeam's Python workers are child processes of the VM).

use std::collections::HashMap;
use std::fs;

/// Clock ticks per second of `/proc/<pid>/stat` times (100 on Linux).
const CLK_TCK: f64 = 100.0;

/// `roots` and all their descendants that are alive now.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some(ppid) =
                stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
            {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if out.contains(&pid) || fs::metadata(format!("/proc/{pid}")).is_err() {
            continue;
        }
        out.push(pid);
        if let Some(c) = children.get(&pid) {
            stack.extend(c);
        }
    }
    out
}

/// Fields of `/proc/<pid>/stat` after the command name: index 0 is the
/// state, 1 the ppid, 11 utime, 12 stime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// VmRSS in KiB, summed over the tree of `roots`.
pub fn rss_kib(roots: &[u32]) -> u64 {
    tree(roots)
        .iter()
        .filter_map(|pid| {
            let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

/// User + system CPU seconds, summed over the tree of `roots`.
pub fn cpu_seconds(roots: &[u32]) -> f64 {
    tree(roots).iter().map(|&pid| pid_cpu_seconds(pid)).sum()
}

fn pid_cpu_seconds(pid: u32) -> f64 {
    stat_fields(pid)
        .map(|f| {
            let u: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let s: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            (u + s) / CLK_TCK
        })
        .unwrap_or(0.0)
}

/// CPU seconds of this process.
pub fn self_cpu_seconds() -> f64 {
    pid_cpu_seconds(std::process::id())
}

/// Measures CPU use (in % of one core) of this process and of the server
/// between `start` and `stop`.
pub struct CpuMeter {
    roots: Vec<u32>,
    wall: std::time::Instant,
    own: f64,
    server: f64,
}

impl CpuMeter {
    pub fn start(roots: &[u32]) -> CpuMeter {
        CpuMeter {
            roots: roots.to_vec(),
            wall: std::time::Instant::now(),
            own: self_cpu_seconds(),
            server: cpu_seconds(roots),
        }
    }

    /// (load generator %, server % or None without a pid).
    pub fn stop(&self) -> (f64, Option<f64>) {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-6);
        let own = (self_cpu_seconds() - self.own) / wall * 100.0;
        let server = (!self.roots.is_empty())
            .then(|| (cpu_seconds(&self.roots) - self.server) / wall * 100.0);
        (round1(own), server.map(round1))
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        assert!(tree(&[me]).contains(&me));
        assert!(rss_kib(&[me]) > 0);
        assert!(self_cpu_seconds() >= 0.0);
        assert_eq!(rss_kib(&[u32::MAX - 1]), 0);
    }
}
