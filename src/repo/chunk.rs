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
