//! `--key value` command-line options, with unknown keys reported.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, String>,
    used: std::cell::RefCell<HashSet<String>>,
}

impl Args {
    /// Parses `--key value` and `--key=value` pairs.
    pub fn parse(items: &[String]) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut it = items.iter();
        while let Some(item) = it.next() {
            let Some(key) = item.strip_prefix("--") else {
                return Err(format!(
                    "unexpected argument {item:?} (options are --key value)"
                ));
            };
            let (key, value) = match key.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let v = it
                        .next()
                        .ok_or_else(|| format!("option --{key} needs a value"))?;
                    (key.to_string(), v.clone())
                }
            };
            values.insert(key, value);
        }
        Ok(Args {
            values,
            used: Default::default(),
        })
    }

    pub fn str_or(&self, key: &str, default: &str) -> String {
        self.used.borrow_mut().insert(key.to_string());
        self.values
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    pub fn opt_str(&self, key: &str) -> Option<String> {
        self.used.borrow_mut().insert(key.to_string());
        self.values.get(key).cloned()
    }

    pub fn num_or<T: FromStr + Copy>(&self, key: &str, default: T) -> Result<T, String> {
        self.used.borrow_mut().insert(key.to_string());
        match self.values.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<T>()
                .map_err(|_| format!("--{key}: not a number: {v:?}")),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        self.used.borrow_mut().insert(key.to_string());
        match self.values.get(key).map(String::as_str) {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(v) => Err(format!("--{key}: expected true or false, got {v:?}")),
        }
    }

    /// Errors on options no scenario asked for (typos).
    pub fn finish(&self) -> Result<(), String> {
        let used = self.used.borrow();
        let mut unknown: Vec<&String> = self.values.keys().filter(|k| !used.contains(*k)).collect();
        unknown.sort();
        match unknown.first() {
            None => Ok(()),
            Some(_) => Err(format!(
                "unknown option(s): {}",
                unknown
                    .iter()
                    .map(|k| format!("--{k}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_both_forms_and_reports_unknown_keys() {
        let a = Args::parse(&strings(&[
            "--subscribers",
            "10",
            "--proto=json",
            "--typo",
            "1",
        ]))
        .unwrap();
        assert_eq!(a.num_or::<usize>("subscribers", 1).unwrap(), 10);
        assert_eq!(a.str_or("proto", "phoenix"), "json");
        assert_eq!(a.num_or::<u64>("messages", 7).unwrap(), 7);
        assert!(a.finish().unwrap_err().contains("--typo"));
    }

    #[test]
    fn rejects_a_missing_value() {
        assert!(Args::parse(&strings(&["--clients"])).is_err());
    }
}
