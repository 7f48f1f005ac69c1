//! The checks every fuzz target runs on one input.

use std::fmt::Debug;

use mimid_wire::{Limits, TypeEntry, Wire, find_type};

/// Decodes `data` as `T`. Whatever decodes must re-encode to exactly `data`
/// (one encoding per value), with `encoded_len` equal to its length, and its
/// JSON form (`mimid inspect`) must encode back to `data` too. Any panic is
/// a crash for libFuzzer.
pub fn check<T: Wire + Debug>(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(value) = T::decode_exact(data, &limits) {
        let again = value.to_bytes().expect("a decoded value encodes");
        assert_eq!(again, data, "{} {value:?} re-encodes differently", T::NAME);
        assert_eq!(value.encoded_len(), data.len(), "{} encoded_len", T::NAME);
    }
    let entry = find_type(T::NAME).expect("every wire type is in TYPES");
    check_entry(entry, data);
}

/// The same through the run-time registry: `decode_json`, then `reencode`
/// and `encode_json` must both give back `data`.
pub fn check_entry(entry: &TypeEntry, data: &[u8]) {
    let limits = Limits::default();
    if let Ok(json) = (entry.decode_json)(data, &limits) {
        let again = (entry.reencode)(data, &limits)
            .unwrap_or_else(|e| panic!("{}: decoded, but reencode failed: {e}", entry.name));
        assert_eq!(again, data, "{}: reencode differs", entry.name);
        let from_json = (entry.encode_json)(json.clone())
            .unwrap_or_else(|e| panic!("{}: JSON {json} does not encode: {e}", entry.name));
        assert_eq!(
            from_json, data,
            "{}: JSON {json} encodes differently",
            entry.name
        );
    }
}
