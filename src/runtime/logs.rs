//! Container logs: one JSON object per line, Docker's json-file shape
//! (`{"log":"text\n","stream":"stdout","time":"RFC 3339"}`), written by the shim.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends lines from a container stream to the shared log file.
pub fn pump(mut src: impl Read, stream: &'static str, out: Arc<Mutex<File>>) {
    let mut reader = BufReader::with_capacity(64 * 1024, &mut src);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Cap a line so a process printing without newlines cannot grow memory without bound.
        let n = match reader.by_ref().take(16 * 1024).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let entry = LogLine {
            log: String::from_utf8_lossy(&line[..n]).into_owned(),
            stream: stream.to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        };
        let mut bytes = serde_json::to_vec(&entry).expect("log lines serialise");
        bytes.push(b'\n');
        if let Ok(mut f) = out.lock() {
            let _ = f.write_all(&bytes);
        }
    }
}

pub fn open_for_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Reads every complete line from `offset`; returns them and the new offset.
pub fn read_from(path: &Path, offset: u64) -> io::Result<(Vec<LogLine>, u64)> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines = buf[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    Ok((lines, offset + complete as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pump_writes_json_lines_and_reader_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let out = Arc::new(Mutex::new(open_for_append(&path).unwrap()));
        pump(&b"one\ntwo\npartial"[..], "stdout", out.clone());
        let (lines, off) = read_from(&path, 0).unwrap();
        assert_eq!(lines.iter().map(|l| l.log.as_str()).collect::<Vec<_>>(), vec!["one\n", "two\n", "partial"]);
        assert!(lines.iter().all(|l| l.stream == "stdout"));
        pump(&b"three\n"[..], "stderr", out);
        let (more, _) = read_from(&path, off).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].stream, "stderr");
    }
}
