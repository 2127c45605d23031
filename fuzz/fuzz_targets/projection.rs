#![no_main]
// An upstream tag document under the sample catalogue: projected or refused, never a panic,
// and never a field outside the consent.
use std::collections::{BTreeMap, BTreeSet};

use gateway_core::consent::{Disclosure, ReleasePolicy, project_document};
use gateway_core::fields::{FieldCatalogue, FieldSpec, MaskRule, Tier};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut fields = BTreeMap::new();
    fields.insert("risk_level".to_owned(), FieldSpec { tier: Tier::Public, mask: None });
    fields.insert("mobile".to_owned(), FieldSpec { tier: Tier::Sensitive, mask: Some(MaskRule::Mobile) });
    fields.insert("holdings".to_owned(), FieldSpec { tier: Tier::Sensitive, mask: Some(MaskRule::AmountBucket) });
    fields.insert("secret".to_owned(), FieldSpec { tier: Tier::Never, mask: None });
    let catalogue = FieldCatalogue::new(fields);
    let mut consented = BTreeMap::new();
    consented.insert("mobile".to_owned(), Disclosure::Masked);
    consented.insert("holdings".to_owned(), Disclosure::Masked);
    let ceiling: BTreeSet<String> = ["mobile", "holdings", "risk_level"].iter().map(|s| s.to_string()).collect();
    let policy = ReleasePolicy { catalogue: &catalogue, consented: &consented, second_authorisation: false, ceiling: &ceiling };
    if let Ok(projection) = project_document(&policy, None, data) {
        for field in &projection.released {
            assert!(consented.contains_key(field), "{field} released without consent");
        }
    }
});
