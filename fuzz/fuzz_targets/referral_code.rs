#![no_main]
// Referral code parsing never panics; a parsed code prints back to something that parses
// to the same code.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(code) = gateway_core::referral::ReferralCode::parse(text)
    {
        assert_eq!(gateway_core::referral::ReferralCode::parse(&code.to_string()), Some(code));
    }
});
