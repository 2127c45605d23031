//! The partner API's routes, declared once, and the path rules in front of routing.
//!
//! Paths are checked before they are matched: the partner API uses only unreserved characters
//! in its paths, so any percent-escape, backslash, control character, empty, `.` or `..`
//! segment is refused outright ([`PathError`]) rather than "normalised". No decoding step
//! exists, so no double-encoding trick can reach a handler.

use http::Method;

use crate::scope::Scope;

/// A route of the partner listener (PRODUCT.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// `POST /oauth2/token`
    Token,
    /// `POST /oauth2/revoke`
    Revoke,
    /// `GET /.well-known/oauth-authorization-server`
    Metadata,
    /// `GET /jwks.json`
    Jwks,
    /// `GET /v1/customers/{customer_ref}/tags`
    CustomerTags,
    /// `GET /v1/consents/{consent_id}`
    Consent,
    /// `GET /v1/products`
    Products,
    /// `GET /v1/products/{id}`
    Product,
    /// `POST /v1/referral-codes`
    IssueReferralCode,
    /// `GET /v1/referral-codes/{code}`
    ReferralCode,
    /// `GET /v1/campaigns/{campaign_id}/stats`
    CampaignStats,
}

/// The result of matching a path: the route and its one path parameter, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The matched route.
    pub route: Route,
    /// The value of the path parameter (`{customer_ref}`, `{id}`, ...), not yet validated.
    pub param: Option<String>,
}

/// Why a path was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (or is an absolute/authority form).
    #[error("path must start with '/'")]
    NotAbsolute,
    /// The path contains a percent-escape; the partner API never needs one.
    #[error("percent-encoded characters are not accepted in paths")]
    PercentEncoded,
    /// An empty, `.` or `..` segment.
    #[error("empty, '.' and '..' path segments are not accepted")]
    DotOrEmptySegment,
    /// A backslash, control character, space or non-ASCII byte.
    #[error("path contains a character that is not allowed")]
    BadCharacter,
    /// Longer than [`MAX_PATH_LEN`].
    #[error("path is too long")]
    TooLong,
}

/// The longest path the gateway routes.
pub const MAX_PATH_LEN: usize = 512;

/// The outcome of routing a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// A route accepts this method and path.
    Match(RouteMatch),
    /// The path names a route, but not for this method; the value is the `Allow` list.
    MethodNotAllowed(&'static str),
    /// No route has this path.
    NotFound,
}

impl Route {
    /// Every route, in declaration order.
    pub const ALL: [Route; 11] = [
        Route::Token,
        Route::Revoke,
        Route::Metadata,
        Route::Jwks,
        Route::CustomerTags,
        Route::Consent,
        Route::Products,
        Route::Product,
        Route::IssueReferralCode,
        Route::ReferralCode,
        Route::CampaignStats,
    ];

    /// The route's stable name, used in config (per-route limits), metrics and audit.
    pub const fn name(self) -> &'static str {
        match self {
            Route::Token => "token",
            Route::Revoke => "revoke",
            Route::Metadata => "metadata",
            Route::Jwks => "jwks",
            Route::CustomerTags => "customer_tags",
            Route::Consent => "consent",
            Route::Products => "products",
            Route::Product => "product",
            Route::IssueReferralCode => "referral_code_issue",
            Route::ReferralCode => "referral_code",
            Route::CampaignStats => "campaign_stats",
        }
    }

    /// Parses a route name.
    pub fn from_name(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The method the route answers.
    pub fn method(self) -> Method {
        match self {
            Route::Token | Route::Revoke | Route::IssueReferralCode => Method::POST,
            _ => Method::GET,
        }
    }

    /// The path template, as written in the OpenAPI spec.
    pub const fn template(self) -> &'static str {
        match self {
            Route::Token => "/oauth2/token",
            Route::Revoke => "/oauth2/revoke",
            Route::Metadata => "/.well-known/oauth-authorization-server",
            Route::Jwks => "/jwks.json",
            Route::CustomerTags => "/v1/customers/{customer_ref}/tags",
            Route::Consent => "/v1/consents/{consent_id}",
            Route::Products => "/v1/products",
            Route::Product => "/v1/products/{id}",
            Route::IssueReferralCode => "/v1/referral-codes",
            Route::ReferralCode => "/v1/referral-codes/{code}",
            Route::CampaignStats => "/v1/campaigns/{campaign_id}/stats",
        }
    }

    /// The scope a token must carry to call this route; `None` for the OAuth endpoints.
    pub const fn scope(self) -> Option<Scope> {
        match self {
            Route::Token | Route::Revoke | Route::Metadata | Route::Jwks => None,
            Route::CustomerTags | Route::Consent => Some(Scope::TagsRead),
            Route::Products | Route::Product => Some(Scope::ProductsRead),
            Route::IssueReferralCode => Some(Scope::ReferralsWrite),
            Route::ReferralCode | Route::CampaignStats => Some(Scope::ReferralsRead),
        }
    }

    /// Whether the route releases customer data (fail-closed rules of PRODUCT.md §4 apply).
    pub const fn is_customer_data(self) -> bool {
        matches!(self, Route::CustomerTags)
    }

    /// Whether the route is part of the versioned API (`/v1/*`) and needs a token.
    pub const fn needs_token(self) -> bool {
        self.scope().is_some()
    }

    /// Whether the route accepts a request body.
    pub const fn takes_body(self) -> bool {
        matches!(
            self,
            Route::Token | Route::Revoke | Route::IssueReferralCode
        )
    }
}

/// Checks a request path against the rules in the module docs.
pub fn check_path(path: &str) -> Result<(), PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    for &b in path.as_bytes() {
        match b {
            b'%' => return Err(PathError::PercentEncoded),
            b'\\' | b' ' | 0..=0x1f | 0x7f..=0xff => return Err(PathError::BadCharacter),
            _ => {}
        }
    }
    // The first segment is the empty one before the leading '/'.
    if path[1..]
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        && path != "/"
    {
        return Err(PathError::DotOrEmptySegment);
    }
    Ok(())
}

/// Routes a checked path. Call [`check_path`] first.
pub fn route(method: &Method, path: &str) -> Routed {
    let mut segments = path[1..].split('/');
    let first = segments.next().unwrap_or("");
    let second = segments.next();
    let third = segments.next();
    let fourth = segments.next();
    let found: Option<(Route, Option<&str>)> = match (first, second, third, fourth) {
        ("oauth2", Some("token"), None, None) => Some((Route::Token, None)),
        ("oauth2", Some("revoke"), None, None) => Some((Route::Revoke, None)),
        (".well-known", Some("oauth-authorization-server"), None, None) => {
            Some((Route::Metadata, None))
        }
        ("jwks.json", None, None, None) => Some((Route::Jwks, None)),
        ("v1", Some("customers"), Some(r), Some("tags")) if segments.next().is_none() => {
            Some((Route::CustomerTags, Some(r)))
        }
        ("v1", Some("consents"), Some(id), None) => Some((Route::Consent, Some(id))),
        ("v1", Some("products"), None, None) => Some((Route::Products, None)),
        ("v1", Some("products"), Some(id), None) => Some((Route::Product, Some(id))),
        ("v1", Some("referral-codes"), None, None) => Some((Route::IssueReferralCode, None)),
        ("v1", Some("referral-codes"), Some(c), None) => Some((Route::ReferralCode, Some(c))),
        ("v1", Some("campaigns"), Some(c), Some("stats")) if segments.next().is_none() => {
            Some((Route::CampaignStats, Some(c)))
        }
        _ => None,
    };
    match found {
        None => Routed::NotFound,
        Some((route, param)) if route.method() == method => Routed::Match(RouteMatch {
            route,
            param: param.map(str::to_owned),
        }),
        Some((route, _)) => Routed::MethodNotAllowed(if route.method() == Method::POST {
            "POST"
        } else {
            "GET"
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_matches_its_own_template() {
        for r in Route::ALL {
            let path = r
                .template()
                .replace("{customer_ref}", "ref")
                .replace("{consent_id}", "c1")
                .replace("{id}", "p1")
                .replace("{code}", "CODE")
                .replace("{campaign_id}", "spring");
            check_path(&path).unwrap();
            match route(&r.method(), &path) {
                Routed::Match(m) => assert_eq!(m.route, r, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
            assert_eq!(Route::from_name(r.name()), Some(r));
        }
    }

    #[test]
    fn wrong_method_lists_allowed() {
        assert_eq!(
            route(&Method::DELETE, "/v1/products"),
            Routed::MethodNotAllowed("GET")
        );
        assert_eq!(
            route(&Method::GET, "/oauth2/token"),
            Routed::MethodNotAllowed("POST")
        );
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for p in [
            "/",
            "/v1",
            "/v1/products/a/b",
            "/v1/customers/x",
            "/v1/customers/x/tags/y",
            "/v2/products",
        ] {
            assert_eq!(route(&Method::GET, p), Routed::NotFound, "{p}");
        }
    }

    #[test]
    fn path_tricks_are_refused_before_routing() {
        let cases = [
            ("v1/products", PathError::NotAbsolute),
            ("/v1/%2e%2e/admin", PathError::PercentEncoded),
            ("/v1/products%2Fx", PathError::PercentEncoded),
            ("/v1/products/%252e", PathError::PercentEncoded),
            ("/v1/../admin/v1/reload", PathError::DotOrEmptySegment),
            ("/v1/./products", PathError::DotOrEmptySegment),
            ("/v1//products", PathError::DotOrEmptySegment),
            ("/v1/products/", PathError::DotOrEmptySegment),
            ("/v1\\products", PathError::BadCharacter),
            ("/v1/pro\u{0}ducts", PathError::BadCharacter),
            ("/v1/prodücts", PathError::BadCharacter),
        ];
        for (path, want) in cases {
            assert_eq!(check_path(path), Err(want), "{path}");
        }
        assert_eq!(
            check_path(&format!("/{}", "a".repeat(600))),
            Err(PathError::TooLong)
        );
    }

    proptest::proptest! {
        #[test]
        fn checking_and_routing_never_panic(path in "\\PC{0,100}") {
            if check_path(&path).is_ok() {
                let _ = route(&Method::GET, &path);
            }
        }

        #[test]
        fn checked_paths_hold_no_dot_segments(path in "/[a-z./%]{0,30}") {
            if check_path(&path).is_ok() {
                proptest::prop_assert!(!path.contains("/../") && !path.contains("/./") && !path.contains('%'));
            }
        }
    }
}
