//! Cross-checks between files: references between partners, campaigns and the field
//! catalogue, and uniqueness of pins and client ids across partners.
//!
//! Files that failed to parse or convert are still known by name, so a broken partner file
//! does not also make every campaign that names it report an "unknown partner".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use gateway_core::context::Fingerprint;
use gateway_core::fields::Tier;

use gateway_core::fields::FieldCatalogue;

use crate::model::{Campaign, GatewaySettings, Partner};
use crate::raw::{RawCampaign, RawGateway, RawPartner};
use crate::report::{ConfigProblem, Location};
use crate::yaml::Document;

/// `gateway.yaml`, parsed and converted as far as it goes.
pub(crate) struct LoadedGateway {
    pub(crate) file: PathBuf,
    pub(crate) doc: Document,
    pub(crate) raw: RawGateway,
    /// `None` when a section failed the schema.
    pub(crate) settings: Option<GatewaySettings>,
    /// The field catalogue, when its section passed the schema.
    pub(crate) catalogue: Option<FieldCatalogue>,
}

/// One partner file, parsed and converted as far as it goes.
pub(crate) struct LoadedPartner {
    pub(crate) file: PathBuf,
    pub(crate) doc: Document,
    pub(crate) raw: RawPartner,
    /// Top-level keys left out because they failed the schema: checks that need them skip.
    pub(crate) pruned: BTreeSet<String>,
    pub(crate) partner: Option<Partner>,
}

/// One campaign file, parsed and converted as far as it goes.
pub(crate) struct LoadedCampaign {
    pub(crate) file: PathBuf,
    pub(crate) doc: Document,
    pub(crate) raw: RawCampaign,
    /// Top-level keys left out because they failed the schema.
    pub(crate) pruned: BTreeSet<String>,
    pub(crate) campaign: Option<Campaign>,
}

/// Ids of files that exist but could not be read, parsed or converted cleanly: references to
/// them are not reported again.
#[derive(Debug, Default)]
pub(crate) struct Broken {
    pub(crate) partners: BTreeSet<String>,
    pub(crate) campaigns: BTreeSet<String>,
}

fn problem(
    file: &Path,
    doc: &Document,
    pointer: &str,
    message: String,
    hint: Option<String>,
) -> ConfigProblem {
    let line_col = doc.position(pointer);
    ConfigProblem {
        file: file.to_path_buf(),
        location: Location {
            line_col,
            pointer: Some(pointer.to_owned()),
        },
        message,
        hint,
    }
}

fn place(file: &Path, doc: &Document, pointer: &str) -> String {
    match doc.position(pointer) {
        Some(at) => format!("{}:{}", file.display(), at.line),
        None => file.display().to_string(),
    }
}

/// Runs every cross-file check, pushing what it finds.
pub(crate) fn cross_check(
    gateway: Option<&LoadedGateway>,
    partners: &[LoadedPartner],
    campaigns: &[LoadedCampaign],
    broken: &Broken,
    problems: &mut Vec<ConfigProblem>,
) {
    unique_partners(partners, problems);
    if let Some(gateway) = gateway {
        if let Some(catalogue) = &gateway.catalogue {
            field_ceilings(catalogue, partners, problems);
        }
        external_partners(gateway, partners, broken, problems);
    }
    campaign_membership(partners, campaigns, broken, problems);
}

/// Ids, pins, subjects and client ids are unique across partners. The first file (in name
/// order) keeps each; later ones are reported, naming the first.
fn unique_partners(partners: &[LoadedPartner], problems: &mut Vec<ConfigProblem>) {
    let mut ids: HashMap<&str, &LoadedPartner> = HashMap::new();
    let mut pins: HashMap<Fingerprint, (&LoadedPartner, String)> = HashMap::new();
    let mut subjects: HashMap<&str, (&LoadedPartner, String)> = HashMap::new();
    let mut clients: HashMap<&str, &LoadedPartner> = HashMap::new();
    for p in partners {
        let id = p.id();
        if let Some(first) = ids.get(id) {
            problems.push(problem(
                &p.file,
                &p.doc,
                "/id",
                format!(
                    "partner id {id:?} is also declared by {}",
                    first.file.display()
                ),
                Some("each partner has exactly one file".into()),
            ));
        } else if p.raw.id.is_some() {
            ids.insert(id, p);
        }
        for (i, cert) in p.raw.certificates.iter().flatten().enumerate() {
            if let Some(fp) = cert
                .sha256
                .as_deref()
                .and_then(|s| Fingerprint::parse(s.trim()))
            {
                let at = format!("/certificates/{i}/sha256");
                match pins.get(&fp) {
                    Some((first, first_at)) if !std::ptr::eq(*first, p) => {
                        problems.push(problem(
                            &p.file,
                            &p.doc,
                            &at,
                            format!(
                                "certificate sha256 {} is already pinned by partner {:?} ({})",
                                fp.to_hex(),
                                first.id(),
                                place(&first.file, &first.doc, first_at)
                            ),
                            Some("a certificate identifies exactly one partner; issue this partner its own".into()),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        pins.insert(fp, (p, at));
                    }
                }
            }
            if let Some(subject) = cert.subject.as_deref() {
                let at = format!("/certificates/{i}/subject");
                match subjects.get(subject) {
                    Some((first, first_at)) if !std::ptr::eq(*first, p) => {
                        problems.push(problem(
                            &p.file,
                            &p.doc,
                            &at,
                            format!(
                                "certificate subject {subject:?} is already pinned by partner {:?} ({})",
                                first.id(),
                                place(&first.file, &first.doc, first_at)
                            ),
                            Some("a subject identifies exactly one partner; pin by sha256 or use a distinct subject".into()),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        subjects.insert(subject, (p, at));
                    }
                }
            }
        }
        let Some(client) = p.raw.oauth.as_ref().map(|o| o.client_id.as_str()) else {
            continue;
        };
        match clients.get(client) {
            Some(first) => problems.push(problem(
                &p.file,
                &p.doc,
                "/oauth/client_id",
                format!(
                    "client id {client:?} is already used by partner {:?} ({})",
                    first.id(),
                    place(&first.file, &first.doc, "/oauth/client_id")
                ),
                Some("client ids are unique; by convention the client id is the partner id".into()),
            )),
            None => {
                clients.insert(client, p);
            }
        }
    }
}

/// Every field of a ceiling is in the catalogue and may be released at all.
fn field_ceilings(
    catalogue: &FieldCatalogue,
    partners: &[LoadedPartner],
    problems: &mut Vec<ConfigProblem>,
) {
    let known: Vec<&str> = catalogue.iter().map(|(name, _)| name).collect();
    for p in partners {
        for (i, name) in p.raw.field_ceiling.iter().flatten().enumerate() {
            let at = format!("/field_ceiling/{i}");
            match catalogue.get(name) {
                None => problems.push(problem(
                    &p.file,
                    &p.doc,
                    &at,
                    format!("field {name:?} is not in the field catalogue"),
                    Some(format!(
                        "fields are declared under `fields:` in gateway.yaml; known fields are {}",
                        known.join(", ")
                    )),
                )),
                Some(spec) if spec.tier == Tier::Never => problems.push(problem(
                    &p.file,
                    &p.doc,
                    &at,
                    format!("field {name:?} has tier never and can never be released"),
                    Some("remove it from field_ceiling".into()),
                )),
                Some(_) => {}
            }
        }
    }
}

/// Partners named by external issuers exist.
fn external_partners(
    gateway: &LoadedGateway,
    partners: &[LoadedPartner],
    broken: &Broken,
    problems: &mut Vec<ConfigProblem>,
) {
    let known: BTreeSet<&str> = partners
        .iter()
        .filter_map(|p| p.raw.id.as_deref())
        .collect();
    let external = gateway.raw.oauth.iter().flat_map(|o| o.external.iter());
    for (i, ext) in external.enumerate() {
        for (j, id) in ext.partners.iter().enumerate() {
            if !known.contains(id.as_str()) && !broken.partners.contains(id) {
                problems.push(problem(
                    &gateway.file,
                    &gateway.doc,
                    &format!("/oauth/external/{i}/partners/{j}"),
                    format!("unknown partner {id:?}"),
                    Some(partner_hint(&known)),
                ));
            }
        }
    }
}

/// Partners list the campaigns they take part in, and campaigns list their partners: both
/// sides exist and agree.
fn campaign_membership(
    partners: &[LoadedPartner],
    campaigns: &[LoadedCampaign],
    broken: &Broken,
    problems: &mut Vec<ConfigProblem>,
) {
    let by_partner: BTreeMap<&str, &LoadedPartner> = partners
        .iter()
        .filter_map(|p| Some((p.raw.id.as_deref()?, p)))
        .collect();
    let by_campaign: BTreeMap<&str, &LoadedCampaign> = campaigns
        .iter()
        .filter_map(|c| Some((c.raw.id.as_deref()?, c)))
        .collect();
    let partner_ids: BTreeSet<&str> = by_partner.keys().copied().collect();
    let campaign_ids: BTreeSet<&str> = by_campaign.keys().copied().collect();

    for p in partners {
        let Some(partner_id) = p.raw.id.as_deref() else {
            continue;
        };
        for (i, id) in p.raw.campaigns.iter().flatten().enumerate() {
            let at = format!("/campaigns/{i}");
            match by_campaign.get(id.as_str()) {
                None if broken.campaigns.contains(id) => {}
                None => problems.push(problem(
                    &p.file,
                    &p.doc,
                    &at,
                    format!("unknown campaign {id:?}"),
                    Some(if campaign_ids.is_empty() {
                        "campaigns are files in campaigns/; there are none".to_owned()
                    } else {
                        format!(
                            "campaigns are files in campaigns/; known campaigns are {}",
                            join(&campaign_ids)
                        )
                    }),
                )),
                Some(c) if c.lists_partner(partner_id) == Some(false) => {
                    problems.push(problem(
                        &p.file,
                        &p.doc,
                        &at,
                        format!("campaign {id:?} does not list partner {partner_id:?}"),
                        Some(format!(
                            "add {partner_id} to partners in {}, or remove {id} from campaigns",
                            c.file.display()
                        )),
                    ));
                }
                Some(_) => {}
            }
        }
    }

    for c in campaigns {
        let Some(campaign_id) = c.raw.id.as_deref() else {
            continue;
        };
        for (i, id) in c.raw.partners.iter().flatten().enumerate() {
            let at = format!("/partners/{i}");
            match by_partner.get(id.as_str()) {
                None if broken.partners.contains(id) => {}
                None => problems.push(problem(
                    &c.file,
                    &c.doc,
                    &at,
                    format!("unknown partner {id:?}"),
                    Some(partner_hint(&partner_ids)),
                )),
                Some(p) if p.lists_campaign(campaign_id) == Some(false) => {
                    problems.push(problem(
                        &c.file,
                        &c.doc,
                        &at,
                        format!("partner {id:?} does not list campaign {campaign_id:?}"),
                        Some(format!(
                            "add {campaign_id} to campaigns in {}, or remove {id} from partners",
                            p.file.display()
                        )),
                    ));
                }
                Some(_) => {}
            }
        }
    }
}

fn partner_hint(known: &BTreeSet<&str>) -> String {
    if known.is_empty() {
        "partners are files in partners/; there are none".to_owned()
    } else {
        format!(
            "partners are files in partners/; known partners are {}",
            join(known)
        )
    }
}

fn join(ids: &BTreeSet<&str>) -> String {
    ids.iter().copied().collect::<Vec<_>>().join(", ")
}

// === impl LoadedPartner, LoadedCampaign ===

impl LoadedPartner {
    fn id(&self) -> &str {
        self.raw.id.as_deref().unwrap_or_default()
    }

    /// Whether the partner lists `campaign`; `None` when its list failed the schema.
    fn lists_campaign(&self, campaign: &str) -> Option<bool> {
        if self.pruned.contains("campaigns") {
            return None;
        }
        Some(self.raw.campaigns.iter().flatten().any(|c| c == campaign))
    }
}

impl LoadedCampaign {
    /// Whether the campaign lists `partner`; `None` when its list failed the schema.
    fn lists_partner(&self, partner: &str) -> Option<bool> {
        if self.pruned.contains("partners") {
            return None;
        }
        Some(self.raw.partners.iter().flatten().any(|p| p == partner))
    }
}
