//! Negative vectors (`crates/wire/vectors/negative.json`, `docs/protocol.md`
//! section 11): every body is refused with the code, field path, offset and
//! kind the file gives, and the file holds a vector for every decoding rule
//! of section 1.

use std::collections::BTreeSet;

use mimid_wire::{ErrorCode, Limits, find_type, parse_hex};

const NEGATIVE: &str = include_str!("../vectors/negative.json");

fn vectors() -> Vec<serde_json::Value> {
    serde_json::from_str(NEGATIVE).expect("negative.json is JSON")
}

fn text<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector without {name}: {v}"))
}

fn number(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("vector without {name}: {v}"))
}

#[test]
fn every_negative_vector_is_refused_as_documented() {
    let limits = Limits::default();
    let vectors = vectors();
    assert!(!vectors.is_empty());
    let mut failures = Vec::new();
    for v in &vectors {
        let ty = text(v, "struct");
        let label = format!("{ty}/{}", text(v, "name"));
        let entry = find_type(ty).unwrap_or_else(|| panic!("{label}: no type {ty}"));
        let bytes = parse_hex(text(v, "hex")).expect("hex");
        let err = match (entry.decode_json)(&bytes, &limits) {
            Ok(value) => {
                failures.push(format!("{label}: decodes as {value}"));
                continue;
            }
            Err(e) => e,
        };
        let code = err.code();
        let got = (
            code.name(),
            u64::from(code.http_status()),
            err.path(),
            err.offset as u64,
            err.kind.name(),
        );
        let want = (
            text(v, "code"),
            number(v, "status"),
            text(v, "path").to_owned(),
            number(v, "offset"),
            text(v, "kind"),
        );
        if got != want {
            failures.push(format!("{label}: got {got:?}, want {want:?} ({err})"));
        }
        // What a receiver answers: the registry code, and for another
        // version the list of supported versions.
        let answer = err.to_ds_error();
        if answer.code != code {
            failures.push(format!("{label}: answered with {answer}"));
        }
        if code == ErrorCode::UnsupportedVersion
            && answer != mimid_wire::DSError::unsupported_version(vec![1])
        {
            failures.push(format!("{label}: answered with {answer}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_decoding_rule_has_a_negative_vector() {
    let vectors = vectors();
    let names: BTreeSet<String> = vectors
        .iter()
        .map(|v| format!("{}/{}", text(v, "struct"), text(v, "name")))
        .collect();
    for must in [
        // 1.3: the version first, whatever follows.
        "DSRequest/version_2_then_garbage",
        "DSRequest/version_2_of_a_valid_request",
        "DSResponse/version_0",
        "QueueingServiceRequest/version_2",
        // 1: encoding; 1.1: bounds.
        "PartialGroupInfo/group_info_extensions_over_the_bound",
        "CreateGroupRequest/group_info_with_extensions_over_the_bound",
        "VerificationKeyRequest/non_minimal_length",
        "VerificationKeyRequest/reserved_length_prefix",
        "DSResponse/trailing_byte",
        // 1.4: embedded MLS messages.
        "DSRequest/commit_field_carrying_a_proposal",
        "DSRequest/proposal_field_carrying_a_commit",
        "DSRequest/application_message_with_commit_content",
        "DeliverMessage/public_application_message",
        "DSRequest/commit_with_a_non_mimi_group_id",
        "CreateGroupRequest/group_info_with_a_non_mimi_group_id",
        // 1.4: non-empty vectors, signatures, bounds.
        "QueueingServiceRequest/no_recipients",
        "KeyPackagesOk/no_key_packages",
        "VerificationKeyOk/no_keys",
        "ProviderSignature/signature_of_3_bytes",
        "ProviderSignature/empty_signature",
        "ProviderSignatureTBS/method_of_17_bytes",
        "ProviderSignatureTBS/path_of_256_bytes",
        // 2: identifiers and group ids.
        "VerificationKeyRequest/single_label_domain",
        "VerificationKeyRequest/ipv4_address",
        "UserID/all_digit_top_label",
        "DeliverMessage/recipient_with_a_single_label_domain",
        "ExternalCommitInformationRequest/group_id_with_a_trailing_byte",
        // 10: errors.
        "DSError/code_0",
        "DSResponse/error_code_0",
        "DSError/unsupported_version_listing_nothing",
        "DSError/unregistered_code_detail_of_1025_bytes",
    ] {
        assert!(names.contains(must), "negative.json lacks {must}");
    }
    // Both answers of a decoding failure occur.
    let codes: BTreeSet<&str> = vectors.iter().map(|v| text(v, "code")).collect();
    assert_eq!(
        codes,
        BTreeSet::from(["malformed_message", "unsupported_version"])
    );
    // Every entry names the section that states its rule.
    for v in &vectors {
        let section = text(v, "section");
        assert!(
            section
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
            "{v}"
        );
        assert!(!text(v, "description").is_empty(), "{v}");
    }
}
