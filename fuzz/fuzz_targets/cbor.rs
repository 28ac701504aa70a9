#![no_main]
// libFuzzer's entry point, which the macro writes, is an unsafe extern fn.
#![allow(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| estafette_fuzz::cbor(data));
