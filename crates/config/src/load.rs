//! The loader: the configuration directory (or in-memory texts) → [`Config`] or a [`Report`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::check::{Broken, LoadedCampaign, LoadedGateway, LoadedPartner, cross_check};
use crate::convert::{self, FileCx};
use crate::model::{Campaign, Config, GatewaySettings, Partner};
use crate::raw::{RawCampaign, RawGateway, RawPartner};
use crate::report::{ConfigProblem, Location, Report};
use crate::schema::{self, FileKind};
use crate::yaml::{self, Document};

/// The name of the settings file.
pub const GATEWAY_FILE: &str = "gateway.yaml";
/// The directory of partner files.
pub const PARTNERS_DIR: &str = "partners";
/// The directory of campaign files.
pub const CAMPAIGNS_DIR: &str = "campaigns";

/// Largest configuration file read; anything bigger is surely a mistake.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The texts of a configuration, by path relative to the configuration directory
/// (`gateway.yaml`, `partners/<id>.yaml`, `campaigns/<id>.yaml`).
///
/// [`load`] reads them from disk with [`Sources::read_dir`]; tests build them in memory and
/// call [`load_sources`], so no file is needed.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: BTreeMap<PathBuf, String>,
    existing: BTreeSet<PathBuf>,
    problems: Vec<ConfigProblem>,
}

impl Sources {
    /// No files.
    pub fn new() -> Sources {
        Sources::default()
    }

    /// Reads `gateway.yaml`, `partners/*` and `campaigns/*` of a directory. Dotfiles are
    /// skipped; files with another extension are recorded (without their content) so the load
    /// reports them. Never fails: what cannot be read becomes a problem of the load.
    pub fn read_dir(dir: &Path) -> Sources {
        let mut sources = Sources::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                sources.problems.push(
                    ConfigProblem::file(
                        ".",
                        format!(
                            "cannot read the configuration directory {}: {err}",
                            dir.display()
                        ),
                    )
                    .with_hint("pass the partner-config directory with --config <dir>"),
                );
                return sources;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                if name == PARTNERS_DIR || name == CAMPAIGNS_DIR {
                    sources.read_subdir(&path, &name);
                }
                continue;
            }
            let lower = name.to_ascii_lowercase();
            if lower == GATEWAY_FILE {
                sources.read_file(&path, PathBuf::from(&name));
            } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
                // Recorded so that the load says it is not read.
                sources.files.insert(PathBuf::from(&name), String::new());
            }
        }
        sources
    }

    fn read_subdir(&mut self, dir: &Path, name: &str) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                self.problems.push(ConfigProblem::file(
                    name,
                    format!("cannot read directory {}: {err}", dir.display()),
                ));
                return;
            }
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') {
                continue;
            }
            let rel = Path::new(name).join(&file_name);
            let path = entry.path();
            if path.is_dir() {
                self.problems.push(
                    ConfigProblem::file(&rel, "subdirectories are not read")
                        .with_hint(format!("put {name} files directly in {name}/, or move this directory out of the configuration")),
                );
            } else if file_name.ends_with(".yaml") {
                self.read_file(&path, rel);
            } else {
                // Content not needed: the load reports the extension.
                self.files.insert(rel, String::new());
            }
        }
    }

    fn read_file(&mut self, path: &Path, rel: PathBuf) {
        let too_big = std::fs::metadata(path)
            .map(|m| m.len() > MAX_FILE_BYTES)
            .unwrap_or(false);
        if too_big {
            self.problems.push(ConfigProblem::file(
                rel,
                format!("file is larger than {MAX_FILE_BYTES} bytes"),
            ));
            return;
        }
        match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    self.files.insert(rel, text);
                }
                Err(_) => self.problems.push(
                    ConfigProblem::file(rel, "file is not UTF-8 text")
                        .with_hint("save it as UTF-8"),
                ),
            },
            Err(err) => self
                .problems
                .push(ConfigProblem::file(rel, format!("cannot read file: {err}"))),
        }
    }

    /// Adds (or replaces) a file's text. `path` is relative to the configuration directory,
    /// e.g. `partners/demo-bank.yaml`.
    pub fn insert(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> &mut Sources {
        self.files.insert(path.into(), text.into());
        self
    }

    /// Builder form of [`Sources::insert`].
    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Sources {
        self.insert(path, text);
        self
    }

    /// Removes a file.
    pub fn remove(&mut self, path: impl AsRef<Path>) -> Option<String> {
        self.files.remove(path.as_ref())
    }

    /// Declares that a referenced file (certificate, key, secret) exists without it being on
    /// disk. `path` is relative to the configuration directory (as written in the YAML) or
    /// absolute. Only existence of referenced files is checked, never their content.
    pub fn with_existing_file(mut self, path: impl Into<PathBuf>) -> Sources {
        self.existing.insert(path.into());
        self
    }

    /// A file's text.
    pub fn get(&self, path: impl AsRef<Path>) -> Option<&str> {
        self.files.get(path.as_ref()).map(String::as_str)
    }

    /// Every file, by relative path.
    pub fn files(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.files.iter().map(|(p, t)| (p.as_path(), t.as_str()))
    }
}

/// Loads and checks the configuration in `dir`: `gateway.yaml`, every `partners/*.yaml` and
/// every `campaigns/*.yaml`. Returns every problem at once.
pub fn load(dir: &Path) -> Result<Config, Report> {
    load_sources(dir, &Sources::read_dir(dir))
}

/// Loads and checks a configuration from in-memory texts. `dir` is the configuration
/// directory: relative paths in the files are resolved against it, and referenced files must
/// exist there (or be declared with [`Sources::with_existing_file`]).
pub fn load_sources(dir: &Path, sources: &Sources) -> Result<Config, Report> {
    let dir = absolute(dir);
    let existing: BTreeSet<PathBuf> = sources.existing.iter().map(|p| dir.join(p)).collect();
    let mut problems = sources.problems.clone();
    let mut broken = Broken::default();
    let mut gateway: Option<LoadedGateway> = None;
    let mut gateway_seen = false;
    let mut partners: Vec<LoadedPartner> = Vec::new();
    let mut campaigns: Vec<LoadedCampaign> = Vec::new();

    for (rel, text) in &sources.files {
        let Some(kind) = classify(rel, &mut problems) else {
            continue;
        };
        let stem = stem(rel);
        let outcome = load_file(kind, rel, text, &dir, &existing, &mut problems);
        if outcome.broken {
            // References to this file are not reported again: its own problems say enough.
            match kind {
                FileKind::Gateway => {}
                FileKind::Partner => {
                    broken.partners.insert(stem);
                }
                FileKind::Campaign => {
                    broken.campaigns.insert(stem);
                }
            }
        }
        match outcome.loaded {
            _ if kind == FileKind::Gateway => {
                gateway_seen = true;
                if let Some(Loaded::Gateway(g)) = outcome.loaded {
                    gateway = Some(g);
                }
            }
            Some(Loaded::Partner(p)) => partners.push(p),
            Some(Loaded::Campaign(c)) => campaigns.push(c),
            _ => {}
        }
    }

    if !gateway_seen {
        problems.push(
            ConfigProblem::file(GATEWAY_FILE, format!("{GATEWAY_FILE} is missing")).with_hint(
                format!(
                    "every configuration directory has a {GATEWAY_FILE}; copy the sample from \
                     partner-config/"
                ),
            ),
        );
    }

    cross_check(
        gateway.as_ref(),
        &partners,
        &campaigns,
        &broken,
        &mut problems,
    );

    if problems.is_empty()
        && let Some(config) = assemble(dir, gateway, partners, campaigns)
    {
        return Ok(config);
    }
    if problems.is_empty() {
        // Every missing piece is reported by the schema; this only guards the invariant.
        problems.push(ConfigProblem::file(
            GATEWAY_FILE,
            "the configuration is incomplete",
        ));
    }
    Err(Report::new(problems))
}

/// Parses and checks `gateway.yaml` on its own: syntax, schema and conversion, without the
/// checks that need partner files. `origin` names it in the report; relative paths resolve
/// against `dir`, where referenced files must exist.
pub fn parse_gateway(text: &str, origin: &Path, dir: &Path) -> Result<GatewaySettings, Report> {
    let mut problems = Vec::new();
    let outcome = load_file(
        FileKind::Gateway,
        origin,
        text,
        &absolute(dir),
        &BTreeSet::new(),
        &mut problems,
    );
    match outcome.loaded {
        Some(Loaded::Gateway(loaded)) if problems.is_empty() => match loaded.settings {
            Some(settings) => Ok(settings),
            None => Err(incomplete(problems, origin)),
        },
        _ => Err(incomplete(problems, origin)),
    }
}

/// Parses and checks one partner file on its own, without cross-file checks (field ceiling
/// against the catalogue, campaigns, duplicate pins). `origin` is its path relative to the
/// configuration directory, e.g. `partners/demo-bank.yaml`: its file stem must equal the id.
pub fn parse_partner(text: &str, origin: &Path) -> Result<Partner, Report> {
    let mut problems = Vec::new();
    let dir = Path::new("/");
    let outcome = load_file(
        FileKind::Partner,
        origin,
        text,
        dir,
        &BTreeSet::new(),
        &mut problems,
    );
    match outcome.loaded {
        Some(Loaded::Partner(LoadedPartner {
            partner: Some(partner),
            ..
        })) if problems.is_empty() => Ok(partner),
        _ => Err(incomplete(problems, origin)),
    }
}

/// Parses and checks one campaign file on its own, without cross-file checks. `origin` is its
/// path relative to the configuration directory, e.g. `campaigns/spring-2027.yaml`.
pub fn parse_campaign(text: &str, origin: &Path) -> Result<Campaign, Report> {
    let mut problems = Vec::new();
    let dir = Path::new("/");
    let outcome = load_file(
        FileKind::Campaign,
        origin,
        text,
        dir,
        &BTreeSet::new(),
        &mut problems,
    );
    match outcome.loaded {
        Some(Loaded::Campaign(LoadedCampaign {
            campaign: Some(campaign),
            ..
        })) if problems.is_empty() => Ok(campaign),
        _ => Err(incomplete(problems, origin)),
    }
}

fn incomplete(mut problems: Vec<ConfigProblem>, origin: &Path) -> Report {
    if problems.is_empty() {
        // The schema reports every missing piece; this only guards the invariant.
        problems.push(ConfigProblem::file(origin, "the file is incomplete"));
    }
    Report::new(problems)
}

fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn stem(rel: &Path) -> String {
    rel.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One file after parse, schema and conversion. Short-lived (one per file, moved straight
/// into its list), so the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Loaded {
    Gateway(LoadedGateway),
    Partner(LoadedPartner),
    Campaign(LoadedCampaign),
}

struct Outcome {
    /// As far as it got; `None` when it could not be parsed at all.
    loaded: Option<Loaded>,
    /// Whether the file failed early (syntax, schema) or its id differs from its name.
    broken: bool,
}

/// Parse → schema → raw → convert for one file, pushing its problems.
fn load_file(
    kind: FileKind,
    rel: &Path,
    text: &str,
    dir: &Path,
    existing: &BTreeSet<PathBuf>,
    problems: &mut Vec<ConfigProblem>,
) -> Outcome {
    let stem = stem(rel);
    let Some(doc) = parse(rel, text, problems) else {
        return Outcome {
            loaded: None,
            broken: true,
        };
    };
    let violations = schema::check(kind, rel, &doc);
    let pruned = pruned_keys(&violations);
    let mut broken = !violations.is_empty();
    problems.extend(violations);
    let loaded = match kind {
        FileKind::Gateway => {
            typed::<RawGateway>(rel, text, &doc, &pruned, problems).map(|raw| {
                let mut cx = FileCx {
                    file: rel,
                    doc: &doc,
                    dir,
                    existing,
                    problems,
                };
                let settings = convert::gateway(&raw, &mut cx);
                let catalogue = raw.fields.as_ref().map(convert::catalogue);
                (raw, settings, catalogue)
            })
        }
        .map(|(raw, settings, catalogue)| {
            Loaded::Gateway(LoadedGateway {
                file: rel.to_path_buf(),
                doc,
                raw,
                settings,
                catalogue,
            })
        }),
        FileKind::Partner => {
            typed::<RawPartner>(rel, text, &doc, &pruned, problems).map(|raw| {
                let mut cx = FileCx {
                    file: rel,
                    doc: &doc,
                    dir,
                    existing,
                    problems,
                };
                let partner = convert::partner(&raw, &stem, &mut cx);
                (raw, partner)
            })
        }
        .map(|(raw, partner)| {
            // Whatever it was meant to be called, references to the file's name are not
            // reported again.
            broken |= raw.id.as_deref() != Some(stem.as_str());
            Loaded::Partner(LoadedPartner {
                file: rel.to_path_buf(),
                doc,
                raw,
                pruned,
                partner,
            })
        }),
        FileKind::Campaign => {
            typed::<RawCampaign>(rel, text, &doc, &pruned, problems).map(|raw| {
                let mut cx = FileCx {
                    file: rel,
                    doc: &doc,
                    dir,
                    existing,
                    problems,
                };
                let campaign = convert::campaign(&raw, &stem, &mut cx);
                (raw, campaign)
            })
        }
        .map(|(raw, campaign)| {
            broken |= raw.id.as_deref() != Some(stem.as_str());
            Loaded::Campaign(LoadedCampaign {
                file: rel.to_path_buf(),
                doc,
                raw,
                pruned,
                campaign,
            })
        }),
    };
    broken |= loaded.is_none();
    Outcome { loaded, broken }
}

/// Which kind of file a relative path is, or `None` (with a problem when the file looks like
/// it was meant to be read).
fn classify(rel: &Path, problems: &mut Vec<ConfigProblem>) -> Option<FileKind> {
    let parts: Vec<&str> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    if parts.iter().any(|p| p.starts_with('.')) {
        return None;
    }
    let ext_hint = |dir: &str, name: &str| {
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        format!(
            "only {dir}/*.yaml files are read; rename it to {dir}/{stem}.yaml or move it out of {dir}/"
        )
    };
    match parts.as_slice() {
        [name] if *name == GATEWAY_FILE => Some(FileKind::Gateway),
        [name]
            if name.eq_ignore_ascii_case("gateway.yml")
                || name.eq_ignore_ascii_case(GATEWAY_FILE) =>
        {
            problems.push(
                ConfigProblem::file(rel, format!("{name} is not read"))
                    .with_hint(format!("rename it to {GATEWAY_FILE}")),
            );
            None
        }
        [name] if name.ends_with(".yaml") || name.ends_with(".yml") => {
            problems.push(
                ConfigProblem::file(rel, format!("{name} is not read")).with_hint(format!(
                    "only {GATEWAY_FILE}, {PARTNERS_DIR}/*.yaml and {CAMPAIGNS_DIR}/*.yaml are read"
                )),
            );
            None
        }
        [dir @ ("partners" | "campaigns"), name] => {
            if name.ends_with(".yaml") && name.len() > ".yaml".len() {
                Some(if *dir == PARTNERS_DIR {
                    FileKind::Partner
                } else {
                    FileKind::Campaign
                })
            } else {
                let message = if name.ends_with(".yml") {
                    format!("{name} has the extension .yml and is not read")
                } else {
                    format!("{name} is not a .yaml file and is not read")
                };
                problems.push(ConfigProblem::file(rel, message).with_hint(ext_hint(dir, name)));
                None
            }
        }
        _ => None,
    }
}

/// YAML syntax. `None` when it failed or the file is empty (problem pushed).
fn parse(rel: &Path, text: &str, problems: &mut Vec<ConfigProblem>) -> Option<Document> {
    let doc = match Document::parse(text) {
        Ok(doc) => doc,
        Err(err) => {
            problems.push(
                ConfigProblem::file(rel, format!("YAML syntax: {}", err.message)).at(Location {
                    line_col: err.at,
                    pointer: None,
                }),
            );
            return None;
        }
    };
    if doc.value.is_null() {
        problems.push(
            ConfigProblem::file(rel, "file is empty")
                .with_hint("delete it, or fill it in (see the samples in partner-config/)"),
        );
        return None;
    }
    Some(doc)
}

/// The top-level keys under which the schema found a violation.
fn pruned_keys(violations: &[ConfigProblem]) -> BTreeSet<String> {
    violations
        .iter()
        .filter_map(|p| p.location.pointer.as_deref())
        .filter_map(|pointer| pointer.strip_prefix('/'))
        .map(|rest| {
            let token = rest.split('/').next().unwrap_or_default();
            token.replace("~1", "/").replace("~0", "~")
        })
        .collect()
}

/// The raw struct. A file that passed the schema is parsed by serde-saphyr from its text (an
/// error here means the schema and the raw structs disagree, and still carries line and
/// column). A file that failed it is read from its JSON value without the failing top-level
/// keys, so the rest is still converted and cross-checked; `None` if even that fails.
fn typed<T: serde::de::DeserializeOwned>(
    rel: &Path,
    text: &str,
    doc: &Document,
    pruned: &BTreeSet<String>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    let root_failed = problems
        .iter()
        .any(|p| p.file == rel && p.location.pointer.as_deref() == Some(""));
    if !pruned.is_empty() || root_failed {
        let mut value = doc.value.clone();
        let serde_json::Value::Object(map) = &mut value else {
            return None;
        };
        map.retain(|key, _| !pruned.contains(key));
        return serde_json::from_value(value).ok();
    }
    match serde_saphyr::from_str_with_options::<T>(text, yaml::options()) {
        Ok(raw) => Some(raw),
        Err(err) => {
            let err = yaml::syntax_error(&err);
            problems.push(ConfigProblem::file(rel, err.message).at(Location {
                line_col: err.at,
                pointer: None,
            }));
            None
        }
    }
}

/// The [`Config`], when every part converted.
fn assemble(
    dir: PathBuf,
    gateway: Option<LoadedGateway>,
    partners: Vec<LoadedPartner>,
    campaigns: Vec<LoadedCampaign>,
) -> Option<Config> {
    let gateway = gateway?.settings?;
    let mut pins = HashMap::new();
    let mut subjects = HashMap::new();
    let mut clients = HashMap::new();
    let mut by_id = BTreeMap::new();
    for loaded in partners {
        let p = loaded.partner?;
        for fp in &p.pins {
            pins.insert(*fp, p.id.clone());
        }
        for subject in &p.subjects {
            subjects.insert(subject.clone(), p.id.clone());
        }
        clients.insert(p.client_id.clone(), p.id.clone());
        by_id.insert(p.id.clone(), Arc::new(p));
    }
    let mut by_campaign = BTreeMap::new();
    for loaded in campaigns {
        let c = loaded.campaign?;
        by_campaign.insert(c.id.clone(), Arc::new(c));
    }
    Some(Config {
        dir,
        gateway,
        partners: by_id,
        campaigns: by_campaign,
        pins,
        subjects,
        clients,
    })
}
