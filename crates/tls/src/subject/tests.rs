use proptest::prelude::*;

use super::*;
use crate::devpki::DevCa;

// === DER builders ===

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let mut push = |mut v: u64| {
        let mut groups = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            groups.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        groups.reverse();
        content.extend(groups);
    };
    push(arcs[0] * 40 + arcs[1]);
    for arc in &arcs[2..] {
        push(*arc);
    }
    tlv(OBJECT_IDENTIFIER, &content)
}

const CN: &[u64] = &[2, 5, 4, 3];
const O: &[u64] = &[2, 5, 4, 10];

fn atv(arcs: &[u64], tag: u8, value: &[u8]) -> Vec<u8> {
    tlv(SEQUENCE, &[oid(arcs), tlv(tag, value)].concat())
}

fn rdn(atvs: &[Vec<u8>]) -> Vec<u8> {
    tlv(SET, &atvs.concat())
}

/// A certificate skeleton around `subject` (a whole Name encoding); the walker needs no more.
fn cert_with_subject(subject: &[u8]) -> Vec<u8> {
    let tbs = [
        tlv(VERSION, &tlv(INTEGER, &[2])),
        tlv(INTEGER, &[1]),
        tlv(SEQUENCE, &oid(&[1, 2, 840, 10045, 4, 3, 2])),
        tlv(SEQUENCE, &rdn(&[atv(CN, UTF8_STRING, b"Issuer")])),
        tlv(SEQUENCE, &[]),
        subject.to_vec(),
    ]
    .concat();
    tlv(
        SEQUENCE,
        &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[]), tlv(0x03, &[0])].concat(),
    )
}

fn name(rdns: &[Vec<u8>]) -> Vec<u8> {
    tlv(SEQUENCE, &rdns.concat())
}

fn subject_of(rdns: &[Vec<u8>]) -> Result<String, DerError> {
    subject(&cert_with_subject(&name(rdns)))
}

// === examples ===

#[test]
fn most_specific_rdn_comes_first() {
    let got = subject_of(&[
        rdn(&[atv(O, UTF8_STRING, b"Demo Bank")]),
        rdn(&[atv(CN, UTF8_STRING, b"demo-bank")]),
    ]);
    assert_eq!(got.unwrap(), "CN=demo-bank,O=Demo Bank");
}

#[test]
fn special_characters_are_escaped() {
    let cases: &[(&[u8], &str)] = &[
        (b"a,b", r"CN=a\,b"),
        (b"a+b;c", r"CN=a\+b\;c"),
        (b"\"q\" <x>", r#"CN=\"q\" \<x\>"#),
        (b"back\\slash", r"CN=back\\slash"),
        (b"#hash#", r"CN=\#hash#"),
        (b" padded ", r"CN=\ padded\ "),
        (b" ", r"CN=\ "),
        (b"nul\0", r"CN=nul\00"),
        (b"line\nbreak\x7f", r"CN=line\0Abreak\7F"),
        ("Zürich 银行".as_bytes(), "CN=Zürich 银行"),
        ("c1\u{85}".as_bytes(), r"CN=c1\C2\85"),
        (b"", "CN="),
        (b"a=b", "CN=a=b"),
    ];
    for (value, expected) in cases {
        let got = subject_of(&[rdn(&[atv(CN, UTF8_STRING, value)])]).unwrap();
        assert_eq!(&got, expected, "value {value:?}");
    }
}

#[test]
fn multi_valued_rdn_is_joined_with_plus() {
    let got = subject_of(&[
        rdn(&[atv(&[2, 5, 4, 6], PRINTABLE_STRING, b"CN")]),
        rdn(&[
            atv(O, UTF8_STRING, b"Demo"),
            atv(&[2, 5, 4, 11], UTF8_STRING, b"Ops"),
        ]),
        rdn(&[atv(CN, PRINTABLE_STRING, b"svc")]),
    ]);
    assert_eq!(got.unwrap(), "CN=svc,O=Demo+OU=Ops,C=CN");
}

#[test]
fn string_types_decode_and_others_become_hex() {
    let bmp: Vec<u8> = "Bank 银"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let universal: Vec<u8> = "Ω𝄞"
        .chars()
        .flat_map(|c| (c as u32).to_be_bytes())
        .collect();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (atv(CN, BMP_STRING, &bmp), "CN=Bank 银"),
        (atv(CN, UNIVERSAL_STRING, &universal), "CN=Ω𝄞"),
        (atv(CN, IA5_STRING, b"x@y"), "CN=x@y"),
        (atv(CN, VISIBLE_STRING, b"vis"), "CN=vis"),
        (atv(CN, NUMERIC_STRING, b"123"), "CN=123"),
        // TeletexString has no dependable charset: hex.
        (atv(CN, 0x14, b"T61"), "CN=#1403543631"),
        // Invalid UTF-8 in a UTF8String: hex, never a lossy replacement.
        (atv(CN, UTF8_STRING, b"\xff"), "CN=#0C01FF"),
        // Odd-length BMPString and a lone surrogate.
        (atv(CN, BMP_STRING, b"\x00"), "CN=#1E0100"),
        (atv(CN, BMP_STRING, b"\xd8\x00"), "CN=#1E02D800"),
        // Non-ASCII in a PrintableString.
        (atv(CN, PRINTABLE_STRING, b"\xe9"), "CN=#1301E9"),
        // A non-string value.
        (atv(CN, INTEGER, b"\x05"), "CN=#020105"),
        // A type without an RFC 4514 short name: dotted OID, hex value (§2.4).
        (
            atv(&[2, 5, 4, 5], PRINTABLE_STRING, b"42"),
            "2.5.4.5=#13023432",
        ),
        (
            atv(&[1, 2, 840, 113549, 1, 9, 1], IA5_STRING, b"a@b"),
            "1.2.840.113549.1.9.1=#1603614062",
        ),
        (
            atv(&[0, 9, 2342, 19200300, 100, 1, 25], IA5_STRING, b"example"),
            "DC=example",
        ),
        (
            atv(&[0, 9, 2342, 19200300, 100, 1, 1], UTF8_STRING, b"u1"),
            "UID=u1",
        ),
    ];
    for (attribute, expected) in cases {
        assert_eq!(subject_of(&[rdn(&[attribute])]).unwrap(), expected);
    }
}

#[test]
fn empty_subject_is_empty_string() {
    assert_eq!(subject_of(&[]).unwrap(), "");
}

#[test]
fn version_field_is_optional() {
    // A v1 certificate has no [0] version.
    let v1_subject = name(&[rdn(&[atv(CN, UTF8_STRING, b"v1")])]);
    let tbs = [
        tlv(INTEGER, &[1]),
        tlv(SEQUENCE, &[]),
        tlv(SEQUENCE, &[]),
        tlv(SEQUENCE, &[]),
        v1_subject,
    ]
    .concat();
    let cert = tlv(SEQUENCE, &tlv(SEQUENCE, &tbs));
    assert_eq!(subject(&cert).unwrap(), "CN=v1");
}

#[test]
fn long_form_lengths_are_read() {
    let long = "x".repeat(300);
    let got = subject_of(&[rdn(&[atv(CN, UTF8_STRING, long.as_bytes())])]).unwrap();
    assert_eq!(got, format!("CN={long}"));
}

#[test]
fn malformed_input_is_an_exact_error() {
    let good = cert_with_subject(&name(&[rdn(&[atv(CN, UTF8_STRING, b"x")])]));
    let cases: Vec<(Vec<u8>, DerError)> = vec![
        (vec![], DerError::Truncated),
        (vec![0x30], DerError::Truncated),
        (vec![0x30, 0x05, 0x00], DerError::Truncated),
        (vec![0x30, 0x80, 0x00, 0x00], DerError::BadLength),
        (vec![0x30, 0x81, 0x05], DerError::BadLength),
        (vec![0x30, 0x82, 0x00, 0x90], DerError::BadLength),
        (vec![0x30, 0x85, 1, 1, 1, 1, 1], DerError::BadLength),
        (vec![0x1f, 0x01, 0x00], DerError::HighTagNumber),
        (
            vec![0x31, 0x00],
            DerError::UnexpectedTag {
                expected: SEQUENCE,
                found: SET,
            },
        ),
        ([good.clone(), vec![0]].concat(), DerError::TrailingData),
        (subject_cert(rdn(&[])), DerError::EmptyRdn),
        (
            subject_cert(rdn(&[tlv(
                SEQUENCE,
                &[
                    tlv(OBJECT_IDENTIFIER, &[0x55, 0x84]),
                    tlv(UTF8_STRING, b"x"),
                ]
                .concat(),
            )])),
            DerError::BadOid,
        ),
        (
            subject_cert(rdn(&[tlv(
                SEQUENCE,
                &[tlv(OBJECT_IDENTIFIER, &[]), tlv(UTF8_STRING, b"x")].concat(),
            )])),
            DerError::BadOid,
        ),
        (
            subject_cert(rdn(&[tlv(
                SEQUENCE,
                &[
                    tlv(OBJECT_IDENTIFIER, &[0x55, 0x80, 0x03]),
                    tlv(UTF8_STRING, b"x"),
                ]
                .concat(),
            )])),
            DerError::BadOid,
        ),
        (
            subject_cert(rdn(&[tlv(
                SEQUENCE,
                &[
                    tlv(
                        OBJECT_IDENTIFIER,
                        &[
                            0x55, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x01,
                        ],
                    ),
                    tlv(UTF8_STRING, b"x"),
                ]
                .concat(),
            )])),
            DerError::BadOid,
        ),
        (
            subject_cert(rdn(&[tlv(
                SEQUENCE,
                &[oid(CN), tlv(UTF8_STRING, b"x"), tlv(UTF8_STRING, b"y")].concat(),
            )])),
            DerError::TrailingData,
        ),
        (
            subject_cert(rdn(&[tlv(SEQUENCE, &oid(CN))])),
            DerError::Truncated,
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(subject(&input), Err(expected), "input {input:02x?}");
    }
}

fn subject_cert(rdn: Vec<u8>) -> Vec<u8> {
    cert_with_subject(&name(&[rdn]))
}

#[test]
fn large_oid_arcs_decode() {
    assert_eq!(
        decode_oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]).unwrap(),
        [1, 2, 840, 113549]
    );
    // First subidentifier ≥ 80 belongs to arc 2.
    assert_eq!(decode_oid(&[0x81, 0x34, 0x03]).unwrap(), [2, 100, 3]);
    // u64::MAX fits; one more bit does not.
    let max = [0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(
        decode_oid(&[&[0x2a][..], &max].concat()).unwrap()[2],
        u64::MAX
    );
    let over = [0x83, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(
        decode_oid(&[&[0x2a][..], &over].concat()),
        Err(DerError::BadOid)
    );
}

#[test]
fn rcgen_certificate_subject_reads_back() {
    let ca = DevCa::new("Partner Gateway Dev CA").unwrap();
    assert_eq!(subject(ca.cert_der()).unwrap(), "CN=Partner Gateway Dev CA");
    let cert = ca.issue_client("demo-bank", "Demo Bank").unwrap();
    assert_eq!(subject(&cert.cert_der).unwrap(), "CN=demo-bank,O=Demo Bank");
}

// === properties ===

/// Parses our own RFC 4514 output back into (type, value) pairs; test-only, and only as
/// lenient as our output needs.
fn parse_rfc4514(text: &str) -> Vec<Vec<(String, String)>> {
    let mut rdns = vec![vec![]];
    let mut current = String::new();
    let mut key = None;
    let mut bytes = Vec::new();
    let mut chars = text.chars().peekable();
    let flush = |bytes: &mut Vec<u8>, current: &mut String| {
        current.push_str(std::str::from_utf8(bytes).unwrap());
        bytes.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().unwrap();
                if next.is_ascii_hexdigit() && chars.peek().is_some_and(char::is_ascii_hexdigit) {
                    let low = chars.next().unwrap();
                    let byte = u8::from_str_radix(&format!("{next}{low}"), 16).unwrap();
                    bytes.push(byte);
                } else {
                    flush(&mut bytes, &mut current);
                    current.push(next);
                }
            }
            '=' if key.is_none() => {
                flush(&mut bytes, &mut current);
                key = Some(std::mem::take(&mut current));
            }
            ',' | '+' => {
                flush(&mut bytes, &mut current);
                let pair = (key.take().unwrap(), std::mem::take(&mut current));
                rdns.last_mut().unwrap().push(pair);
                if c == ',' {
                    rdns.push(vec![]);
                }
            }
            c => {
                flush(&mut bytes, &mut current);
                current.push(c);
            }
        }
    }
    flush(&mut bytes, &mut current);
    if let Some(key) = key {
        rdns.last_mut().unwrap().push((key, current));
    }
    rdns.retain(|r| !r.is_empty());
    rdns
}

fn value_text() -> impl Strategy<Value = String> {
    // Bias towards the characters RFC 4514 cares about.
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(vec![' ', '#', ',', '+', '"', '\\', '<', '>', ';', '=', '\0', '\n', '\u{85}']),
            5 => any::<char>(),
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = subject(&input);
    }

    #[test]
    fn arbitrary_name_content_never_panics(content in prop::collection::vec(any::<u8>(), 0..128)) {
        // Reaches the Name parser with arbitrary bytes.
        let _ = subject(&cert_with_subject(&tlv(SEQUENCE, &content)));
    }

    #[test]
    fn well_formed_names_round_trip(
        rdns in prop::collection::vec(
            prop::collection::vec((prop::sample::select(vec![CN, O, &[2, 5, 4, 11][..]]), value_text()), 1..3),
            0..4,
        )
    ) {
        let encoded: Vec<Vec<u8>> = rdns
            .iter()
            .map(|attrs| rdn(&attrs.iter().map(|(t, v)| atv(t, UTF8_STRING, v.as_bytes())).collect::<Vec<_>>()))
            .collect();
        let text = subject_of(&encoded).unwrap();
        let short = |t: &[u64]| short_name(t).unwrap().to_owned();
        let expected: Vec<Vec<(String, String)>> = rdns
            .iter()
            .rev()
            .map(|attrs| attrs.iter().map(|(t, v)| (short(t), v.clone())).collect())
            .collect();
        prop_assert_eq!(parse_rfc4514(&text), expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn mutated_real_certificates_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let ca = shared_ca();
        let mut der = ca.cert_der().to_vec();
        for (at, byte) in edits {
            let i = at.index(der.len());
            der[i] = byte;
        }
        let _ = subject(&der);
        let _ = subject(&der[..cut.index(der.len())]);
    }

    #[test]
    fn rcgen_names_read_back_exactly(cn in value_text(), org in value_text()) {
        let cert = shared_ca().issue_client(&cn, &org).unwrap();
        let text = subject(&cert.cert_der).unwrap();
        prop_assert_eq!(
            parse_rfc4514(&text),
            vec![vec![("CN".to_owned(), cn)], vec![("O".to_owned(), org)]]
        );
    }
}

fn shared_ca() -> &'static DevCa {
    static CA: std::sync::OnceLock<DevCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| DevCa::new("Proptest CA").unwrap())
}
