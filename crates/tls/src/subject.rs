//! A small, defensive DER walker that reads a certificate's subject as an RFC 4514 string.
//!
//! It reads only what it needs — `Certificate` → `tbsCertificate` → skip version, serial,
//! signature algorithm, issuer and validity → `subject` — and checks every length against
//! the bytes that remain, so any input yields `Ok` or a [`DerError`], never a panic or an
//! out-of-bounds read. Only definite, minimal DER lengths of at most 4 bytes are accepted.
//!
//! # Output (RFC 4514)
//!
//! - RDNs from the last in the encoding (most specific) to the first, joined by `,`;
//!   attributes of a multi-valued RDN joined by `+` in encoded order.
//! - Attribute types by the RFC 4514 §3 short names (`CN`, `L`, `ST`, `O`, `OU`, `C`,
//!   `STREET`, `DC`, `UID`), any other type as a dotted OID (`2.5.4.5`).
//! - Values of a named type whose ASN.1 string decodes (UTF8String, PrintableString,
//!   IA5String, NumericString, VisibleString, BMPString, UniversalString) as text with the
//!   §2.4 escapes: `\` before `"`, `+`, `,`, `;`, `<`, `>`, `\`, a leading `#` or space and a
//!   trailing space; control characters (including NUL) as `\XX` per UTF-8 byte, so the
//!   string is safe to log.
//! - Everything else — dotted-OID types, TeletexString, undecodable text, non-string values —
//!   as `#` followed by the upper-case hex of the value's whole DER encoding.

use std::fmt::Write as _;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OBJECT_IDENTIFIER: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
/// `[0] EXPLICIT Version` in `TBSCertificate`.
const VERSION: u8 = 0xa0;

const UTF8_STRING: u8 = 0x0c;
const NUMERIC_STRING: u8 = 0x12;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
const VISIBLE_STRING: u8 = 0x1a;
const UNIVERSAL_STRING: u8 = 0x1c;
const BMP_STRING: u8 = 0x1e;

/// Why bytes are not a certificate whose subject can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DerError {
    /// The input ends inside an element.
    #[error("input ends inside a DER element")]
    Truncated,
    /// A length is indefinite, not minimal, or longer than 4 bytes.
    #[error("length is not in DER form (indefinite, non-minimal or longer than 4 bytes)")]
    BadLength,
    /// A tag uses the high-tag-number form, which certificates never need.
    #[error("high-tag-number form is not supported")]
    HighTagNumber,
    /// An element has another tag than the structure requires there.
    #[error("expected tag 0x{expected:02x}, found 0x{found:02x}")]
    UnexpectedTag {
        /// The tag the structure requires.
        expected: u8,
        /// The tag found.
        found: u8,
    },
    /// Bytes follow the end of an element that must be the last.
    #[error("unexpected bytes after the end of an element")]
    TrailingData,
    /// An object identifier is empty, not minimal, or has an arc beyond 64 bits.
    #[error("malformed object identifier")]
    BadOid,
    /// A relative distinguished name holds no attribute.
    #[error("empty relative distinguished name")]
    EmptyRdn,
}

/// The subject of a DER certificate as an RFC 4514 string, most specific RDN first.
///
/// A certificate whose subject was encoded as `O=Demo Bank`, `CN=demo-bank` gives
/// `CN=demo-bank,O=Demo Bank`. See the module docs for the escaping rules.
///
/// ```
/// let ca = gateway_tls::devpki::DevCa::new("Example CA")?;
/// let cert = ca.issue_client("demo-bank", "Demo Bank, Ltd")?;
/// assert_eq!(
///     gateway_tls::subject(&cert.cert_der)?,
///     r"CN=demo-bank,O=Demo Bank\, Ltd",
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn subject(der: &[u8]) -> Result<String, DerError> {
    let rdns = subject_rdns(der)?;
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(attribute, &mut out);
        }
    }
    Ok(out)
}

/// One `AttributeTypeAndValue` of a name, borrowed from the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribute<'a> {
    /// The attribute type's arcs, e.g. `[2, 5, 4, 3]` for CN.
    pub(crate) oid: Vec<u64>,
    /// The value's tag.
    pub(crate) tag: u8,
    /// The value's content octets.
    pub(crate) value: &'a [u8],
    /// The value's whole encoding (tag, length, content).
    pub(crate) encoded: &'a [u8],
}

/// The subject's RDNs in encoded order (least specific first).
pub(crate) fn subject_rdns(der: &[u8]) -> Result<Vec<Vec<Attribute<'_>>>, DerError> {
    parse_name(tbs_until_subject(der)?.1)
}

/// The subject public key (the content of `subjectPublicKey` without the unused-bits byte).
pub(crate) fn subject_public_key(der: &[u8]) -> Result<&[u8], DerError> {
    let (mut tbs, _) = tbs_until_subject(der)?;
    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
    let mut spki = Reader::new(tbs.expect(SEQUENCE)?);
    spki.expect(SEQUENCE)?;
    let bits = spki.expect(BIT_STRING)?;
    spki.finish()?;
    match bits.split_first() {
        Some((0, key)) => Ok(key),
        _ => Err(DerError::BadLength),
    }
}

// === helpers ===

/// Walks `Certificate` → `tbsCertificate` up to and including `subject`; returns the reader
/// positioned after the subject and the subject's content.
fn tbs_until_subject(der: &[u8]) -> Result<(Reader<'_>, &[u8]), DerError> {
    let mut outer = Reader::new(der);
    let certificate = outer.expect(SEQUENCE)?;
    outer.finish()?;

    let mut certificate = Reader::new(certificate);
    let mut tbs = Reader::new(certificate.expect(SEQUENCE)?);
    if tbs.peek_tag() == Some(VERSION) {
        tbs.element()?;
    }
    tbs.expect(INTEGER)?; // serialNumber
    tbs.expect(SEQUENCE)?; // signature AlgorithmIdentifier
    tbs.expect(SEQUENCE)?; // issuer
    tbs.expect(SEQUENCE)?; // validity
    let subject = tbs.expect(SEQUENCE)?;
    Ok((tbs, subject))
}

/// `Name ::= SEQUENCE OF RelativeDistinguishedName` (content of the outer SEQUENCE).
fn parse_name(content: &[u8]) -> Result<Vec<Vec<Attribute<'_>>>, DerError> {
    let mut rdns = Reader::new(content);
    let mut out = Vec::new();
    while !rdns.is_empty() {
        // RelativeDistinguishedName ::= SET SIZE (1..MAX) OF AttributeTypeAndValue
        let mut set = Reader::new(rdns.expect(SET)?);
        let mut rdn = Vec::new();
        while !set.is_empty() {
            // AttributeTypeAndValue ::= SEQUENCE { type OBJECT IDENTIFIER, value ANY }
            let mut pair = Reader::new(set.expect(SEQUENCE)?);
            let oid = decode_oid(pair.expect(OBJECT_IDENTIFIER)?)?;
            let (tag, value, encoded) = pair.element()?;
            pair.finish()?;
            rdn.push(Attribute {
                oid,
                tag,
                value,
                encoded,
            });
        }
        if rdn.is_empty() {
            return Err(DerError::EmptyRdn);
        }
        out.push(rdn);
    }
    Ok(out)
}

/// A cursor over DER elements that never reads past its slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn finish(&self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }

    /// Reads one element: its tag, its content and its whole encoding.
    fn element(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), DerError> {
        let input = self.rest;
        let (&tag, after_tag) = input.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::HighTagNumber);
        }
        let (&first, mut after_length) = after_tag.split_first().ok_or(DerError::Truncated)?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            // 0x80 is the indefinite form (BER only); more than 4 length bytes would
            // describe more than 4 GiB, which no certificate is.
            if count == 0 || count > 4 {
                return Err(DerError::BadLength);
            }
            let (bytes, rest) = after_length
                .split_at_checked(count)
                .ok_or(DerError::Truncated)?;
            if bytes.first() == Some(&0) {
                return Err(DerError::BadLength);
            }
            let length = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if length < 0x80 {
                return Err(DerError::BadLength);
            }
            after_length = rest;
            length
        };
        let (content, rest) = after_length
            .split_at_checked(length)
            .ok_or(DerError::Truncated)?;
        let encoded_length = input.len() - rest.len();
        let encoded = input.get(..encoded_length).ok_or(DerError::Truncated)?;
        self.rest = rest;
        Ok((tag, content, encoded))
    }

    /// Reads one element that must carry `tag`, returning its content.
    fn expect(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let (found, content, _) = self.element()?;
        if found == tag {
            Ok(content)
        } else {
            Err(DerError::UnexpectedTag {
                expected: tag,
                found,
            })
        }
    }
}

/// Decodes the content octets of an OBJECT IDENTIFIER into its arcs.
fn decode_oid(content: &[u8]) -> Result<Vec<u64>, DerError> {
    match content.last() {
        Some(last) if last & 0x80 == 0 => {}
        _ => return Err(DerError::BadOid),
    }
    let mut arcs = Vec::with_capacity(content.len() + 1);
    let mut value: u64 = 0;
    let mut at_start = true;
    for &byte in content {
        if at_start && byte == 0x80 {
            return Err(DerError::BadOid); // leading 0x80: not the minimal encoding
        }
        if value > u64::MAX >> 7 {
            return Err(DerError::BadOid);
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        at_start = byte & 0x80 == 0;
        if at_start {
            if arcs.is_empty() {
                // The first subidentifier packs the first two arcs (X.690 §8.19.4).
                let (first, second) = match value {
                    0..40 => (0, value),
                    40..80 => (1, value - 40),
                    _ => (2, value - 80),
                };
                arcs.push(first);
                arcs.push(second);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    Ok(arcs)
}

/// RFC 4514 §3 short names.
fn short_name(oid: &[u64]) -> Option<&'static str> {
    Some(match oid {
        [2, 5, 4, 3] => "CN",
        [2, 5, 4, 7] => "L",
        [2, 5, 4, 8] => "ST",
        [2, 5, 4, 10] => "O",
        [2, 5, 4, 11] => "OU",
        [2, 5, 4, 6] => "C",
        [2, 5, 4, 9] => "STREET",
        [0, 9, 2342, 19200300, 100, 1, 25] => "DC",
        [0, 9, 2342, 19200300, 100, 1, 1] => "UID",
        _ => return None,
    })
}

fn write_attribute(attribute: &Attribute<'_>, out: &mut String) {
    let text = match short_name(&attribute.oid) {
        Some(name) => {
            out.push_str(name);
            decode_string(attribute.tag, attribute.value)
        }
        None => {
            for (i, arc) in attribute.oid.iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                // Writing to a String cannot fail.
                let _ = write!(out, "{arc}");
            }
            // RFC 4514 §2.4: values of dotted-decimal types are always given in hex.
            None
        }
    };
    out.push('=');
    match text {
        Some(text) => escape_value(&text, out),
        None => {
            out.push('#');
            for byte in attribute.encoded {
                let _ = write!(out, "{byte:02X}");
            }
        }
    }
}

/// The text of a string value, or `None` when it has no faithful text form.
pub(crate) fn decode_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        UTF8_STRING => std::str::from_utf8(value).ok().map(str::to_owned),
        NUMERIC_STRING | PRINTABLE_STRING | IA5_STRING | VISIBLE_STRING => value
            .is_ascii()
            .then(|| value.iter().map(|b| char::from(*b)).collect()),
        BMP_STRING => {
            if !value.len().is_multiple_of(2) {
                return None;
            }
            let units = value
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        UNIVERSAL_STRING => {
            if !value.len().is_multiple_of(4) {
                return None;
            }
            value
                .chunks_exact(4)
                .map(|quad| {
                    char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]))
                })
                .collect()
        }
        _ => None,
    }
}

/// Appends `value` with the RFC 4514 §2.4 escapes (and control characters as `\XX`).
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{byte:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
