//! Cross-checks between files: references between partners, campaigns and the field
//! catalogue, and uniqueness of pins and client ids across partners.
//!
//! Files that failed to parse or convert are still known by name, so a broken partner file
//! does not also make every campaign that names it report an "unknown partner".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use gateway_core::context::Fingerprint;
use gateway_core::fields::Tier;

use crate::model::{Campaign, GatewaySettings, Partner};
use crate::raw::{RawCampaign, RawGateway, RawPartner};
use crate::report::{ConfigProblem, Location};
use crate::yaml::Document;

/// `gateway.yaml`, parsed and converted.
pub(crate) struct LoadedGateway {
    pub(crate) file: PathBuf,
    pub(crate) doc: Document,
    pub(crate) raw: RawGateway,
    pub(crate) settings: GatewaySettings,
}

/// One partner file, parsed and converted.
pub(crate) struct LoadedPartner {
    pub(crate) file: PathBuf,
    pub(crate) doc: Document,
    pub(crate) raw: RawPartner,
    pub(crate) partner: Partner,
}

/// One campaign file, parsed and converted.
pub(crate) struct LoadedCampaign {
    pub(crate) file: PathBuf,
    pub(crate) doc: Document,
    pub(crate) raw: RawCampaign,
    pub(crate) campaign: Campaign,
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
        field_ceilings(&gateway.settings, partners, problems);
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
        if let Some(first) = ids.get(p.raw.id.as_str()) {
            problems.push(problem(
                &p.file,
                &p.doc,
                "/id",
                format!(
                    "partner id {:?} is also declared by {}",
                    p.raw.id,
                    first.file.display()
                ),
                Some("each partner has exactly one file".into()),
            ));
        } else {
            ids.insert(&p.raw.id, p);
        }
        for (i, cert) in p.raw.certificates.iter().enumerate() {
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
                                first.raw.id,
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
                                first.raw.id,
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
        let client = p.raw.oauth.client_id.as_str();
        match clients.get(client) {
            Some(first) => problems.push(problem(
                &p.file,
                &p.doc,
                "/oauth/client_id",
                format!(
                    "client id {client:?} is already used by partner {:?} ({})",
                    first.raw.id,
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
    gateway: &GatewaySettings,
    partners: &[LoadedPartner],
    problems: &mut Vec<ConfigProblem>,
) {
    let known: Vec<&str> = gateway.fields.iter().map(|(name, _)| name).collect();
    for p in partners {
        for (i, name) in p.raw.field_ceiling.iter().enumerate() {
            let at = format!("/field_ceiling/{i}");
            match gateway.fields.get(name) {
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
    let known: BTreeSet<&str> = partners.iter().map(|p| p.raw.id.as_str()).collect();
    for (i, ext) in gateway.raw.oauth.external.iter().enumerate() {
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
    let by_partner: BTreeMap<&str, &LoadedPartner> =
        partners.iter().map(|p| (p.raw.id.as_str(), p)).collect();
    let by_campaign: BTreeMap<&str, &LoadedCampaign> =
        campaigns.iter().map(|c| (c.raw.id.as_str(), c)).collect();
    let partner_ids: BTreeSet<&str> = by_partner.keys().copied().collect();
    let campaign_ids: BTreeSet<&str> = by_campaign.keys().copied().collect();

    for p in partners {
        for (i, id) in p.raw.campaigns.iter().enumerate() {
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
                Some(c) if !c.raw.partners.iter().any(|x| x == &p.raw.id) => {
                    problems.push(problem(
                        &p.file,
                        &p.doc,
                        &at,
                        format!("campaign {id:?} does not list partner {:?}", p.raw.id),
                        Some(format!(
                            "add {} to partners in {}, or remove {id} from campaigns",
                            p.raw.id,
                            c.file.display()
                        )),
                    ));
                }
                Some(_) => {}
            }
        }
    }

    for c in campaigns {
        for (i, id) in c.raw.partners.iter().enumerate() {
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
                Some(p) if !p.raw.campaigns.iter().any(|x| x == &c.raw.id) => {
                    problems.push(problem(
                        &c.file,
                        &c.doc,
                        &at,
                        format!("partner {id:?} does not list campaign {:?}", c.raw.id),
                        Some(format!(
                            "add {} to campaigns in {}, or remove {id} from partners",
                            c.raw.id,
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
