//! Latency summaries.

use serde_json::{json, Value};

/// p50/p90/p99/p99.9/max/mean in milliseconds of latencies given in µs.
pub fn summary(mut us: Vec<u32>) -> Value {
    if us.is_empty() {
        return json!({"count": 0});
    }
    us.sort_unstable();
    let pick = |q: f64| -> f64 {
        let i = ((us.len() as f64 - 1.0) * q).round() as usize;
        ms(us[i.min(us.len() - 1)])
    };
    let mean = us.iter().map(|&v| v as f64).sum::<f64>() / us.len() as f64 / 1000.0;
    json!({
        "count": us.len(),
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "p999_ms": pick(0.999),
        "max_ms": ms(us[us.len() - 1]),
        "mean_ms": (mean * 1000.0).round() / 1000.0,
    })
}

fn ms(us: u32) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

pub fn round(x: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (x * k).round() / k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let s = summary(v);
        assert_eq!(s["count"], 1000);
        assert_eq!(s["p50_ms"], 501.0);
        assert_eq!(s["p99_ms"], 990.0);
        assert_eq!(s["max_ms"], 1000.0);
        assert_eq!(summary(vec![])["count"], 0);
    }
}
