//! The in-memory index over the trail: by time, by partner and by customer hash.
//!
//! The writer adds each record once it is durable, and rebuilds the index on open by
//! scanning the segments once. A query walks the matching keys of one ordered set (the
//! customer's if given, else the partner's, else all), filters the rest in memory, and reads
//! only the records of the page it returns from the segment files (positioned reads).
//!
//! Memory: roughly 150 bytes per record (a location and the indexed fields, plus one or two
//! ordered-set entries). Size retention accordingly; see the crate docs.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use gateway_core::PartnerId;
use gateway_core::audit::{
    AuditRecord, AuditTime, CustomerHash, Decision, RecordKind, WithheldField,
};
use gateway_core::{ConsentId, CustomerRef};
use serde::Deserialize;

use crate::format::{parse_line, segment_name};

/// A query over the trail. Every set member narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Only this partner's records.
    pub partner: Option<PartnerId>,
    /// Only records about this customer.
    pub customer_hash: Option<CustomerHash>,
    /// Records at or after this time.
    pub from: Option<AuditTime>,
    /// Records at or before this time.
    pub to: Option<AuditTime>,
    /// Only this decision.
    pub decision: Option<Decision>,
    /// Only this kind.
    pub kind: Option<RecordKind>,
}

/// Where a page ended; pass it back to get the next page. Printed as `<millis>.<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageCursor {
    time_ms: i64,
    seq: u64,
}

/// One page of results, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// The records.
    pub records: Vec<FoundRecord>,
    /// The cursor of the next page, if there are more.
    pub next: Option<PageCursor>,
}

/// A record and its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRecord {
    /// Its sequence number in the trail.
    pub seq: u64,
    /// The record.
    pub record: AuditRecord,
}

/// One disclosure of a customer's data to a partner, for the customer's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    /// Sequence number of the record.
    pub seq: u64,
    /// When.
    pub time: AuditTime,
    /// To whom.
    pub partner: Option<PartnerId>,
    /// Under which consent.
    pub consent_id: Option<ConsentId>,
    /// The pairwise reference the partner used.
    pub customer_ref: Option<CustomerRef>,
    /// The route.
    pub route: Option<String>,
    /// Fields released.
    pub released: Vec<String>,
    /// Fields withheld, with reasons.
    pub withheld: Vec<WithheldField>,
}

/// Why a search failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SearchError {
    /// A segment file could not be read.
    #[error("cannot read audit segment {file}: {message}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The cause.
        message: String,
    },
    /// An indexed record no longer parses (the file was changed under the index).
    #[error("audit record {seq} in {file} no longer parses")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// The record.
        seq: u64,
    },
    /// A page cursor that was not made by [`PageCursor`]'s `Display`.
    #[error("malformed page cursor")]
    BadCursor,
}

/// The index; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct AuditIndex {
    dir: Arc<PathBuf>,
    inner: Arc<RwLock<Inner>>,
}

/// The fields of a record the index keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexFields {
    pub(crate) time: AuditTime,
    pub(crate) kind: RecordKind,
    pub(crate) decision: Decision,
    pub(crate) partner: Option<PartnerId>,
    pub(crate) customer_hash: Option<CustomerHash>,
}

/// Where a record's line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

#[derive(Debug, Default)]
struct Inner {
    /// Ascending by seq (records are indexed in trail order).
    metas: Vec<(u64, Meta)>,
    partners: Vec<PartnerId>,
    partner_numbers: HashMap<PartnerId, u32>,
    by_time: BTreeSet<(i64, u64)>,
    by_partner: HashMap<u32, BTreeSet<(i64, u64)>>,
    by_customer: HashMap<CustomerHash, BTreeSet<(i64, u64)>>,
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    location: Location,
    time_ms: i64,
    partner: u32,
    decision: Decision,
    kind: RecordKind,
}

const NO_PARTNER: u32 = u32::MAX;

// === impl SearchFilter ===

impl SearchFilter {
    fn matches(&self, meta: &Meta, partner: Option<u32>) -> bool {
        self.decision.is_none_or(|d| d == meta.decision)
            && self.kind.is_none_or(|k| k == meta.kind)
            && partner.is_none_or(|p| p == meta.partner)
    }
}

// === impl PageCursor ===

impl PageCursor {
    /// Parses `<millis>.<seq>`.
    pub fn parse(text: &str) -> Result<PageCursor, SearchError> {
        let (time, seq) = text.split_once('.').ok_or(SearchError::BadCursor)?;
        Ok(PageCursor {
            time_ms: time.parse().map_err(|_| SearchError::BadCursor)?,
            seq: seq.parse().map_err(|_| SearchError::BadCursor)?,
        })
    }
}

impl std::fmt::Display for PageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.time_ms, self.seq)
    }
}

// === impl IndexFields ===

#[derive(Deserialize)]
struct FieldsOnly {
    time: AuditTime,
    kind: RecordKind,
    decision: Decision,
    #[serde(default)]
    partner: Option<PartnerId>,
    #[serde(default)]
    customer_hash: Option<CustomerHash>,
}

impl IndexFields {
    pub(crate) fn of(record: &AuditRecord) -> IndexFields {
        IndexFields {
            time: record.time,
            kind: record.kind,
            decision: record.decision,
            partner: record.partner.clone(),
            customer_hash: record.customer_hash,
        }
    }

    /// Reads just the indexed fields of a record's JSON (faster than the whole record).
    pub(crate) fn parse(rec_json: &str) -> Option<IndexFields> {
        let f: FieldsOnly = serde_json::from_str(rec_json).ok()?;
        Some(IndexFields {
            time: f.time,
            kind: f.kind,
            decision: f.decision,
            partner: f.partner,
            customer_hash: f.customer_hash,
        })
    }
}

// === impl AuditIndex ===

impl AuditIndex {
    /// An empty index over the segment files of `dir`.
    pub fn new(dir: &Path) -> AuditIndex {
        AuditIndex {
            dir: Arc::new(dir.to_path_buf()),
            inner: Arc::default(),
        }
    }

    /// Number of indexed records.
    pub fn len(&self) -> usize {
        self.read().metas.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds durable records, in seq order, under one lock.
    pub(crate) fn insert_batch(
        &self,
        batch: impl IntoIterator<Item = (u64, Location, IndexFields)>,
    ) {
        let mut inner = self.write();
        for (seq, location, fields) in batch {
            inner.insert(seq, location, fields);
        }
    }

    /// Records matching `filter`, newest first, continuing after `after`, at most `limit`.
    ///
    /// Blocking: reads the page's records from the segment files. Call it from
    /// `spawn_blocking` (or use [`AuditWriter::search`](crate::AuditWriter::search)).
    pub fn search(
        &self,
        filter: &SearchFilter,
        after: Option<&PageCursor>,
        limit: usize,
    ) -> Result<SearchPage, SearchError> {
        let (hits, next) = {
            let inner = self.read();
            inner.select(filter, after, limit.max(1))
        };
        let records = self.load(&hits)?;
        Ok(SearchPage { records, next })
    }

    /// The customer's access log: every disclosure of their data (allowed partner requests
    /// about them), newest first. Blocking, like [`AuditIndex::search`].
    pub fn access_log(&self, customer: &CustomerHash) -> Result<Vec<Disclosure>, SearchError> {
        let filter = SearchFilter {
            customer_hash: Some(*customer),
            decision: Some(Decision::Allow),
            kind: Some(RecordKind::PartnerRequest),
            ..SearchFilter::default()
        };
        let (hits, _) = self.read().select(&filter, None, usize::MAX);
        let records = self.load(&hits)?;
        Ok(records
            .into_iter()
            .map(|found| Disclosure {
                seq: found.seq,
                time: found.record.time,
                partner: found.record.partner,
                consent_id: found.record.consent_id,
                customer_ref: found.record.customer_ref,
                route: found.record.route,
                released: found.record.released,
                withheld: found.record.withheld,
            })
            .collect())
    }

    fn load(&self, hits: &[(u64, Location)]) -> Result<Vec<FoundRecord>, SearchError> {
        let mut out = Vec::with_capacity(hits.len());
        let mut open: Option<(u64, File, PathBuf)> = None;
        for &(seq, location) in hits {
            if open
                .as_ref()
                .is_none_or(|(segment, _, _)| *segment != location.segment)
            {
                let path = self.dir.join(segment_name(location.segment));
                let file = File::open(&path).map_err(|e| SearchError::Io {
                    file: path.clone(),
                    message: e.to_string(),
                })?;
                open = Some((location.segment, file, path));
            }
            let Some((_, file, path)) = open.as_ref() else {
                continue;
            };
            let mut buf = vec![0u8; location.len as usize];
            file.read_exact_at(&mut buf, location.offset)
                .map_err(|e| SearchError::Io {
                    file: path.clone(),
                    message: e.to_string(),
                })?;
            match parse_line(&buf) {
                Ok((found_seq, _, record)) if found_seq == seq => {
                    out.push(FoundRecord { seq, record });
                }
                _ => {
                    return Err(SearchError::Corrupt {
                        file: path.clone(),
                        seq,
                    });
                }
            }
        }
        Ok(out)
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock leaves the index as consistent as any other
        // moment: inserts never leave partial state visible to a reader.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl Inner ===

impl Inner {
    fn insert(&mut self, seq: u64, location: Location, fields: IndexFields) {
        let partner = match fields.partner {
            None => NO_PARTNER,
            Some(p) => match self.partner_numbers.get(&p) {
                Some(n) => *n,
                None => {
                    let n = self.partners.len() as u32;
                    self.partners.push(p.clone());
                    self.partner_numbers.insert(p, n);
                    n
                }
            },
        };
        let time_ms = fields.time.as_millis();
        let meta = Meta {
            location,
            time_ms,
            partner,
            decision: fields.decision,
            kind: fields.kind,
        };
        if self.metas.last().is_some_and(|(last, _)| *last >= seq) {
            // Never happens with the writer (seqs only grow); keep the index sorted anyway.
            return;
        }
        self.metas.push((seq, meta));
        self.by_time.insert((time_ms, seq));
        if partner != NO_PARTNER {
            self.by_partner
                .entry(partner)
                .or_default()
                .insert((time_ms, seq));
        }
        if let Some(hash) = fields.customer_hash {
            self.by_customer
                .entry(hash)
                .or_default()
                .insert((time_ms, seq));
        }
    }

    fn meta(&self, seq: u64) -> Option<&Meta> {
        let i = self.metas.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        Some(&self.metas[i].1)
    }

    fn select(
        &self,
        filter: &SearchFilter,
        after: Option<&PageCursor>,
        limit: usize,
    ) -> (Vec<(u64, Location)>, Option<PageCursor>) {
        let partner = match &filter.partner {
            None => None,
            Some(p) => match self.partner_numbers.get(p) {
                Some(n) => Some(*n),
                None => return (Vec::new(), None),
            },
        };
        static EMPTY: BTreeSet<(i64, u64)> = BTreeSet::new();
        let set = match (&filter.customer_hash, partner) {
            (Some(hash), _) => self.by_customer.get(hash).unwrap_or(&EMPTY),
            (None, Some(p)) => self.by_partner.get(&p).unwrap_or(&EMPTY),
            (None, None) => &self.by_time,
        };
        let lower = Bound::Included((filter.from.map_or(i64::MIN, AuditTime::as_millis), 0));
        let mut upper =
            Bound::Included((filter.to.map_or(i64::MAX, AuditTime::as_millis), u64::MAX));
        if let Some(c) = after {
            let cursor = (c.time_ms, c.seq);
            if let Bound::Included(u) = upper {
                upper = if cursor <= u {
                    Bound::Excluded(cursor)
                } else {
                    Bound::Included(u)
                };
            }
        }
        if let (Bound::Included(l), Bound::Included(u) | Bound::Excluded(u)) = (lower, upper)
            && l > u
        {
            return (Vec::new(), None);
        }
        let mut hits = Vec::new();
        let mut next = None;
        for &(time_ms, seq) in set.range((lower, upper)).rev() {
            let Some(meta) = self.meta(seq) else { continue };
            if !filter.matches(meta, partner) {
                continue;
            }
            if hits.len() == limit {
                next = hits.last().map(|&(seq, _)| PageCursor {
                    time_ms: self.meta(seq).map_or(time_ms, |m| m.time_ms),
                    seq,
                });
                break;
            }
            hits.push((seq, meta.location));
        }
        (hits, next)
    }
}
