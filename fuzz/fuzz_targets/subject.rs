#![no_main]
// Certificate DER: the subject walker answers Ok or a DerError, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = gateway_tls::subject(data);
    let _ = gateway_tls::fingerprint(data);
});
