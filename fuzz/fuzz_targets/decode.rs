//! Every type of `mimid_wire::TYPES`: the first byte picks the type (modulo
//! the number of types), the rest is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mimid_wire::TYPES;

fuzz_target!(|data: &[u8]| {
    if let Some((&selector, body)) = data.split_first() {
        mimid_fuzz::check_entry(&TYPES[usize::from(selector) % TYPES.len()], body);
    }
});
