//! The verifier: re-reads the whole trail and reports the first break.
//!
//! Checks, in order:
//! 1. every checkpoint in `checkpoints.log` parses, and, given a trusted key, its Ed25519
//!    signature verifies (a forged or edited checkpoint);
//! 2. the segments, in file-name order, hold seq 0, 1, 2, … with no gap and no reordering,
//!    each file starting at the seq its name says; every line parses; every `prev` is the
//!    SHA-256 of the line before (an edited record);
//! 3. every checkpoint's segment exists (a deleted newest segment), its seq is still in the
//!    trail (a truncated tail), and the line at its seq hashes to its `head` (a re-chained
//!    forgery).
//!
//! A final line without its `\n` in the newest segment is a write a crash interrupted, never
//! acknowledged: it is reported in the summary, not as a break (the writer truncates it when
//! it next opens the trail). Records after the last checkpoint are covered by the chain only:
//! cutting them off is undetectable locally, which is why checkpoints are frequent and the
//! stream is forwarded off the machine.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::format::{
    CHECKPOINT_FILE, GENESIS, LineError, hash_hex, line_hash, list_segments, parse_line,
};

/// What a clean verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Segment files read.
    pub segments: usize,
    /// Records in the trail.
    pub records: u64,
    /// Seq of the last record.
    pub last_seq: Option<u64>,
    /// Hash of the last record (hex).
    pub head: Option<String>,
    /// Checkpoints read.
    pub checkpoints: usize,
    /// Whether their signatures were checked (a trusted key was given).
    pub signatures_checked: bool,
    /// Seq covered by the last checkpoint.
    pub last_checkpoint_seq: Option<u64>,
    /// Records after the last checkpoint (protected by the chain only).
    pub unsigned_tail: u64,
    /// A torn final line (file, offset) that was ignored.
    pub torn_tail: Option<(PathBuf, u64)>,
}

/// The first break found: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at {}:{offset}{}", file.display(), seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
pub struct VerifyError {
    /// The segment (or checkpoint) file.
    pub file: PathBuf,
    /// Byte offset of the offending line in it.
    pub offset: u64,
    /// The record's seq, when known.
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: BreakKind,
}

/// The kinds of break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakKind {
    /// The record's bytes no longer hash to the `prev` of the record after it: this record
    /// (or the next one's `prev`) was edited.
    #[error("record edited: it does not hash to the prev of seq {next_seq}")]
    EditedRecord {
        /// The record whose `prev` disagrees.
        next_seq: u64,
    },
    /// Records are missing: a seq was skipped.
    #[error("records missing: expected seq {expected}, found {found}")]
    MissingRecords {
        /// The seq that should be here.
        expected: u64,
        /// The seq that is.
        found: u64,
    },
    /// A whole segment is missing.
    #[error("segment missing: no segment file starts at seq {first_seq}")]
    MissingSegment {
        /// The first seq of the missing segment.
        first_seq: u64,
    },
    /// Records are out of order.
    #[error("records reordered: expected seq {expected}, found {found}")]
    Reordered {
        /// The seq that should be here.
        expected: u64,
        /// The seq that is.
        found: u64,
    },
    /// The trail ends before a checkpoint's seq.
    #[error("truncated tail: a checkpoint covers seq {checkpoint_seq}, the trail ends at {}", last_seq.map_or("nothing".to_string(), |s| s.to_string()))]
    TruncatedTail {
        /// The checkpoint's seq.
        checkpoint_seq: u64,
        /// The last record present.
        last_seq: Option<u64>,
    },
    /// The record at a checkpoint's seq does not hash to its head: the trail was rewritten
    /// (re-chained) or the checkpoint forged.
    #[error("checkpoint mismatch: the record does not hash to the head signed at seq {seq}")]
    CheckpointMismatch {
        /// The checkpoint's seq.
        seq: u64,
    },
    /// A checkpoint's signature does not verify under the trusted key.
    #[error("checkpoint signature does not verify under the trusted key")]
    BadSignature,
    /// A line that is not a record (or checkpoint).
    #[error("unparseable line: {reason}")]
    Unparseable {
        /// Why.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read: {message}")]
    Io {
        /// The cause.
        message: String,
    },
}

/// How many lines ahead to look for a missing seq before calling it missing rather than
/// reordered.
const REORDER_WINDOW: usize = 16;

/// Verifies the trail in `dir`. `trusted_key` is the raw 32-byte Ed25519 public key of the
/// checkpoint signer (see [`parse_public_key`](crate::parse_public_key)); without it,
/// checkpoint signatures are not checked (a forged checkpoint then goes unnoticed unless it
/// disagrees with the chain).
pub fn verify(dir: &Path, trusted_key: Option<&[u8]>) -> Result<VerifySummary, VerifyError> {
    let io = |file: &Path, e: std::io::Error| VerifyError {
        file: file.to_path_buf(),
        offset: 0,
        seq: None,
        kind: BreakKind::Io {
            message: e.to_string(),
        },
    };

    // 1. Checkpoints.
    let sidecar = dir.join(CHECKPOINT_FILE);
    let mut checkpoints: Vec<(u64, Checkpoint)> = Vec::new();
    if sidecar.exists() {
        let bytes = std::fs::read(&sidecar).map_err(|e| io(&sidecar, e))?;
        for (offset, line) in split_lines(&bytes) {
            if !line.ends_with(b"\n") {
                break; // torn by a crash, never relied on
            }
            let cp = Checkpoint::parse(line).map_err(|reason| VerifyError {
                file: sidecar.clone(),
                offset,
                seq: None,
                kind: BreakKind::Unparseable { reason },
            })?;
            if let Some(key) = trusted_key
                && !cp.verify(key)
            {
                return Err(VerifyError {
                    file: sidecar.clone(),
                    offset,
                    seq: Some(cp.body.seq),
                    kind: BreakKind::BadSignature,
                });
            }
            checkpoints.push((offset, cp));
        }
    }
    let wanted: HashSet<u64> = checkpoints.iter().map(|(_, cp)| cp.body.seq).collect();
    // Every segment the writer opened is named by a checkpoint written as it opened it.
    let announced: HashSet<u64> = checkpoints.iter().map(|(_, cp)| cp.body.segment).collect();

    // 2. The chain.
    let segments = list_segments(dir).map_err(|e| io(dir, e))?;
    let present: HashSet<u64> = segments.iter().map(|(first, _)| *first).collect();
    let mut expected = 0u64;
    let mut prev_hash = GENESIS;
    let mut prev_at: Option<(PathBuf, u64, u64)> = None;
    let mut heads: HashMap<u64, ([u8; 32], PathBuf, u64)> = HashMap::new();
    let mut records = 0u64;
    let mut torn_tail = None;
    for (i, (first, path)) in segments.iter().enumerate() {
        let newest = i + 1 == segments.len();
        let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
        let lines: Vec<(u64, &[u8])> = split_lines(&bytes).collect();
        if lines.is_empty() {
            continue;
        }
        if *first > expected {
            // The gap falls between files: a whole file is gone if a checkpoint announced a
            // segment starting there, else the records at the end of the previous one are.
            let kind = if announced.contains(&expected) {
                BreakKind::MissingSegment {
                    first_seq: expected,
                }
            } else {
                BreakKind::MissingRecords {
                    expected,
                    found: *first,
                }
            };
            return Err(VerifyError {
                file: path.clone(),
                offset: 0,
                seq: Some(*first),
                kind,
            });
        }
        for (n, &(offset, line)) in lines.iter().enumerate() {
            let at = |seq, kind| VerifyError {
                file: path.clone(),
                offset,
                seq,
                kind,
            };
            let (seq, prev, _) = match parse_line(line) {
                Ok(parsed) => parsed,
                Err(LineError::Torn) if newest && n + 1 == lines.len() => {
                    torn_tail = Some((path.clone(), offset));
                    break;
                }
                Err(LineError::Torn) => {
                    return Err(at(
                        None,
                        BreakKind::Unparseable {
                            reason: "line cut short".into(),
                        },
                    ));
                }
                Err(LineError::Malformed(reason)) => {
                    return Err(at(None, BreakKind::Unparseable { reason }));
                }
            };
            if seq != expected {
                let later = lines[n + 1..]
                    .iter()
                    .take(REORDER_WINDOW)
                    .any(|(_, l)| crate::format::peek_seq(l) == Some(expected));
                let kind = if seq < expected || later {
                    BreakKind::Reordered {
                        expected,
                        found: seq,
                    }
                } else {
                    BreakKind::MissingRecords {
                        expected,
                        found: seq,
                    }
                };
                return Err(at(Some(seq), kind));
            }
            if prev != prev_hash {
                let (file, offset, prev_seq) = match prev_at.take() {
                    Some((file, offset, s)) => (file, offset, Some(s)),
                    None => (path.clone(), offset, Some(seq)),
                };
                return Err(VerifyError {
                    file,
                    offset,
                    seq: prev_seq,
                    kind: BreakKind::EditedRecord { next_seq: seq },
                });
            }
            prev_hash = line_hash(line);
            if wanted.contains(&seq) {
                heads.insert(seq, (prev_hash, path.clone(), offset));
            }
            prev_at = Some((path.clone(), offset, seq));
            expected += 1;
            records += 1;
        }
    }
    let last_seq = expected.checked_sub(1);

    // 3. Checkpoint coverage.
    for (offset, cp) in &checkpoints {
        let at = |kind| VerifyError {
            file: sidecar.clone(),
            offset: *offset,
            seq: Some(cp.body.seq),
            kind,
        };
        if !present.contains(&cp.body.segment) {
            return Err(at(BreakKind::MissingSegment {
                first_seq: cp.body.segment,
            }));
        }
        if last_seq.is_none_or(|last| cp.body.seq > last) {
            return Err(at(BreakKind::TruncatedTail {
                checkpoint_seq: cp.body.seq,
                last_seq,
            }));
        }
        match heads.get(&cp.body.seq) {
            Some((hash, _, _)) if *hash == cp.body.head => {}
            Some((_, file, record_offset)) => {
                return Err(VerifyError {
                    file: file.clone(),
                    offset: *record_offset,
                    seq: Some(cp.body.seq),
                    kind: BreakKind::CheckpointMismatch { seq: cp.body.seq },
                });
            }
            None => return Err(at(BreakKind::CheckpointMismatch { seq: cp.body.seq })),
        }
    }
    let last_checkpoint_seq = wanted.iter().max().copied();
    Ok(VerifySummary {
        segments: segments.len(),
        records,
        last_seq,
        head: last_seq.map(|_| hash_hex(&prev_hash)),
        checkpoints: checkpoints.len(),
        signatures_checked: trusted_key.is_some(),
        last_checkpoint_seq,
        unsigned_tail: match (last_seq, last_checkpoint_seq) {
            (Some(last), Some(cp)) => last - cp,
            (Some(last), None) => last + 1,
            (None, _) => 0,
        },
        torn_tail,
    })
}

/// Lines with their offsets; the last may lack its `\n`.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        if offset >= bytes.len() {
            return None;
        }
        let end = bytes[offset..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| offset + i + 1);
        let at = offset;
        offset = end;
        Some((at as u64, &bytes[at..end]))
    })
}
