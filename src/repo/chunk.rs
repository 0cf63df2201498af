//! Content-defined chunking (FastCDC) of streams and of data already in memory, with the
//! same cut points either way.

use std::io::Read;

use super::ChunkerParams;

/// Reads a whole stream in content-defined chunks.
pub fn chunks<R: Read>(reader: R, p: ChunkerParams) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    fastcdc::v2020::StreamCDC::new(reader, p.min, p.avg, p.max).map(|r| {
        r.map(|c| c.data).map_err(|e| match e {
            fastcdc::v2020::Error::IoError(e) => e,
            other => std::io::Error::other(other.to_string()),
        })
    })
}

/// Cuts data already in memory into the same content-defined chunks [`chunks`] finds in a
/// stream of it.
pub fn chunk_slice(data: &[u8], p: ChunkerParams) -> impl Iterator<Item = &[u8]> {
    fastcdc::v2020::FastCDC::new(data, p.min, p.avg, p.max).map(move |c| &data[c.offset..c.offset + c.length])
}

/// Files made of fixed-size pages (databases): cut at page boundaries into chunks of
/// [`page_chunk`] bytes, so a page rewritten in place changes one chunk, not the
/// content-defined chunks around it.
///
/// The page size comes from a rule the user gave for the file's name (`*.ibd=16384`), else
/// from the file's own header: SQLite (`SQLite format 3`, the page size at byte 16), InnoDB
/// tablespaces (`*.ibd`, `*.ibu`, `ibdata*`, `undo001`/`undo_001`: an FSP header page whose
/// flags give the page size), PostgreSQL relation files (named by number: the page header's
/// size and layout version). A file whose size is not a whole number of pages is not a page
/// file.
#[derive(Clone, Debug, Default)]
pub struct PageRules {
    /// (name pattern, page size): the first that matches decides.
    pub by_name: Vec<(String, u32)>,
}

/// How many bytes of a file's start [`PageRules::page_size`] looks at.
pub const PAGE_HEAD: usize = 64;

/// The chunk size for pages of `page` bytes: one page, or as many as make 8 KiB.
pub fn page_chunk(page: u32) -> usize {
    let page = page.max(1) as usize;
    page * 8192usize.div_ceil(page)
}

fn valid_page(p: u32, min: u32) -> bool {
    p.is_power_of_two() && (min..=65536).contains(&p)
}

impl PageRules {
    /// Parses `PATTERN=SIZE` (a size in bytes, or with k: `16k`).
    pub fn parse_rule(s: &str) -> Result<(String, u32), String> {
        let (pat, size) =
            s.rsplit_once('=').ok_or_else(|| format!("{s:?}: expected NAME-PATTERN=PAGE-SIZE, like '*.ibd=16k'"))?;
        let size = size.trim();
        let n: u32 = match size.strip_suffix(['k', 'K']) {
            Some(k) => k.parse::<u32>().ok().and_then(|k| k.checked_mul(1024)),
            None => size.parse().ok(),
        }
        .filter(|&p| valid_page(p, 512))
        .ok_or_else(|| format!("{s:?}: a page size is a power of two from 512 bytes to 64k"))?;
        if pat.is_empty() || pat.contains('/') {
            return Err(format!("{s:?}: the pattern matches file names (like *.ibd), not paths"));
        }
        Ok((pat.to_string(), n))
    }

    /// The page size of file `name` of `size` bytes starting with `head`, if it is a page file.
    pub fn page_size(&self, name: &[u8], head: &[u8], size: u64) -> Option<u32> {
        let name_text = String::from_utf8_lossy(name);
        let by_rule = self.by_name.iter().find_map(|(pat, p)| {
            let pat: Vec<char> = pat.chars().collect();
            crate::glob::segment_match(&pat, &name_text.chars().collect::<Vec<_>>()).then_some(*p)
        });
        let whole = |p: u32| size > 0 && size.is_multiple_of(p as u64);
        // A rule whose size does not fit the file leaves it to the header.
        by_rule.filter(|&p| whole(p)).or_else(|| detect(&name_text, head).filter(|&p| whole(p)))
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A database's page size from its file's name and first bytes.
fn detect(name: &str, head: &[u8]) -> Option<u32> {
    if head.starts_with(b"SQLite format 3\0") {
        let p = match be16(head, 16)? {
            1 => 65536,
            p => p as u32,
        };
        return valid_page(p, 512).then_some(p);
    }
    let undo = name.strip_prefix("undo").map(|n| n.strip_prefix('_').unwrap_or(n));
    let innodb = name.ends_with(".ibd")
        || name.ends_with(".ibu")
        || name.starts_with("ibdata")
        || undo.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if innodb {
        // Page 0 is the FSP header page: its own number 0 at byte 4, type FSP_HDR (8) at 24,
        // the tablespace flags at 38 + 16. MariaDB's full_crc32 format (flag bit 4) keeps the
        // page size in bits 0-3; otherwise a compressed table's physical page size is in bits
        // 1-4, and the page size in bits 6-9 (0: 16 KiB).
        if be32(head, 4)? != 0 || be16(head, 24)? != 8 {
            return None;
        }
        let f = be32(head, 54)?;
        let p = if f & 0x10 != 0 {
            512u32.checked_shl(f & 0xF)?
        } else if (f >> 1) & 0xF != 0 {
            512u32.checked_shl((f >> 1) & 0xF)?
        } else if (f >> 6) & 0xF == 0 {
            16384
        } else {
            512u32.checked_shl((f >> 6) & 0xF)?
        };
        return valid_page(p, 1024).then_some(p);
    }
    // PostgreSQL: a relation file is named by number (segments .N, forks _fsm, _vm, _init);
    // pd_pagesize_version at byte 18 holds the page size and layout version 4.
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (base, segment) = match name.split_once('.') {
        Some((b, seg)) => (b, Some(seg)),
        None => (name, None),
    };
    let relation = match base.split_once('_') {
        Some((oid, fork)) => numeric(oid) && matches!(fork, "fsm" | "vm" | "init"),
        None => numeric(base),
    };
    if relation && segment.is_none_or(numeric) {
        let v = le16(head, 18)?;
        let p = (v & 0xFF00) as u32;
        return (v & 0xFF == 4 && valid_page(p, 1024)).then_some(p);
    }
    None
}

/// Reads a whole stream in chunks of `size` bytes (the last one shorter).
pub fn fixed_chunks<R: Read>(mut reader: R, size: usize) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    debug_assert!(size > 0, "chunks of no bytes");
    let mut done = size == 0;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = vec![0u8; size];
        let mut filled = 0;
        while filled < size {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        }
        if filled < size {
            done = true;
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
        }
        Some(Ok(buf))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn innodb_head(ssize: u32) -> Vec<u8> {
        let mut h = vec![0u8; PAGE_HEAD];
        h[24..26].copy_from_slice(&8u16.to_be_bytes());
        h[54..58].copy_from_slice(&(ssize << 6 | 1).to_be_bytes());
        h
    }

    #[test]
    fn databases_are_known_by_their_headers_and_names() {
        let rules = PageRules::default();
        let mut sqlite = b"SQLite format 3\0".to_vec();
        sqlite.extend_from_slice(&4096u16.to_be_bytes());
        assert_eq!(rules.page_size(b"catalogue.db", &sqlite, 40960), Some(4096));
        assert_eq!(rules.page_size(b"catalogue.db", &sqlite, 40961), None, "not whole pages");
        assert_eq!(rules.page_size(b"books.ibd", &innodb_head(0), 16384 * 6), Some(16384));
        assert_eq!(rules.page_size(b"books.ibd", &innodb_head(4), 8192 * 6), Some(8192));
        assert_eq!(rules.page_size(b"books.txt", &innodb_head(0), 16384 * 6), None, "InnoDB by its names only");
        let mut random = innodb_head(0);
        random[4] = 7; // page 0 says it is another page: not a tablespace's first page
        assert_eq!(rules.page_size(b"books.ibd", &random, 16384 * 6), None);
        let mut pg = vec![0u8; PAGE_HEAD];
        pg[18..20].copy_from_slice(&(8192u16 | 4).to_le_bytes());
        assert_eq!(rules.page_size(b"16384", &pg, 8192 * 3), Some(8192));
        assert_eq!(rules.page_size(b"16384.1", &pg, 8192 * 3), Some(8192));
        assert_eq!(rules.page_size(b"16384_fsm", &pg, 8192 * 3), Some(8192));
        assert_eq!(rules.page_size(b"notes", &pg, 8192 * 3), None);
        assert_eq!(rules.page_size(b"123.txt", &pg, 8192 * 3), None, "a number is not a relation");
        assert_eq!(rules.page_size(b"16384_vm.2", &pg, 8192 * 3), Some(8192));
        pg[18] = 3; // an older layout
        assert_eq!(rules.page_size(b"16384", &pg, 8192 * 3), None);
        // MariaDB's full_crc32 tablespaces (page size in bits 0-3, marker bit 4), its undo
        // tablespaces, compressed tables (physical page size in bits 1-4).
        let mut full = innodb_head(0);
        full[54..58].copy_from_slice(&0x14u32.to_be_bytes());
        assert_eq!(rules.page_size(b"books.ibd", &full, 8192 * 6), Some(8192));
        full[54..58].copy_from_slice(&0x15u32.to_be_bytes());
        assert_eq!(rules.page_size(b"undo001", &full, 16384 * 6), Some(16384));
        assert_eq!(rules.page_size(b"undo_002", &full, 16384 * 6), Some(16384));
        assert_eq!(rules.page_size(b"undone", &full, 16384 * 6), None);
        let mut zip = innodb_head(0);
        zip[54..58].copy_from_slice(&(4u32 << 1 | 1).to_be_bytes());
        assert_eq!(rules.page_size(b"books.ibd", &zip, 8192 * 6), Some(8192));
        let mut big = b"SQLite format 3\0".to_vec();
        big.extend_from_slice(&1u16.to_be_bytes());
        assert_eq!(rules.page_size(b"x.sqlite", &big, 65536 * 2), Some(65536));
        // A rule for a name wins.
        let rules = PageRules { by_name: vec![PageRules::parse_rule("*.ibd=8k").unwrap()] };
        assert_eq!(rules.page_size(b"books.ibd", &[0; PAGE_HEAD], 8192 * 10), Some(8192));
        // A rule that does not fit the file leaves it to its header.
        let rules = PageRules { by_name: vec![PageRules::parse_rule("*.ibd=32k").unwrap()] };
        assert_eq!(rules.page_size(b"books.ibd", &innodb_head(0), 16384 * 3), Some(16384));
        assert!(PageRules::parse_rule("*.ibd=3000").is_err());
        assert!(PageRules::parse_rule("db/*.ibd=8k").is_err());
        assert!(PageRules::parse_rule("*.ibd").is_err());
    }

    #[test]
    fn fixed_chunks_cover_the_stream_exactly() {
        let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let chunks: Vec<Vec<u8>> = fixed_chunks(&data[..], 8192).map(Result::unwrap).collect();
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [8192, 8192, 3616]);
        assert_eq!(chunks.concat(), data);
        assert_eq!(fixed_chunks(&b""[..], 8192).count(), 0);
        // Short reads, interruptions, and an error after some data.
        struct Awkward {
            data: Vec<u8>,
            at: usize,
            calls: usize,
        }
        impl Read for Awkward {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.calls += 1;
                if self.calls.is_multiple_of(3) {
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
                if self.at >= self.data.len() {
                    return Err(std::io::Error::other("the disk went away"));
                }
                let n = buf.len().min(1 + self.calls % 7).min(self.data.len() - self.at);
                buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
                self.at += n;
                Ok(n)
            }
        }
        let mut got = Vec::new();
        let mut failed = false;
        for c in fixed_chunks(Awkward { data: data.clone(), at: 0, calls: 0 }, 8192) {
            match c {
                Ok(c) => {
                    assert!(!failed, "a chunk after the error");
                    got.extend(c)
                }
                Err(_) => failed = true,
            }
        }
        assert!(failed, "the error was lost");
        assert_eq!(got, data[..16384], "whole chunks before the error, exactly");
        assert_eq!(page_chunk(4096), 8192);
        assert_eq!(page_chunk(16384), 16384);
    }
}
