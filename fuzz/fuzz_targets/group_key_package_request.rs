//! `GroupKeyPackageRequest` bodies.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mimid_fuzz::check::<mimid_wire::GroupKeyPackageRequest>(data));
