//! The compact JWS form of a JWT, taken apart and put together by hand.
//!
//! Only what the gateway needs: three base64url segments, a protected header with `alg`, `kid`
//! and `typ`, and a JSON payload. No `crit` extension is understood, so a header carrying one is
//! refused (RFC 7515 §4.1.11). Key-carrying header parameters (`jwk`, `jku`, `x5u`, `x5c`) are
//! never read: the key always comes from the verifier's own key set, selected by `kid`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use gateway_core::Fingerprint;
use gateway_core::time::UnixTime;

use crate::verify::TokenError;

/// The longest token the gateway looks at (bytes of the compact form).
pub const MAX_TOKEN_LEN: usize = 4096;

/// The `typ` of access tokens the gateway issues (RFC 9068 §2.1).
pub(crate) const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// A compact JWS split into its parts; nothing is verified yet.
#[derive(Debug)]
pub(crate) struct Compact<'a> {
    /// The decoded protected header.
    pub(crate) header: Header,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes the signature covers.
    pub(crate) signing_input: &'a [u8],
    /// The payload segment, still encoded.
    pub(crate) payload: &'a str,
    /// The decoded signature.
    pub(crate) signature: Vec<u8>,
}

/// The protected header members the gateway reads.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    pub(crate) crit: Option<serde_json::Value>,
}

/// Splits a compact JWS and decodes its header and signature.
pub(crate) fn split(token: &str) -> Result<Compact<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge { len: token.len() });
    }
    let mut parts = token.split('.');
    let (Some(header_segment), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed {
            reason: "not a compact JWS",
        });
    };
    let header_bytes = decode(header_segment, "header is not base64url")?;
    let header: Header =
        serde_json::from_slice(&header_bytes).map_err(|_| TokenError::Malformed {
            reason: "header is not a JSON object",
        })?;
    if header.crit.is_some() {
        return Err(TokenError::Malformed {
            reason: "critical header extensions are not supported",
        });
    }
    let signature = decode(signature, "signature is not base64url")?;
    let signing_input = &token.as_bytes()[..header_segment.len() + 1 + payload.len()];
    Ok(Compact {
        header,
        signing_input,
        payload,
        signature,
    })
}

/// Decodes the payload segment into claims of type `T`.
pub(crate) fn payload<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, TokenError> {
    let bytes = decode(segment, "payload is not base64url")?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed {
        reason: "payload lacks a required claim or is not JSON",
    })
}

/// Decodes unpadded base64url, refusing padding and non-canonical trailing bits.
pub(crate) fn decode(segment: &str, reason: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed { reason })
}

/// Encodes bytes as unpadded base64url.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The RFC 8705 `x5t#S256` value of a certificate fingerprint.
pub(crate) fn thumbprint(fingerprint: &Fingerprint) -> String {
    encode(&fingerprint.0)
}

/// Parses an `x5t#S256` value back into a fingerprint.
pub(crate) fn parse_thumbprint(value: &str) -> Option<Fingerprint> {
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    Some(Fingerprint(bytes))
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

/// The `cnf` claim (RFC 7800) with the RFC 8705 certificate thumbprint.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Confirmation {
    #[serde(rename = "x5t#S256")]
    pub(crate) x5t_s256: String,
}

/// Checks `exp`, `nbf` and `iat` against `now`, allowing `leeway` seconds of clock skew.
pub(crate) fn check_times(
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
    now: UnixTime,
    leeway: i64,
) -> Result<(), TokenError> {
    if now.0 > exp.saturating_add(leeway) {
        return Err(TokenError::Expired { exp: UnixTime(exp) });
    }
    for not_before in [nbf, iat].into_iter().flatten() {
        if now.0.saturating_add(leeway) < not_before {
            return Err(TokenError::NotYetValid {
                nbf: UnixTime(not_before),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_refuses_wrong_shapes() {
        for bad in ["", "a", "a.b", "a.b.c.d", "!!.e30.AA", "e30.e30.!!"] {
            assert!(
                matches!(split(bad), Err(TokenError::Malformed { .. })),
                "{bad:?}"
            );
        }
        let crit = format!("{}.e30.AA", encode(br#"{"alg":"ES256","crit":["exp"]}"#));
        assert!(matches!(split(&crit), Err(TokenError::Malformed { .. })));
        let big = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            split(&big).unwrap_err(),
            TokenError::TooLarge {
                len: MAX_TOKEN_LEN + 1
            }
        );
    }

    #[test]
    fn split_finds_the_signing_input() {
        let token = format!("{}.e30.AAAA", encode(br#"{"alg":"ES256","kid":"k"}"#));
        let compact = split(&token).unwrap();
        assert_eq!(compact.header.kid.as_deref(), Some("k"));
        assert_eq!(
            compact.signing_input,
            token.rsplit_once('.').unwrap().0.as_bytes()
        );
        assert_eq!(compact.payload, "e30");
    }

    #[test]
    fn times_allow_leeway_either_side() {
        let now = UnixTime(1000);
        assert!(check_times(1000, Some(1000), Some(1000), now, 0).is_ok());
        assert!(check_times(995, None, None, now, 5).is_ok());
        assert_eq!(
            check_times(994, None, None, now, 5),
            Err(TokenError::Expired { exp: UnixTime(994) })
        );
        assert!(check_times(2000, Some(1005), None, now, 5).is_ok());
        assert_eq!(
            check_times(2000, Some(1006), None, now, 5),
            Err(TokenError::NotYetValid {
                nbf: UnixTime(1006)
            })
        );
        assert_eq!(
            check_times(2000, None, Some(1006), now, 5),
            Err(TokenError::NotYetValid {
                nbf: UnixTime(1006)
            })
        );
    }
}
