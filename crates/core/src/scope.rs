//! OAuth scopes of the partner API and a compact set of them.

use std::fmt;

/// One OAuth scope of the partner API (PRODUCT.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `tags:read`: customer tags and consent status.
    TagsRead,
    /// `products:read`: the product catalogue.
    ProductsRead,
    /// `referrals:write`: issue referral codes.
    ReferralsWrite,
    /// `referrals:read`: referral code status and campaign stats.
    ReferralsRead,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 4] = [
        Scope::TagsRead,
        Scope::ProductsRead,
        Scope::ReferralsWrite,
        Scope::ReferralsRead,
    ];

    /// The scope's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::TagsRead => "tags:read",
            Scope::ProductsRead => "products:read",
            Scope::ReferralsWrite => "referrals:write",
            Scope::ReferralsRead => "referrals:read",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Scope::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown scope {s:?}")))
    }
}

/// A set of scopes, stored as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScopeSet(u8);

impl ScopeSet {
    /// The empty set.
    pub const EMPTY: ScopeSet = ScopeSet(0);

    /// Whether `scope` is in the set.
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Adds a scope.
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    /// The scopes in both sets.
    pub const fn intersect(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & other.0)
    }

    /// Whether every scope of `self` is in `other`.
    pub const fn is_subset(self, other: ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses a space-separated scope string (RFC 6749 §3.3). Returns the unknown names on error.
    pub fn parse_space_separated(text: &str) -> Result<ScopeSet, Vec<String>> {
        let mut set = ScopeSet::EMPTY;
        let mut unknown = Vec::new();
        for name in text.split(' ').filter(|s| !s.is_empty()) {
            match Scope::parse(name) {
                Some(scope) => set.insert(scope),
                None => unknown.push(name.chars().take(64).collect()),
            }
        }
        if unknown.is_empty() {
            Ok(set)
        } else {
            Err(unknown)
        }
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::EMPTY;
        for scope in iter {
            set.insert(scope);
        }
        set
    }
}

impl fmt::Display for ScopeSet {
    /// Space-separated, as in an OAuth `scope` parameter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_space_separated() {
        let set = ScopeSet::parse_space_separated("products:read  tags:read").unwrap();
        assert!(set.contains(Scope::TagsRead) && set.contains(Scope::ProductsRead));
        assert_eq!(set.to_string(), "tags:read products:read");
        assert_eq!(
            ScopeSet::parse_space_separated("tags:read admin").unwrap_err(),
            vec!["admin".to_string()]
        );
    }

    #[test]
    fn subset_and_intersection() {
        let a: ScopeSet = [Scope::TagsRead].into_iter().collect();
        let b: ScopeSet = [Scope::TagsRead, Scope::ReferralsRead]
            .into_iter()
            .collect();
        assert!(a.is_subset(b) && !b.is_subset(a));
        assert_eq!(a.intersect(b), a);
    }
}
