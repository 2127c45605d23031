//! The on-disk format: record lines, the hash chain, segment names.
//!
//! See the crate documentation ("Record format") for the normative description.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use gateway_core::audit::AuditRecord;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The `prev` of the very first record: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// File name prefix of segment files.
pub(crate) const SEGMENT_PREFIX: &str = "segment-";
/// File name suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".log";
/// The checkpoint sidecar file.
pub const CHECKPOINT_FILE: &str = "checkpoints.log";

/// The running state of the hash chain: the next sequence number and the hash of the last
/// record line.
///
/// [`Chain::append`] turns a serialised record into its line; it is the whole cost of
/// chaining (one SHA-256 over the line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    next_seq: u64,
    head: [u8; 32],
}

impl Chain {
    /// An empty trail: the first record gets seq 0 and `prev` = [`GENESIS`].
    pub const fn genesis() -> Chain {
        Chain {
            next_seq: 0,
            head: GENESIS,
        }
    }

    /// Continues after a record with `last_seq` whose line hashes to `head`.
    pub const fn resume(last_seq: u64, head: [u8; 32]) -> Chain {
        Chain {
            next_seq: last_seq + 1,
            head,
        }
    }

    /// The sequence number the next record gets.
    pub const fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// SHA-256 of the last record line ([`GENESIS`] before the first).
    pub const fn head(&self) -> [u8; 32] {
        self.head
    }

    /// Appends the line of a record whose JSON is `body` to `out` and advances the chain.
    /// Returns the record's sequence number.
    pub fn append(&mut self, body: &[u8], out: &mut Vec<u8>) -> u64 {
        let seq = self.next_seq;
        let start = out.len();
        write_line(out, seq, &self.head, body);
        self.head = line_hash(&out[start..]);
        self.next_seq += 1;
        seq
    }
}

/// Serialises a record to its compact JSON (the `rec` member of its line).
pub fn encode_record(record: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    // Serialising a struct of strings, numbers and string-keyed maps into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, record);
    out
}

/// Writes `{"seq":<seq>,"prev":"<hex>","rec":<body>}\n`.
pub(crate) fn write_line(out: &mut Vec<u8>, seq: u64, prev: &[u8; 32], body: &[u8]) {
    out.reserve(body.len() + 110);
    out.extend_from_slice(b"{\"seq\":");
    let mut digits = [0u8; 20];
    out.extend_from_slice(format_u64(seq, &mut digits));
    out.extend_from_slice(b",\"prev\":\"");
    hex_into(prev, out);
    out.extend_from_slice(b"\",\"rec\":");
    out.extend_from_slice(body);
    out.extend_from_slice(b"}\n");
}

/// SHA-256 of a full line, its final `\n` included.
pub fn line_hash(line: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, line);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A parsed line; `rec` is left as raw JSON.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    pub(crate) seq: u64,
    #[serde(borrow)]
    pub(crate) prev: &'a str,
    #[serde(borrow)]
    pub(crate) rec: &'a RawValue,
}

/// Why a line is not a record line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineError {
    /// No final `\n`: the write of this line never completed.
    Torn,
    /// Not the envelope, or a `rec` that is not an audit record.
    Malformed(String),
}

/// Parses a complete line (with its `\n`) into the envelope and the record.
pub(crate) fn parse_line(line: &[u8]) -> Result<(u64, [u8; 32], AuditRecord), LineError> {
    let (seq, prev, rec) = parse_envelope(line)?;
    let record: AuditRecord = serde_json::from_str(rec.get())
        .map_err(|e| LineError::Malformed(format!("record: {e}")))?;
    Ok((seq, prev, record))
}

/// Parses the envelope of a complete line, leaving the record raw.
pub(crate) fn parse_envelope(line: &[u8]) -> Result<(u64, [u8; 32], &RawValue), LineError> {
    let Some(body) = line.strip_suffix(b"\n") else {
        return Err(LineError::Torn);
    };
    let env: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| LineError::Malformed(e.to_string()))?;
    let prev = parse_hash(env.prev).ok_or_else(|| LineError::Malformed("bad prev".into()))?;
    Ok((env.seq, prev, env.rec))
}

/// Reads the seq of a line without parsing the rest (the writer always puts it first).
pub(crate) fn peek_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Parses 64 hex digits.
pub(crate) fn parse_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let bytes = gateway_core::hex::decode(text)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes);
    Some(out)
}

/// Lower-case hex of a hash.
pub(crate) fn hash_hex(hash: &[u8; 32]) -> String {
    let mut out = Vec::with_capacity(64);
    hex_into(hash, &mut out);
    // hex_into writes only ASCII digits.
    String::from_utf8(out).unwrap_or_default()
}

fn hex_into(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 0x0f) as usize]);
    }
}

fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// `segment-<first seq, 20 digits>.log`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The first seq named by a segment file name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment files of `dir`, ordered by first seq.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(first) = name.to_str().and_then(parse_segment_name) {
            out.push((first, entry.path()));
        }
    }
    out.sort_by_key(|(first, _)| *first);
    Ok(out)
}

/// Reads a file line by line, giving each line's byte offset. The last line may lack its
/// `\n` (a torn write).
pub(crate) struct Lines {
    reader: BufReader<File>,
    offset: u64,
    buf: Vec<u8>,
}

impl Lines {
    pub(crate) fn open(path: &Path) -> io::Result<Lines> {
        Ok(Lines::new(File::open(path)?, 0))
    }

    pub(crate) fn new(file: File, offset: u64) -> Lines {
        Lines {
            reader: BufReader::with_capacity(256 * 1024, file),
            offset,
            buf: Vec::new(),
        }
    }

    /// The next line and its offset; `None` at the end of the file.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        let at = self.offset;
        self.offset += n as u64;
        Ok(Some((at, &self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use gateway_core::audit::{AuditTime, RecordKind};

    use super::*;

    #[test]
    fn lines_chain_and_parse_back() {
        let record = AuditRecord::new(RecordKind::PartnerRequest, AuditTime::from_millis(5), "gw");
        let body = encode_record(&record);
        let mut chain = Chain::genesis();
        let mut out = Vec::new();
        assert_eq!(chain.append(&body, &mut out), 0);
        let first_end = out.len();
        assert_eq!(chain.append(&body, &mut out), 1);
        let first = &out[..first_end];
        assert!(first.starts_with(b"{\"seq\":0,\"prev\":\"0000"));
        let (seq, prev, parsed) = parse_line(first).unwrap();
        assert_eq!((seq, prev, parsed), (0, GENESIS, record));
        let (seq, prev, _) = parse_line(&out[first_end..]).unwrap();
        assert_eq!((seq, prev), (1, line_hash(first)));
        assert_eq!(chain.head(), line_hash(&out[first_end..]));
        assert_eq!(peek_seq(&out[first_end..]), Some(1));
        assert_eq!(
            parse_line(&first[..first.len() - 1]).unwrap_err(),
            LineError::Torn
        );
    }

    #[test]
    fn segment_names_sort_by_first_seq() {
        assert_eq!(segment_name(42), "segment-00000000000000000042.log");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("segment-42.log"), None);
        assert_eq!(parse_segment_name("checkpoints.log"), None);
    }

    #[test]
    fn numbers_format_like_display() {
        let mut buf = [0u8; 20];
        for n in [0, 9, 10, 1234567890, u64::MAX] {
            assert_eq!(format_u64(n, &mut buf), n.to_string().as_bytes());
        }
    }
}
