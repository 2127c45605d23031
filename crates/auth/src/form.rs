//! `application/x-www-form-urlencoded` bodies of the OAuth endpoints.
//!
//! Strict on purpose (RFC 6749 §3.1): a parameter given twice is an error, not "the first one
//! wins", so a proxy and the gateway can never read different values from one request.

use crate::oauth_error::OAuthError;

/// The media type of OAuth endpoint requests.
pub const FORM_URLENCODED: &str = "application/x-www-form-urlencoded";

/// The largest form the OAuth endpoints read (a revocation carries a token of at most 4 KiB).
pub const MAX_FORM_LEN: usize = 8 * 1024;

/// A decoded form: each name at most once.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Checks the media type and decodes the body.
    pub(crate) fn parse(body: &[u8], content_type: Option<&str>) -> Result<Form, OAuthError> {
        if !is_form_media_type(content_type) {
            return Err(OAuthError::InvalidRequest(
                "content type must be application/x-www-form-urlencoded",
            ));
        }
        if body.len() > MAX_FORM_LEN {
            return Err(OAuthError::InvalidRequest("request body is too large"));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &b""[..]),
            };
            let name = decode(name)?;
            let value = decode(value)?;
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(OAuthError::InvalidRequest("a parameter is repeated"));
            }
            pairs.push((name, value));
        }
        Ok(Form { pairs })
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `content_type` is `application/x-www-form-urlencoded`, with optional parameters
/// (`; charset=UTF-8`). Media types compare case-insensitively.
fn is_form_media_type(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case(FORM_URLENCODED)
}

/// Percent-decodes one name or value (`+` is a space); refuses bad escapes and non-UTF-8.
fn decode(raw: &[u8]) -> Result<String, OAuthError> {
    let bad = || OAuthError::InvalidRequest("form is not valid application/x-www-form-urlencoded");
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or_else(bad)?;
                let text = std::str::from_utf8(hex).map_err(|_| bad())?;
                let byte = u8::from_str_radix(text, 16).map_err(|_| bad())?;
                out.push(byte);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: Option<&str> = Some(FORM_URLENCODED);

    #[test]
    fn decodes_names_and_values() {
        let form = Form::parse(
            b"scope=tags%3Aread+products:read&client_id=demo-bank&x=",
            CT,
        )
        .unwrap();
        assert_eq!(form.get("scope"), Some("tags:read products:read"));
        assert_eq!(form.get("client_id"), Some("demo-bank"));
        assert_eq!(form.get("x"), None);
        assert_eq!(form.get("missing"), None);
    }

    #[test]
    fn refuses_repeats_bad_escapes_and_other_media_types() {
        let repeated = OAuthError::InvalidRequest("a parameter is repeated");
        assert_eq!(Form::parse(b"a=1&a=2", CT).unwrap_err(), repeated);
        assert_eq!(Form::parse(b"a=1&%61=2", CT).unwrap_err(), repeated);
        assert!(matches!(
            Form::parse(b"a=%4", CT),
            Err(OAuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            Form::parse(b"a=%zz", CT),
            Err(OAuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            Form::parse(b"a=%ff", CT),
            Err(OAuthError::InvalidRequest(_))
        ));
        for ct in [None, Some("application/json"), Some("multipart/form-data")] {
            assert!(matches!(
                Form::parse(b"a=1", ct),
                Err(OAuthError::InvalidRequest(_))
            ));
        }
        assert!(
            Form::parse(
                b"a=1",
                Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8")
            )
            .is_ok()
        );
    }
}
