//! Parsing of upstream base URLs: plain `http://host[:port][/prefix]` only.

use crate::model::UpstreamUrl;

/// Why an upstream URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamUrlError {
    /// Not `http://`; upstreams are plain HTTP on the internal network.
    #[error(
        "upstream URL must start with http:// (upstreams are plain HTTP on the internal network)"
    )]
    NotHttp,
    /// Credentials in the URL (`user@host`).
    #[error("upstream URL must not contain credentials ('@')")]
    UserInfo,
    /// A `?query` or `#fragment`.
    #[error("upstream URL must not have a query or fragment")]
    QueryOrFragment,
    /// No host.
    #[error("upstream URL has no host")]
    MissingHost,
    /// A host with characters a host name cannot have.
    #[error("upstream URL host {0:?} is not a valid host name or IP address")]
    BadHost(String),
    /// A port that is not a number from 1 to 65535.
    #[error("upstream URL port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    /// A path prefix with `.`/`..`/empty segments, percent-escapes or unusual characters.
    #[error(
        "upstream URL path {0:?} must be plain segments of letters, digits, '-', '_', '.' and '~'"
    )]
    BadPath(String),
}

impl UpstreamUrl {
    /// Parses `http://host[:port][/prefix]`. The port defaults to 80; the prefix loses its
    /// trailing `/`. IPv6 hosts are written in brackets (`http://[::1]:8600`).
    pub fn parse(text: &str) -> Result<UpstreamUrl, UpstreamUrlError> {
        let rest = match text.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &text[7..],
            _ => return Err(UpstreamUrlError::NotHttp),
        };
        if rest.contains(['?', '#']) {
            return Err(UpstreamUrlError::QueryOrFragment);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(UpstreamUrlError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|c| c.is_ascii_digit()) => n,
                _ => return Err(UpstreamUrlError::BadPort(p.to_owned())),
            },
        };
        let prefix = path.trim_end_matches('/');
        if !prefix.is_empty() {
            let ok = prefix[1..].split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment.bytes().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~')
                    })
            });
            if !ok {
                return Err(UpstreamUrlError::BadPath(path.to_owned()));
            }
        }
        Ok(UpstreamUrl {
            url: text.to_owned(),
            authority: format!("{host}:{port}"),
            path_prefix: prefix.to_owned(),
        })
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<&str>), UpstreamUrlError> {
    if authority.is_empty() {
        return Err(UpstreamUrlError::MissingHost);
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| UpstreamUrlError::BadHost(authority.to_owned()))?;
        let ip = &rest[..end];
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UpstreamUrlError::BadHost(ip.to_owned()));
        }
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UpstreamUrlError::BadHost(authority.to_owned())),
        };
        return Ok((format!("[{ip}]"), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        });
    if !valid {
        return Err(UpstreamUrlError::BadHost(host.to_owned()));
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_http_urls() {
        let u = UpstreamUrl::parse("http://127.0.0.1:8600/crm").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path_prefix.as_str()),
            ("127.0.0.1:8600", "/crm")
        );
        let u = UpstreamUrl::parse("http://crm.internal/api/v2/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path_prefix.as_str()),
            ("crm.internal:80", "/api/v2")
        );
        let u = UpstreamUrl::parse("http://[::1]:9000").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path_prefix.as_str()),
            ("[::1]:9000", "")
        );
        assert_eq!(u.url, "http://[::1]:9000");
    }

    #[test]
    fn refuses_everything_else() {
        use UpstreamUrlError::*;
        for (text, err) in [
            ("https://crm:443/x", NotHttp),
            ("crm:80", NotHttp),
            ("http://", MissingHost),
            ("http://user:pw@crm:80/", UserInfo),
            ("http://crm:80/x?y=1", QueryOrFragment),
            ("http://crm:0/", BadPort("0".into())),
            ("http://crm:99999/", BadPort("99999".into())),
            ("http://crm:+80/", BadPort("+80".into())),
            ("http://cr m:80/", BadHost("cr m".into())),
            ("http://crm:80/a/../b", BadPath("/a/../b".into())),
            ("http://crm:80/a//b", BadPath("/a//b".into())),
            ("http://crm:80/a%2fb", BadPath("/a%2fb".into())),
            ("http://[::1/x", BadHost("[::1".into())),
        ] {
            assert_eq!(UpstreamUrl::parse(text), Err(err), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,60}") {
            let _ = UpstreamUrl::parse(&text);
        }
    }
}
