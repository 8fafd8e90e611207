#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hanse_fuzz::odrl_policy(data));
