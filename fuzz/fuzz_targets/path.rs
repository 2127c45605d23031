#![no_main]
// Path rules and routing never panic, and an accepted path holds no dot segment or escape.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data)
        && gateway_core::route::check_path(path).is_ok()
    {
        assert!(!path.contains('%') && !path.contains("/../") && !path.contains("/./"));
        let _ = gateway_core::route::route(&http::Method::GET, path);
    }
});
