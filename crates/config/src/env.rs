//! Environment values through a small trait, so tests never touch the process environment,
//! and the admin bearer token.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::model::AdminListener;

/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// A source of environment variables.
pub trait Env {
    /// The value of a variable, if set and valid Unicode.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A map-backed environment for tests.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(HashMap<String, String>);

impl MapEnv {
    /// An empty environment.
    pub fn new() -> MapEnv {
        MapEnv::default()
    }

    /// Sets a variable.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> MapEnv {
        self.0.insert(name.into(), value.into());
        self
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        MapEnv(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Why the admin token could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminTokenError {
    /// Neither `token_file` nor `token_env` is configured.
    #[error("admin_listener has neither token_file nor token_env")]
    NotConfigured,
    /// The token file could not be read.
    #[error("cannot read admin token file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error, as text.
        reason: String,
    },
    /// The variable is not set (or not valid Unicode).
    #[error("environment variable {name} (admin token) is not set")]
    EnvUnset {
        /// The variable.
        name: String,
    },
    /// The token is shorter than [`MIN_ADMIN_TOKEN_LEN`] characters after trimming.
    #[error(
        "admin token from {origin} has {len} characters; at least {MIN_ADMIN_TOKEN_LEN} are required"
    )]
    TooShort {
        /// The file or variable it came from.
        origin: String,
        /// Its length after trimming.
        len: usize,
    },
    /// The token has characters that cannot travel in an `Authorization: Bearer` header.
    #[error("admin token from {origin} has characters other than visible ASCII")]
    BadCharacters {
        /// The file or variable it came from.
        origin: String,
    },
}

/// The admin bearer token: the trimmed content of `token_file` if set, else the trimmed value of
/// the `token_env` variable. At least [`MIN_ADMIN_TOKEN_LEN`] visible ASCII characters.
pub fn admin_token(listener: &AdminListener, env: &dyn Env) -> Result<String, AdminTokenError> {
    let (raw, origin) = if let Some(path) = &listener.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| AdminTokenError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        (text, path.display().to_string())
    } else if let Some(name) = &listener.token_env {
        let value = env
            .var(name)
            .ok_or_else(|| AdminTokenError::EnvUnset { name: name.clone() })?;
        (value, format!("${name}"))
    } else {
        return Err(AdminTokenError::NotConfigured);
    };
    let token = raw.trim();
    if !token.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(AdminTokenError::BadCharacters { origin });
    }
    if token.len() < MIN_ADMIN_TOKEN_LEN {
        return Err(AdminTokenError::TooShort {
            origin,
            len: token.chars().count(),
        });
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn listener(file: Option<PathBuf>, env: Option<&str>) -> AdminListener {
        AdminListener {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_file: file,
            token_env: env.map(str::to_owned),
        }
    }

    #[test]
    fn token_from_env_is_trimmed() {
        let env = MapEnv::new().with("ADMIN", "  0123456789abcdef\n");
        assert_eq!(
            admin_token(&listener(None, Some("ADMIN")), &env).unwrap(),
            "0123456789abcdef"
        );
    }

    #[test]
    fn token_from_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "fedcba9876543210fedc\n").unwrap();
        let env = MapEnv::new().with("ADMIN", "0123456789abcdef");
        let token = admin_token(&listener(Some(path), Some("ADMIN")), &env).unwrap();
        assert_eq!(token, "fedcba9876543210fedc");
    }

    #[test]
    fn short_missing_and_odd_tokens_are_refused() {
        let env: MapEnv = [("SHORT", "abc"), ("SPACE", "0123456789 abcdef")]
            .into_iter()
            .collect();
        assert_eq!(
            admin_token(&listener(None, Some("SHORT")), &env),
            Err(AdminTokenError::TooShort {
                origin: "$SHORT".into(),
                len: 3
            })
        );
        assert_eq!(
            admin_token(&listener(None, Some("SPACE")), &env),
            Err(AdminTokenError::BadCharacters {
                origin: "$SPACE".into()
            })
        );
        assert_eq!(
            admin_token(&listener(None, Some("UNSET")), &env),
            Err(AdminTokenError::EnvUnset {
                name: "UNSET".into()
            })
        );
        assert_eq!(
            admin_token(&listener(None, None), &env),
            Err(AdminTokenError::NotConfigured)
        );
        let missing = PathBuf::from("/nonexistent/admin.token");
        assert!(matches!(
            admin_token(&listener(Some(missing.clone()), None), &env),
            Err(AdminTokenError::Unreadable { path, .. }) if path == missing
        ));
    }
}
