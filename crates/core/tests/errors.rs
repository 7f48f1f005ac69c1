//! Every hub error becomes a decodable wire error with the status the
//! registry gives its code (`docs/protocol.md` section 10).

use mimid_core::HubError;
use mimid_wire::{DSError, ErrorCode, Limits, Wire};

#[test]
fn hub_errors_map_to_decodable_wire_errors() {
    let cases = [
        (
            HubError::UnsupportedVersion(7),
            ErrorCode::UnsupportedVersion,
            400,
        ),
        (
            HubError::WrongEndpoint("send_message"),
            ErrorCode::WrongEndpoint,
            400,
        ),
        (
            HubError::UnsupportedOperation("x".into()),
            ErrorCode::UnsupportedOperation,
            400,
        ),
        (
            HubError::WrongRecipient("x".into()),
            ErrorCode::WrongRecipient,
            421,
        ),
        (HubError::UnknownGroup, ErrorCode::UnknownGroup, 404),
        (HubError::GroupExists, ErrorCode::GroupExists, 409),
        (
            HubError::ClientSignature("x".into()),
            ErrorCode::ClientSignatureInvalid,
            403,
        ),
        (HubError::NotAMember("x".into()), ErrorCode::NotAMember, 403),
        (
            HubError::NotAllowed("x".into()),
            ErrorCode::OperationNotAllowed,
            403,
        ),
        (
            HubError::WrongEpoch { current: 9 },
            ErrorCode::WrongEpoch,
            409,
        ),
        (
            HubError::InvalidMls("x".into()),
            ErrorCode::InvalidMlsMessage,
            400,
        ),
        (
            HubError::InvalidGroupInfo("x".into()),
            ErrorCode::InvalidGroupInfo,
            400,
        ),
        (
            HubError::MissingWelcome("x".into()),
            ErrorCode::MissingWelcome,
            400,
        ),
        (
            HubError::MissingPendingProposals("x".into()),
            ErrorCode::MissingPendingProposals,
            400,
        ),
        (
            HubError::NoWelcomeInformation(3),
            ErrorCode::NoWelcomeInformation,
            404,
        ),
        (
            HubError::Malformed("x".into()),
            ErrorCode::MalformedMessage,
            400,
        ),
        (
            HubError::Internal("secret detail".into()),
            ErrorCode::InternalError,
            500,
        ),
    ];
    for (error, code, status) in cases {
        let wire = error.to_ds_error();
        assert_eq!(wire.code, code, "{error:?}");
        assert_eq!(code.http_status(), status, "{error:?}");
        let decoded = DSError::decode_exact(&wire.to_bytes().unwrap(), &Limits::default()).unwrap();
        assert_eq!(decoded, wire, "{error:?}");
    }
    assert_eq!(
        HubError::WrongEpoch { current: 9 }.to_ds_error(),
        DSError::wrong_epoch(9)
    );
    // Internal details stay in the logs.
    assert!(
        !HubError::Internal("secret detail".into())
            .to_ds_error()
            .to_string()
            .contains("secret")
    );
}
