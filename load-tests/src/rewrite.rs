//! Line-based edits of copies of `partner-config/` for the load runs: absolute paths,
//! the upstream address, the store backend, raised rate limits and caps.
//!
//! The edits are textual on purpose: the load tests must not depend on the config crate,
//! and every edit fails loudly ([`RewriteError`]) when the sample no longer has the key it
//! edits, instead of running against an unexpected configuration.

/// An edit that found nothing to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The section or key is not in the file.
    #[error("no `{key}` in section `{section}`")]
    Missing {
        /// Top-level section (`""` for a top-level key).
        section: String,
        /// The key.
        key: String,
    },
}

/// Replaces the path prefixes of the sample (`../certs/dev/`, `../data/`) with absolute
/// directories.
pub fn absolute_paths(yaml: &str, pki_dir: &str, data_dir: &str) -> String {
    yaml.replace(
        "../certs/dev/",
        &format!("{}/", pki_dir.trim_end_matches('/')),
    )
    .replace("../data/", &format!("{}/", data_dir.trim_end_matches('/')))
}

/// Points every `http://` URL in the `upstreams:` section at `authority` (`host:port`),
/// keeping each URL's path.
pub fn upstream_authority(yaml: &str, authority: &str) -> Result<String, RewriteError> {
    let mut changed = false;
    let out = map_section_lines(yaml, "upstreams", |line| {
        let start = line.find("http://")?;
        let after = start + "http://".len();
        let end = line[after..]
            .find(|c: char| c == '/' || c.is_whitespace())
            .map_or(line.len(), |i| after + i);
        changed = true;
        Some(format!("{}{}{}", &line[..after], authority, &line[end..]))
    });
    if changed {
        Ok(out)
    } else {
        Err(missing("upstreams", "http:// URL"))
    }
}

/// Sets `key: value` inside the top-level `section` (indented keys only; a trailing
/// comment is dropped).
pub fn set_in_section(
    yaml: &str,
    section: &str,
    key: &str,
    value: &str,
) -> Result<String, RewriteError> {
    let mut changed = false;
    let out = map_section_lines(yaml, section, |line| {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        trimmed.strip_prefix(key)?.strip_prefix(':')?;
        changed = true;
        Some(format!("{indent}{key}: {value}"))
    });
    if changed {
        Ok(out)
    } else {
        Err(missing(section, key))
    }
}

/// Sets the top-level scalar `key: value`.
pub fn set_top_level(yaml: &str, key: &str, value: &str) -> Result<String, RewriteError> {
    let mut changed = false;
    let lines: Vec<String> = yaml
        .lines()
        .map(
            |line| match line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                Some(_) => {
                    changed = true;
                    format!("{key}: {value}")
                }
                None => line.to_owned(),
            },
        )
        .collect();
    if changed {
        Ok(join(lines))
    } else {
        Err(missing("", key))
    }
}

/// Replaces the whole top-level `section` (header, body and the comments inside it) with
/// `replacement`.
pub fn replace_section(
    yaml: &str,
    section: &str,
    replacement: &str,
) -> Result<String, RewriteError> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut found = false;
    for line in yaml.lines() {
        if is_top_level_key(line) {
            inside = top_level_key(line) == Some(section);
            if inside {
                found = true;
                out.extend(replacement.lines().map(str::to_owned));
                continue;
            }
        }
        if !inside {
            out.push(line.to_owned());
        }
    }
    if found {
        Ok(join(out))
    } else {
        Err(missing(section, section))
    }
}

/// Raises every `rate_per_sec` and `burst` number in a partner file to `value`, so a load
/// run measures the limiter's decision without being throttled by it.
pub fn raise_rate_limits(yaml: &str, value: u64) -> String {
    let lines: Vec<String> = yaml
        .lines()
        .map(|line| {
            let line = replace_number_after(line, "rate_per_sec:", value);
            replace_number_after(&line, "burst:", value)
        })
        .collect();
    join(lines)
}

/// Replaces the integer that follows `key` (after optional spaces) in `line`.
pub fn replace_number_after(line: &str, key: &str, value: u64) -> String {
    let Some(pos) = line.find(key) else {
        return line.to_owned();
    };
    let after = pos + key.len();
    let rest = &line[after..];
    let spaces = rest.len() - rest.trim_start().len();
    let digits = rest[spaces..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len() - spaces);
    if digits == 0 {
        return line.to_owned();
    }
    format!(
        "{}{}{}{}",
        &line[..after],
        &rest[..spaces],
        value,
        &rest[spaces + digits..]
    )
}

// === helpers ===

fn missing(section: &str, key: &str) -> RewriteError {
    RewriteError::Missing {
        section: section.to_owned(),
        key: key.to_owned(),
    }
}

fn is_top_level_key(line: &str) -> bool {
    top_level_key(line).is_some()
}

fn top_level_key(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t', '#', '-']) || line.is_empty() {
        return None;
    }
    line.split_once(':').map(|(key, _)| key.trim())
}

/// Applies `edit` to the lines of `section` (until the next top-level key); `None` keeps a
/// line.
fn map_section_lines(
    yaml: &str,
    section: &str,
    mut edit: impl FnMut(&str) -> Option<String>,
) -> String {
    let mut inside = false;
    let lines: Vec<String> = yaml
        .lines()
        .map(|line| {
            if let Some(key) = top_level_key(line) {
                inside = key == section;
                return line.to_owned();
            }
            if inside && line.starts_with([' ', '\t']) {
                edit(line).unwrap_or_else(|| line.to_owned())
            } else {
                line.to_owned()
            }
        })
        .collect();
    join(lines)
}

fn join(lines: Vec<String>) -> String {
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "\
instance_id: gw-dev-1

partner_listener:
  server_cert: ../certs/dev/server.pem
  client_ca: ../certs/dev/ca.pem          # partner CA

upstreams:                                # internal
  tags: http://127.0.0.1:8600/crm
  products: http://127.0.0.1:8600/catalogue
  connect_timeout_ms: 250

store:
  backend: embedded
  path: ../data/state.redb
  # backend: redis
  # urls: [redis://127.0.0.1:6379/]

audit:
  dir: ../data/audit
  mode: sync

rate_limits:
  instances: 1
";

    #[test]
    fn paths_become_absolute() {
        let out = absolute_paths(GATEWAY, "/tmp/x/certs/", "/tmp/x/data");
        assert!(out.contains("server_cert: /tmp/x/certs/server.pem"));
        assert!(out.contains("path: /tmp/x/data/state.redb"));
        assert!(!out.contains("../"));
    }

    #[test]
    fn upstreams_point_at_the_given_authority_and_keep_their_paths() {
        let out = upstream_authority(GATEWAY, "127.0.0.1:41234").unwrap();
        assert!(out.contains("  tags: http://127.0.0.1:41234/crm\n"));
        assert!(out.contains("  products: http://127.0.0.1:41234/catalogue\n"));
        assert!(out.contains("connect_timeout_ms: 250"));
        assert_eq!(
            upstream_authority("store:\n  backend: embedded\n", "x:1"),
            Err(RewriteError::Missing {
                section: "upstreams".into(),
                key: "http:// URL".into()
            })
        );
    }

    #[test]
    fn keys_are_set_only_inside_their_section() {
        let out = set_in_section(GATEWAY, "audit", "dir", "/tmp/a/audit").unwrap();
        assert!(out.contains("  dir: /tmp/a/audit\n  mode: sync"));
        let out = set_in_section(&out, "rate_limits", "instances", "2").unwrap();
        assert!(out.ends_with("rate_limits:\n  instances: 2\n"));
        assert!(set_in_section(GATEWAY, "store", "dir", "x").is_err());
        let out = set_top_level(GATEWAY, "instance_id", "gw-lt-b").unwrap();
        assert!(out.starts_with("instance_id: gw-lt-b\n"));
    }

    #[test]
    fn a_section_is_replaced_whole_with_its_comments() {
        let store = "store:\n  backend: redis\n  urls: [redis://127.0.0.1:7777/]\n";
        let out = replace_section(GATEWAY, "store", store).unwrap();
        assert!(out.contains(store));
        assert!(!out.contains("embedded"));
        assert!(!out.contains("6379"));
        assert!(out.contains("\naudit:\n  dir: ../data/audit"));
        assert!(replace_section(GATEWAY, "nope", "x").is_err());
    }

    #[test]
    fn rate_limits_and_numbers_are_raised() {
        let partner = "rate_limits:\n  default: { rate_per_sec: 200, burst: 400 }\n  routes:\n    customer_tags: { rate_per_sec: 100, burst: 200 }\n";
        let out = raise_rate_limits(partner, 1_000_000);
        assert!(out.contains("default: { rate_per_sec: 1000000, burst: 1000000 }"));
        assert!(out.contains("customer_tags: { rate_per_sec: 1000000, burst: 1000000 }"));
        assert_eq!(
            replace_number_after(
                "  codes_per_partner_per_day: 1000",
                "codes_per_partner_per_day:",
                7
            ),
            "  codes_per_partner_per_day: 7"
        );
        assert_eq!(
            replace_number_after("burst: many", "burst:", 7),
            "burst: many"
        );
    }
}
