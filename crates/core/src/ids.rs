//! Identifier newtypes. Each one can only hold a value that passed its syntax check, so a
//! function taking a [`PartnerId`] never sees an empty string or a path separator.

use std::fmt;
use std::sync::Arc;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is not valid: {rule}")]
pub struct IdError {
    /// Which identifier was being parsed.
    pub kind: &'static str,
    /// The rejected input (truncated to 80 characters).
    pub value: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $rule:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Parses and validates an identifier.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let check: fn(&str) -> bool = $check;
                if check(value) {
                    Ok($name(Arc::from(value)))
                } else {
                    Err(IdError {
                        kind: $kind,
                        value: value.chars().take(80).collect(),
                        rule: $rule,
                    })
                }
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Lower-case slug: `a-z`, `0-9` and inner `-`, 1 to 64 characters.
pub fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_token_chars(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

id_type!(
    /// A partner institution, e.g. `demo-bank`. Also the name of its file in `partner-config/partners/`.
    PartnerId, "partner id", "lower-case letters, digits and inner '-', at most 64", is_slug
);
id_type!(
    /// A referral campaign, e.g. `spring-2027`; the name of its file in `partner-config/campaigns/`.
    CampaignId, "campaign id", "lower-case letters, digits and inner '-', at most 64", is_slug
);
id_type!(
    /// An OAuth client id.
    ClientId, "client id", "letters, digits, '-', '_' or '.', at most 128", |s| is_token_chars(s, 128)
);
id_type!(
    /// The broker's internal customer id, e.g. `C000001`. Never shown to a partner.
    CustomerId, "customer id", "letters, digits, '-', '_' or '.', at most 64", |s| is_token_chars(s, 64)
);
id_type!(
    /// A consent grant.
    ConsentId, "consent id", "letters, digits, '-', '_' or '.', at most 64", |s| is_token_chars(s, 64)
);
id_type!(
    /// The pairwise, opaque reference of one customer for one partner: 43 characters of
    /// unpadded URL-safe base64 (a 256-bit keyed hash).
    CustomerRef, "customer ref", "43 characters of URL-safe base64", |s| {
        s.len() == 43 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(PartnerId::parse("demo-bank").is_ok());
        for bad in ["", "-a", "a-", "Demo", "a b", "a/b", "a.b", &"x".repeat(65)] {
            assert!(PartnerId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn customer_refs_are_exactly_43_url_safe_characters() {
        let good = "A".repeat(43);
        assert!(CustomerRef::parse(&good).is_ok());
        assert!(CustomerRef::parse(&"A".repeat(42)).is_err());
        assert!(CustomerRef::parse(&format!("{}+", "A".repeat(42))).is_err());
        assert!(CustomerRef::parse(&format!("{}/", "A".repeat(42))).is_err());
    }

    #[test]
    fn deserialising_checks_syntax() {
        let ok: PartnerId = serde_json::from_str("\"demo-fund\"").unwrap();
        assert_eq!(ok.as_str(), "demo-fund");
        assert!(serde_json::from_str::<PartnerId>("\"../etc\"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,80}") {
            let _ = PartnerId::parse(&s);
            let _ = CustomerRef::parse(&s);
            let _ = ClientId::parse(&s);
        }
    }
}
