//! Referral codes: how they are spelled, checked and parsed.
//!
//! A referral code carries 80 bits of randomness as 16 symbols of Crockford's base32 alphabet
//! (`0123456789ABCDEFGHJKMNPQRSTVWXYZ`, 5 bits each), followed by one check symbol from the
//! same alphabet. It is written in groups of four with hyphens:
//!
//! ```text
//! XXXX-XXXX-XXXX-XXXX-C      e.g. 7K3M-Q9TD-X2PA-HV5R-J   (21 characters)
//! └──── 16 data symbols ───┘ └ check symbol
//! ```
//!
//! This module is pure: the caller supplies the random bytes (the `gateway-referral` crate draws
//! them from aws-lc-rs's `SystemRandom`), so nothing here does I/O.
//!
//! # Parsing
//!
//! [`ReferralCode::parse`] is forgiving about how a person typed the code and strict about
//! what it means:
//! - letters are case-insensitive;
//! - `O` reads as `0`, and `I` and `L` read as `1` (Crockford's decoding rules);
//! - hyphens are ignored wherever they are;
//! - anything else (spaces, `U`, punctuation, a wrong length, a check symbol that does not
//!   match) yields `None`. Input longer than [`MAX_INPUT_LEN`] bytes is refused unread.
//!
//! # The check symbol
//!
//! Crockford's own check symbol is the value modulo 37, which needs five extra symbols
//! (`*~$=U`). Three of those are not URL-unreserved characters, and the code travels in a path
//! (`GET /v1/referral-codes/{code}`) whose rules allow only unreserved characters. So the check
//! symbol here is computed over GF(32) instead, and stays in the 32-symbol alphabet:
//!
//! treat each symbol's 5-bit value `s_i` as an element of GF(2⁵) = GF(2)\[x\]/(x⁵ + x² + 1) and
//! choose the check symbol `s_16` so that
//!
//! ```text
//! Σ_{i=0..=16} αⁱ · s_i = 0          (α = x, a generator of the multiplicative group)
//! ```
//!
//! - **Every single-symbol substitution is detected**: changing `s_i` by `δ ≠ 0` changes the
//!   sum by `αⁱ·δ`, a product of non-zero field elements, hence non-zero.
//! - **Every adjacent transposition is detected**: swapping `s_i ≠ s_{i+1}` changes the sum by
//!   `αⁱ·(1 + α)·(s_i + s_{i+1})`, again a product of non-zero elements (`α ≠ 1`). This holds
//!   for the last data symbol and the check symbol too, because the check symbol has a weight of
//!   its own (`α¹⁶`).
//! - Transpositions over one symbol (`abc → cba`) are detected as well (`α² ≠ 1`), and a random
//!   corruption passes with probability 1/32.
//!
//! Property tests at the bottom of this file check the first two claims exhaustively over
//! positions and symbols.

use std::fmt;

/// Crockford's base32 alphabet, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Random bytes a code is made from: 80 bits.
pub const RANDOM_BYTES: usize = 10;

/// Data symbols in a code (80 bits / 5 bits per symbol).
pub const DATA_SYMBOLS: usize = 16;

/// Length of the formatted code, `XXXX-XXXX-XXXX-XXXX-C`.
pub const FORMATTED_LEN: usize = 21;

/// Input longer than this (in bytes) is refused without being read.
pub const MAX_INPUT_LEN: usize = 64;

/// Symbols in a code, check symbol included.
const SYMBOLS: usize = DATA_SYMBOLS + 1;

/// x⁵ + x² + 1, a primitive polynomial over GF(2): the modulus of GF(32).
const MODULUS: u8 = 0b10_0101;

/// A well-formed referral code: 16 random symbols and a matching check symbol.
///
/// Holds the canonical, formatted spelling (upper case, hyphenated); two codes are equal
/// exactly when they denote the same symbols.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReferralCode(String);

impl ReferralCode {
    /// Makes a code from 80 random bits. Any ten bytes make a valid code.
    pub fn from_random(bytes: [u8; RANDOM_BYTES]) -> ReferralCode {
        let mut symbols = [0u8; SYMBOLS];
        // Read the 80 bits as two 40-bit halves, 8 symbols of 5 bits each.
        for (half, chunk) in bytes.chunks_exact(5).enumerate() {
            let bits = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            for k in 0..8 {
                symbols[half * 8 + k] = ((bits >> (35 - 5 * k)) & 0x1f) as u8;
            }
        }
        symbols[DATA_SYMBOLS] = check_symbol(&symbols[..DATA_SYMBOLS]);
        ReferralCode(format_symbols(&symbols))
    }

    /// Parses a code as a person may have typed it (see the module docs); `None` when it is
    /// malformed or its check symbol does not match.
    pub fn parse(text: &str) -> Option<ReferralCode> {
        if text.len() > MAX_INPUT_LEN {
            return None;
        }
        let mut symbols = [0u8; SYMBOLS];
        let mut n = 0;
        for b in text.bytes() {
            if b == b'-' {
                continue;
            }
            let value = symbol_value(b)?;
            *symbols.get_mut(n)? = value;
            n += 1;
        }
        if n != SYMBOLS || syndrome(&symbols) != 0 {
            return None;
        }
        Some(ReferralCode(format_symbols(&symbols)))
    }

    /// The canonical spelling, `XXXX-XXXX-XXXX-XXXX-C`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReferralCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ReferralCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReferralCode({:?})", self.0)
    }
}

impl AsRef<str> for ReferralCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for ReferralCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The check symbol (a value `0..32`) for 16 data symbol values (each `0..32`), such that the
/// weighted sum of the module docs is zero.
pub fn check_symbol(data: &[u8]) -> u8 {
    // Σ_{i<16} αⁱ·s_i + α¹⁶·c = 0  ⇒  c = α⁻¹⁶ · Σ = α¹⁵ · Σ   (α³¹ = 1; minus is plus).
    let sum = weighted_sum(data);
    gf_mul(sum, gf_pow_alpha(31 - DATA_SYMBOLS as u32))
}

// === helpers ===

/// The value of one typed character, with Crockford's aliases; `None` outside the alphabet.
fn symbol_value(b: u8) -> Option<u8> {
    let upper = b.to_ascii_uppercase();
    match upper {
        b'O' => Some(0),
        b'I' | b'L' => Some(1),
        _ => ALPHABET.iter().position(|&a| a == upper).map(|p| p as u8),
    }
}

fn format_symbols(symbols: &[u8; SYMBOLS]) -> String {
    let mut out = String::with_capacity(FORMATTED_LEN);
    for (i, &s) in symbols.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[usize::from(s & 0x1f)]));
    }
    out
}

/// Σ αⁱ·s_i over the given symbols.
fn weighted_sum(symbols: &[u8]) -> u8 {
    let mut sum = 0;
    let mut weight = 1; // α⁰
    for &s in symbols {
        sum ^= gf_mul(weight, s);
        weight = gf_mul(weight, 2);
    }
    sum
}

/// Zero exactly when the check symbol matches.
fn syndrome(symbols: &[u8; SYMBOLS]) -> u8 {
    weighted_sum(symbols)
}

/// Multiplication in GF(32) modulo [`MODULUS`].
fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0;
    while b != 0 {
        if b & 1 != 0 {
            product ^= a;
        }
        b >>= 1;
        a <<= 1;
        if a & 0x20 != 0 {
            a ^= MODULUS;
        }
    }
    product
}

fn gf_pow_alpha(exponent: u32) -> u8 {
    (0..exponent).fold(1, |acc, _| gf_mul(acc, 2))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn symbols_of(code: &ReferralCode) -> Vec<u8> {
        code.as_str()
            .bytes()
            .filter(|&b| b != b'-')
            .map(|b| symbol_value(b).unwrap())
            .collect()
    }

    fn spell(symbols: &[u8]) -> String {
        symbols
            .iter()
            .map(|&s| char::from(ALPHABET[usize::from(s)]))
            .collect()
    }

    /// A valid code whose data symbols are `data`.
    fn with_data(data: &[u8]) -> Vec<u8> {
        let mut symbols = data.to_vec();
        symbols.push(check_symbol(data));
        symbols
    }

    #[test]
    fn alpha_generates_the_whole_multiplicative_group() {
        let mut seen = std::collections::BTreeSet::new();
        for e in 0..31 {
            seen.insert(gf_pow_alpha(e));
        }
        assert_eq!(seen.len(), 31);
        assert!(!seen.contains(&0));
        assert_eq!(gf_pow_alpha(31), 1);
    }

    #[test]
    fn examples() {
        let zero = ReferralCode::from_random([0; RANDOM_BYTES]);
        assert_eq!(zero.as_str(), "0000-0000-0000-0000-0");
        let ones = ReferralCode::from_random([0xff; RANDOM_BYTES]);
        assert_eq!(&ones.as_str()[..19], "ZZZZ-ZZZZ-ZZZZ-ZZZZ");
        assert_eq!(ones.as_str().len(), FORMATTED_LEN);

        let code = ReferralCode::from_random(*b"0123456789");
        let text = code.as_str().to_owned();
        let compact = text.replace('-', "");
        for spelling in [
            text.clone(),
            text.to_ascii_lowercase(),
            compact.clone(),
            format!("-{compact}-"),
            compact.chars().flat_map(|c| [c, '-']).collect(),
        ] {
            assert_eq!(
                ReferralCode::parse(&spelling),
                Some(code.clone()),
                "{spelling}"
            );
        }
        for bad in [
            "",
            "----",
            &text[..20],
            &format!("{text}0"),
            &format!(" {text}"),
            &text.replace('-', " "),
            &text.replace('-', "_"),
            &"0".repeat(MAX_INPUT_LEN + 1),
        ] {
            assert_eq!(ReferralCode::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_documented_example_is_valid() {
        let example = ReferralCode::parse("7K3M-Q9TD-X2PA-HV5R-J").unwrap();
        assert_eq!(example.as_str(), "7K3M-Q9TD-X2PA-HV5R-J");
        assert_eq!(ReferralCode::parse("7K3M-Q9TD-X2PA-HV5R-N"), None);
    }

    #[test]
    fn crockford_aliases_read_as_digits() {
        let zero = "0000-0000-0000-0000-0";
        assert!(ReferralCode::parse(zero).is_some());
        assert_eq!(
            ReferralCode::parse("oOoO-0000-0000-0000-o").map(|c| c.to_string()),
            Some(zero.to_owned())
        );
        // Data 1,0,0,...: the same code whichever of 1, I, i, L, l is typed.
        let mut data = [0u8; DATA_SYMBOLS];
        data[0] = 1;
        let canonical = ReferralCode::parse(&spell(&with_data(&data))).unwrap();
        for alias in ['I', 'i', 'L', 'l'] {
            let typed = format!("{alias}{}", &spell(&with_data(&data))[1..]);
            assert_eq!(ReferralCode::parse(&typed), Some(canonical.clone()));
        }
    }

    #[test]
    fn u_and_non_alphabet_characters_are_refused() {
        let code = ReferralCode::from_random(*b"abcdefghij");
        let text = code.as_str();
        for c in ['U', 'u', '*', '~', '$', '=', '+', '/', '.', 'é'] {
            let broken = format!("{c}{}", &text[1..]);
            assert_eq!(ReferralCode::parse(&broken), None, "{broken}");
        }
    }

    proptest! {
        #[test]
        fn generated_codes_round_trip(bytes in any::<[u8; RANDOM_BYTES]>()) {
            let code = ReferralCode::from_random(bytes);
            prop_assert_eq!(code.as_str().len(), FORMATTED_LEN);
            prop_assert_eq!(ReferralCode::parse(code.as_str()), Some(code.clone()));
            prop_assert_eq!(ReferralCode::parse(&code.as_str().to_ascii_lowercase()), Some(code));
        }

        #[test]
        fn distinct_randomness_gives_distinct_codes(
            a in any::<[u8; RANDOM_BYTES]>(),
            b in any::<[u8; RANDOM_BYTES]>(),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(ReferralCode::from_random(a), ReferralCode::from_random(b));
        }

        /// Exhaustive over the 17 positions and the 31 other symbols at each.
        #[test]
        fn every_single_substitution_is_detected(bytes in any::<[u8; RANDOM_BYTES]>()) {
            let symbols = symbols_of(&ReferralCode::from_random(bytes));
            for position in 0..SYMBOLS {
                for replacement in 0..32u8 {
                    if replacement == symbols[position] {
                        continue;
                    }
                    let mut typo = symbols.clone();
                    typo[position] = replacement;
                    prop_assert_eq!(ReferralCode::parse(&spell(&typo)), None);
                }
            }
        }

        /// Exhaustive over the 16 adjacent pairs (the last pairs the final data symbol with
        /// the check symbol), in the compact and the hyphenated spelling.
        #[test]
        fn every_adjacent_transposition_is_detected(bytes in any::<[u8; RANDOM_BYTES]>()) {
            let symbols = symbols_of(&ReferralCode::from_random(bytes));
            for position in 0..SYMBOLS - 1 {
                if symbols[position] == symbols[position + 1] {
                    continue;
                }
                let mut swapped = symbols.clone();
                swapped.swap(position, position + 1);
                prop_assert_eq!(ReferralCode::parse(&spell(&swapped)), None);
                let mut hyphenated = [0u8; SYMBOLS];
                hyphenated.copy_from_slice(&swapped);
                prop_assert_eq!(ReferralCode::parse(&format_symbols(&hyphenated)), None);
            }
        }

        #[test]
        fn parsing_never_panics(text in "\\PC{0,80}") {
            let _ = ReferralCode::parse(&text);
        }

        #[test]
        fn parsed_codes_are_canonical(text in "[0-9A-Za-z-]{17,25}") {
            if let Some(code) = ReferralCode::parse(&text) {
                prop_assert_eq!(ReferralCode::parse(code.as_str()), Some(code.clone()));
                prop_assert_eq!(code.as_str().len(), FORMATTED_LEN);
            }
        }
    }

    /// Every transposition of every pair of distinct symbols at every data position, not only
    /// the pairs random codes happen to contain.
    #[test]
    fn transpositions_of_every_symbol_pair_are_detected() {
        let base: Vec<u8> = (0..DATA_SYMBOLS as u8).map(|i| (i * 7 + 3) % 32).collect();
        for position in 0..DATA_SYMBOLS - 1 {
            for a in 0..32u8 {
                for b in 0..32u8 {
                    if a == b {
                        continue;
                    }
                    let mut data = base.clone();
                    data[position] = a;
                    data[position + 1] = b;
                    let mut symbols = with_data(&data);
                    assert!(ReferralCode::parse(&spell(&symbols)).is_some());
                    symbols.swap(position, position + 1);
                    assert_eq!(ReferralCode::parse(&spell(&symbols)), None);
                }
            }
        }
        // The last data symbol against every check symbol it can meet.
        for last in 0..32u8 {
            let mut data = base.clone();
            data[DATA_SYMBOLS - 1] = last;
            let mut symbols = with_data(&data);
            if symbols[DATA_SYMBOLS - 1] != symbols[DATA_SYMBOLS] {
                symbols.swap(DATA_SYMBOLS - 1, DATA_SYMBOLS);
                assert_eq!(ReferralCode::parse(&spell(&symbols)), None);
            }
        }
    }
}
