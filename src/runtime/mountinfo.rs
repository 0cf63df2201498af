//! A mount table (`/proc/self/mountinfo`), read as the kernel writes it: the mount points
//! below a path, for making a read-only bind read-only all the way down on kernels without
//! `mount_setattr`. Paths are bytes: a mount point may have any name but `/` and NUL.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One line of the table: its mount, the mount it sits on, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub parent: u64,
    pub point: PathBuf,
}

/// Parses the whole table; a line that is not as the kernel writes it is an error (the
/// caller must not act on half a table).
pub fn parse(table: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (n, line) in table.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
        let mut fields = line.split(|b| *b == b' ');
        let mut number = |what: &str| -> Result<u64, String> {
            let f = fields.next().ok_or_else(|| format!("mountinfo line {}: no {what}", n + 1))?;
            std::str::from_utf8(f)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("mountinfo line {}: bad {what}", n + 1))
        };
        let id = number("mount ID")?;
        let parent = number("parent ID")?;
        let _device = fields.next();
        let _root = fields.next();
        let point = fields.next().ok_or_else(|| format!("mountinfo line {}: no mount point", n + 1))?;
        let point = unescape(point);
        if !point.starts_with(b"/") {
            return Err(format!("mountinfo line {}: mount point is not absolute", n + 1));
        }
        out.push(Entry { id, parent, point: PathBuf::from(OsString::from_vec(point)) });
    }
    if out.is_empty() {
        return Err("the mount table is empty".into());
    }
    Ok(out)
}

/// The kernel writes space, tab, newline and backslash in a path as `\ooo` (octal).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).filter(|d| d[0] <= b'3' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (field[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The mount points strictly below `dir`, shallower first (the table's order among equals):
/// parents before their children. A point may be listed more than once (mounts stacked on
/// it) or be covered by a later mount above it; the caller acts on what the path reaches.
pub fn below(table: &[Entry], dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        table.iter().filter(|e| e.point.starts_with(dir) && e.point != dir).map(|e| e.point.clone()).collect();
    out.sort_by_key(|p| p.components().count());
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(v: &[PathBuf]) -> Vec<&str> {
        v.iter().map(|p| p.to_str().unwrap()).collect()
    }

    #[test]
    fn mount_points_below_a_directory_come_parents_first() {
        let table = parse(
            b"\
22 1 8:1 / / rw - ext4 /dev/vda rw
23 22 0:5 / /srv/data rw - ext4 /dev/vdb rw
24 23 0:6 / /srv/data/with\\040space rw - tmpfs tmpfs rw
25 22 0:7 / /srv/data2 rw - tmpfs tmpfs rw
28 30 0:10 / /dev/shm rw - tmpfs shm2 rw
26 22 0:8 / /dev rw - devtmpfs udev rw
27 26 0:9 / /dev/shm rw - tmpfs shm rw
",
        )
        .unwrap();
        assert_eq!(points(&below(&table, Path::new("/srv/data"))), ["/srv/data/with space"]);
        assert_eq!(
            points(&below(&table, Path::new("/"))),
            ["/dev", "/srv/data", "/srv/data2", "/dev/shm", "/srv/data/with space"]
        );
        assert!(below(&table, Path::new("/srv/data/with space")).is_empty());
        assert!(below(&table, Path::new("/srv/dat")).is_empty(), "a name's prefix is not a parent");
    }

    #[test]
    fn names_are_bytes_and_damaged_tables_are_refused() {
        let table = parse(b"1 0 8:1 / / rw - ext4 x rw\n2 1 0:5 / /x/\xff\\134y rw - tmpfs t rw\n").unwrap();
        assert_eq!(below(&table, Path::new("/x")), [PathBuf::from(OsString::from_vec(b"/x/\xff\\y".to_vec()))]);
        assert!(parse(b"").is_err());
        assert!(parse(b"1 0 8:1 /\n").is_err());
        assert!(parse(b"x 0 8:1 / / rw\n").is_err());
        assert!(parse(b"1 0 8:1 / relative rw\n").is_err());
        // An escape the kernel never writes stays as it is, and nothing overflows.
        assert_eq!(unescape(b"\\777\\1"), b"\\777\\1");
    }
}
