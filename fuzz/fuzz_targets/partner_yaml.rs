#![no_main]
// A partner file: parsed, schema-checked and converted, or reported; never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gateway_config::parse_partner(text, std::path::Path::new("partners/fuzz.yaml"));
    }
});
