//! A function's real binary run under the Runtime API emulator the way Lambda runs it with
//! advanced logging controls (`AWS_LAMBDA_LOG_FORMAT=JSON`, `AWS_LAMBDA_LOG_LEVEL`), its stdout
//! and stderr captured, and Lambda's log-level filter applied to them: a line is kept when it
//! is a JSON object with a valid `level` at or above the threshold and a valid RFC 3339
//! `timestamp`; any other line counts as INFO ("Log-level filtering", AWS Lambda developer
//! guide).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;

use crate::runtime::RuntimeApi;

/// Lambda's application log levels, least severe first.
pub const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// One line a function wrote.
#[derive(Debug, Clone)]
pub struct Line {
    /// `"stdout"` or `"stderr"`.
    pub stream: &'static str,
    /// The text, without its newline.
    pub text: String,
}

impl Line {
    /// The line as a JSON object, if it is one.
    pub fn json(&self) -> Option<serde_json::Map<String, Value>> {
        match serde_json::from_str(&self.text) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    /// The level Lambda assigns the line: its `level` when valid and its `timestamp` is
    /// RFC 3339, else INFO.
    pub fn lambda_level(&self) -> &'static str {
        let Some(m) = self.json() else { return "INFO" };
        let stamped = m
            .get("timestamp")
            .and_then(Value::as_str)
            .is_some_and(is_rfc3339);
        let level = m
            .get("level")
            .and_then(Value::as_str)
            .and_then(|l| LEVELS.iter().find(|x| x.eq_ignore_ascii_case(l)));
        match (stamped, level) {
            (true, Some(l)) => l,
            _ => "INFO",
        }
    }

    /// Whether Lambda's filter at `threshold` keeps the line.
    pub fn kept_at(&self, threshold: &str) -> bool {
        rank(self.lambda_level()) >= rank(threshold)
    }

    /// Whether the line is a CloudWatch EMF document.
    pub fn is_emf(&self) -> bool {
        self.json().is_some_and(|m| {
            m.get("_aws")
                .is_some_and(|a| a["CloudWatchMetrics"].is_array())
        })
    }
}

fn rank(level: &str) -> usize {
    LEVELS
        .iter()
        .position(|l| l.eq_ignore_ascii_case(level))
        .unwrap_or(2)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !(digits(0..4)
            && digits(5..7)
            && digits(8..10)
            && digits(11..13)
            && digits(14..16)
            && digits(17..19))
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// A running function whose output is being captured.
#[derive(Debug)]
pub struct Logged {
    child: Child,
    lines: Arc<Mutex<Vec<Line>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Logged {
    /// Starts `binary` against `api` with `AWS_LAMBDA_LOG_FORMAT=JSON`,
    /// `AWS_LAMBDA_LOG_LEVEL=level` and no `RUST_LOG` (so the Lambda setting drives the
    /// function's own filter), with `env` on top.
    pub fn spawn(api: &RuntimeApi, binary: &str, level: &str, env: &[(&str, &str)]) -> Logged {
        let mut cmd = api.command(binary);
        cmd.env("AWS_LAMBDA_LOG_LEVEL", level)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for (stream, pipe) in [("stdout", out), ("stderr", err)] {
            let Some(pipe) = pipe else { continue };
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for text in BufReader::new(pipe).lines().map_while(Result::ok) {
                    // Shown as the inherited output would be, for a failing test's log.
                    eprintln!("[{stream}] {text}");
                    lines
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Line { stream, text });
                }
            }));
        }
        Logged {
            child,
            lines,
            readers,
        }
    }

    /// Stops the function and returns every line it wrote.
    pub fn stop(mut self) -> Vec<Line> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Checks `lines` as Lambda's filter at `threshold` would treat them: every JSON line carries
/// a `level` and an RFC 3339 `timestamp`, and at least one EMF document of `function`
/// (dimension `Function`) is kept. Returns the kept EMF documents.
pub fn assert_metrics_survive(lines: &[Line], threshold: &str, function: &str) -> Vec<Value> {
    for line in lines {
        if let Some(m) = line.json() {
            assert!(
                m.get("level").and_then(Value::as_str).is_some(),
                "a JSON line without a level: {}",
                line.text
            );
            assert!(
                m.get("timestamp")
                    .and_then(Value::as_str)
                    .is_some_and(is_rfc3339),
                "a JSON line without an RFC 3339 timestamp: {}",
                line.text
            );
        }
    }
    let kept: Vec<Value> = lines
        .iter()
        .filter(|l| l.is_emf() && l.kept_at(threshold))
        .filter_map(|l| serde_json::from_str(&l.text).ok())
        .filter(|v: &Value| v["Function"] == function)
        .collect();
    assert!(
        !kept.is_empty(),
        "no EMF line of {function} survives Lambda's filter at {threshold}: {lines:#?}"
    );
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Line {
            stream: "stdout",
            text: text.to_owned(),
        }
    }

    #[test]
    fn lambda_treats_lines_without_level_or_timestamp_as_info() {
        let ts = "2026-12-02T00:00:00.123Z";
        assert_eq!(line("plain text").lambda_level(), "INFO");
        assert_eq!(line(r#"{"level":"ERROR"}"#).lambda_level(), "INFO");
        assert_eq!(
            line(&format!(r#"{{"level":"bogus","timestamp":"{ts}"}}"#)).lambda_level(),
            "INFO"
        );
        let warn = line(&format!(r#"{{"level":"warn","timestamp":"{ts}"}}"#));
        assert_eq!(warn.lambda_level(), "WARN");
        assert!(warn.kept_at("WARN") && !warn.kept_at("ERROR"));
        assert!(!line(r#"{"_aws":{}}"#).kept_at("WARN"));
    }

    #[test]
    fn rfc3339_timestamps() {
        for ok in [
            "2026-12-02T00:53:56Z",
            "2026-12-02T00:53:56.123456Z",
            "2026-12-02T00:53:56+01:00",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2026-12-02",
            "2026-12-02 00:53:56",
            "2026-12-02T00:53:56.Z",
            "1764636836",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
