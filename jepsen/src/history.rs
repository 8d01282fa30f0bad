//! The history: one JSON object per line, appended as operations happen.
//!
//! Every client operation is an `invoke` followed by exactly one completion from the same
//! process: `ok` (it happened, with what it observed), `fail` (it certainly did not happen) or
//! `info` (unknown: it may take effect at any time after its invocation, or never). A process
//! that saw `info` never invokes again; its worker continues as a new process. Nemesis actions
//! are `info` events of the process `"nemesis"`.
//!
//! A mutation sent with an explicit request id carries it in `request`. A later invocation with
//! the same `request` (from another process) is a **retry of the same operation**: it cannot
//! take effect a second time, and an `ok` answer to it is the operation's one outcome.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Who did something: a client process, or the nemesis.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    /// A logical single-threaded client process.
    Client(u64),
    /// The fault injector (always the string `"nemesis"`).
    Nemesis(String),
}

/// The kind of a history event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The operation was sent.
    Invoke,
    /// It took effect; `value` holds what it observed.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Its outcome is unknown.
    Info,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Who.
    pub process: Process,
    /// invoke, ok, fail or info.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The function: `read`, `write`, `cas`, `add` (clients); `start`/`stop` (nemesis).
    pub f: String,
    /// The actor key (clients), or the fault name (nemesis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Arguments on invoke, observations on ok; see the workload module for the shapes.
    #[serde(default)]
    pub value: serde_json::Value,
    /// Nanoseconds since the start of the run, from the harness's monotonic clock.
    pub time: u64,
    /// Why it failed, for fail and info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The request id (`session:seq`) of a mutation sent with an explicit one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// Appends events to a JSON-lines file and keeps them in memory for the checker.
pub struct Recorder {
    start: Instant,
    inner: Mutex<RecorderInner>,
}

struct RecorderInner {
    out: Option<BufWriter<std::fs::File>>,
    events: Vec<Event>,
    write_error: Option<String>,
}

impl Recorder {
    /// Record into `path` (created or truncated); times are relative to `start`.
    pub fn create(path: &Path, start: Instant) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        Ok(Self {
            start,
            inner: Mutex::new(RecorderInner {
                out: Some(BufWriter::new(file)),
                events: Vec::new(),
                write_error: None,
            }),
        })
    }

    /// A recorder that keeps events in memory only (tests).
    pub fn in_memory(start: Instant) -> Self {
        Self {
            start,
            inner: Mutex::new(RecorderInner {
                out: None,
                events: Vec::new(),
                write_error: None,
            }),
        }
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Record one event, stamped now (under the lock, so the file is in time order).
    pub fn record(
        &self,
        process: Process,
        kind: Kind,
        f: &str,
        key: Option<&str>,
        value: serde_json::Value,
        error: Option<String>,
    ) -> u64 {
        self.record_request(process, kind, f, key, value, error, None)
    }

    /// [`Recorder::record`] for an operation sent with the request id `request`.
    #[allow(clippy::too_many_arguments)]
    pub fn record_request(
        &self,
        process: Process,
        kind: Kind,
        f: &str,
        key: Option<&str>,
        value: serde_json::Value,
        error: Option<String>,
        request: Option<String>,
    ) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let time = self.now();
        let ev = Event {
            process,
            kind,
            f: f.to_string(),
            key: key.map(str::to_string),
            value,
            time,
            error,
            request,
        };
        if let Some(out) = g.out.as_mut() {
            let res = serde_json::to_writer(&mut *out, &ev)
                .map_err(std::io::Error::from)
                .and_then(|_| out.write_all(b"\n"));
            if let Err(e) = res {
                g.write_error.get_or_insert(e.to_string());
            }
        }
        g.events.push(ev);
        time
    }

    /// Flush the file; reports the first write error, if any happened.
    pub fn flush(&self) -> Result<(), String> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(out) = g.out.as_mut()
            && let Err(e) = out.flush()
        {
            g.write_error.get_or_insert(e.to_string());
        }
        match &g.write_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .clone()
    }
}

/// Why a history file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not an event.
    #[error("{path}:{line}: not a history event: {source}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Read a JSON-lines history.
pub fn read(path: &Path) -> Result<Vec<Event>, ReadError> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ReadError::Io {
        path: p.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| ReadError::Io {
            path: p.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let ev = serde_json::from_str(&line).map_err(|source| ReadError::Parse {
            path: p.clone(),
            line: i + 1,
            source,
        })?;
        out.push(ev);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        let rec = Recorder::create(&path, Instant::now()).expect("create");
        rec.record(
            Process::Client(3),
            Kind::Invoke,
            "write",
            Some("r1"),
            serde_json::json!(7),
            None,
        );
        rec.record(
            Process::Nemesis("nemesis".into()),
            Kind::Info,
            "start",
            Some("partition"),
            serde_json::json!("halves"),
            None,
        );
        rec.flush().expect("flush");
        let back = read(&path).expect("read");
        assert_eq!(back, rec.events());
        let text = std::fs::read_to_string(&path).expect("text");
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| l.contains("\"type\":\"invoke\""))
        );
        assert!(text.contains("\"process\":\"nemesis\""));
    }

    #[test]
    fn a_bad_line_is_a_typed_error_with_its_line_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        std::fs::write(
            &path,
            "{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"time\":1}\nnope\n",
        )
        .expect("write");
        match read(&path) {
            Err(ReadError::Parse { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }
}
