#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod customer;
pub mod format;
pub mod forward;
pub mod fs;
pub mod index;
pub mod layer;
pub mod verify;
pub mod writer;

pub use checkpoint::{
    CheckpointSigner, KeyError, generate_dev_key_file, parse_public_key, public_key_pem,
};
pub use customer::{CustomerHasher, HashKeyError};
pub use forward::{
    Cursor, ForwardError, ForwardRecord, ForwardSink, Forwarder, RedisStreamSink, SinkError,
};
pub use index::{
    AuditIndex, Disclosure, FoundRecord, PageCursor, SearchError, SearchFilter, SearchPage,
};
pub use layer::{Audit, AuditLayer};
pub use verify::{BreakKind, VerifyError, VerifySummary, verify};
pub use writer::{
    Append, AppendError, Appended, AuditWriter, Durability, Health, OpenError, WriterConfig,
};
