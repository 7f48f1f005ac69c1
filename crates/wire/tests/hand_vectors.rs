//! Vectors written out by hand from `docs/protocol.md`, independent of the
//! encoder, so that the codec is checked against the document itself.

use mimid_wire::*;

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn wrong_epoch_error_matches_the_document() {
    // code 22, detail<V> of 8 bytes holding epoch 7.
    let bytes = [0x00, 0x16, 0x08, 0, 0, 0, 0, 0, 0, 0, 7];
    let err = DSError::decode_exact(&bytes, &limits()).unwrap();
    assert_eq!(err, DSError::wrong_epoch(7));
    assert_eq!(err.to_bytes().unwrap(), bytes);
}

#[test]
fn ds_response_ok_is_three_bytes() {
    let bytes = [0x00, 0x01, 0x00];
    let resp = DSResponse::decode_exact(&bytes, &limits()).unwrap();
    assert_eq!(
        resp,
        DSResponse {
            protocol_version: 1,
            response_body: DSResponseBody::Ok
        }
    );
    assert_eq!(resp.to_bytes().unwrap(), bytes);
}

#[test]
fn verification_key_request_names_the_provider() {
    // version 1, provider "a.example" (9 bytes).
    let mut bytes = vec![0x00, 0x01, 0x09];
    bytes.extend_from_slice(b"a.example");
    let req = VerificationKeyRequest::decode_exact(&bytes, &limits()).unwrap();
    assert_eq!(req.provider.as_str(), "a.example");
    assert_eq!(req.to_bytes().unwrap(), bytes);
}

#[test]
fn trailing_byte_is_rejected_with_its_offset() {
    let bytes = [0x00, 0x01, 0x00, 0xff];
    let err = DSResponse::decode_exact(&bytes, &limits()).unwrap_err();
    assert_eq!(err.offset, 3);
    assert_eq!(err.kind, DecodeErrorKind::TrailingBytes(1));
}

#[test]
fn reserved_request_type_is_rejected_naming_the_field() {
    // version 1, request_type 11 (ds_signature_public_key, reserved).
    let bytes = [0x00, 0x01, 11, 0x00];
    let err = DSRequest::decode_exact(&bytes, &limits()).unwrap_err();
    assert_eq!(err.offset, 2);
    assert_eq!(err.kind, DecodeErrorKind::UnknownValue(11));
    assert_eq!(err.path(), "DSRequest.request_body.request_type");
}

#[test]
fn non_minimal_length_is_rejected() {
    // VerificationKeyRequest with provider length 9 written in two bytes.
    let mut bytes = vec![0x00, 0x01, 0x40, 0x09];
    bytes.extend_from_slice(b"a.example");
    let err = VerificationKeyRequest::decode_exact(&bytes, &limits()).unwrap_err();
    assert_eq!(err.offset, 2);
    assert_eq!(err.kind, DecodeErrorKind::BadVectorLength);
    assert_eq!(err.path(), "VerificationKeyRequest.provider");
}

#[test]
fn upper_case_domain_is_rejected() {
    let mut bytes = vec![0x00, 0x01, 0x09];
    bytes.extend_from_slice(b"A.example");
    let err = VerificationKeyRequest::decode_exact(&bytes, &limits()).unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::Invalid { .. }), "{err}");
}

#[test]
fn recipient_bound_is_enforced() {
    let q = QueueingServiceOk {
        unknown_recipients: (0..3)
            .map(|i| format!("mimi://b.example/d/u/{i}").parse().unwrap())
            .collect(),
    };
    let bytes = q.to_bytes().unwrap();
    let tight = Limits {
        max_recipients: 2,
        ..Limits::default()
    };
    let err = QueueingServiceOk::decode_exact(&bytes, &tight).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::TooManyItems { max: 2 });
    assert!(QueueingServiceOk::decode_exact(&bytes, &limits()).is_ok());
}

#[test]
fn identifiers_split_into_user_and_domain() {
    let c: ClientId = "mimi://b.example/d/bob/phone".parse().unwrap();
    assert_eq!(c.user().as_str(), "mimi://b.example/u/bob");
    assert_eq!(c.domain().as_str(), "b.example");
    assert_eq!(c.device(), "phone");
    for bad in [
        "mimi://b.example/u/bob",
        "mimi://b.example/d/bob",
        "mimi://B.example/d/bob/x",
        "mimi://b.example/d/bob/x/y",
        "http://b.example/d/a/b",
        "mimi://-b.example/d/a/b",
    ] {
        assert!(bad.parse::<ClientId>().is_err(), "{bad}");
    }
}

#[test]
fn every_registered_code_round_trips_in_its_detail_form() {
    for &code in ErrorCode::ALL {
        let err = match code {
            ErrorCode::WrongEpoch => DSError::wrong_epoch(3),
            ErrorCode::UnsupportedVersion => DSError::unsupported_version(vec![1]),
            ErrorCode::RateLimited => DSError::rate_limited(5),
            ErrorCode::Unavailable => DSError::unavailable(5),
            ErrorCode::PayloadTooLarge => DSError {
                code,
                detail: ErrorDetail::LimitBytes(1024),
            },
            _ => DSError::text(code, "why"),
        };
        let bytes = err.to_bytes().unwrap();
        assert_eq!(
            DSError::decode_exact(&bytes, &limits()).unwrap(),
            err,
            "{}",
            code.name()
        );
    }
}
