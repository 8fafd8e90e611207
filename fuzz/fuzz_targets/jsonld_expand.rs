#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hanse_fuzz::jsonld_expand(data));
