//! Every named wire type, for tools that pick the type at run time
//! (`mimid inspect`, the golden-vector tests).

use crate::codec::Wire;
use crate::error::DecodeError;
use crate::limits::Limits;
use crate::*;

/// A wire type, usable by name.
pub struct TypeEntry {
    /// The name in `docs/protocol.md`.
    pub name: &'static str,
    /// Decodes a whole body into mimid's JSON form.
    pub decode_json: fn(&[u8], &Limits) -> Result<serde_json::Value, DecodeError>,
    /// Encodes mimid's JSON form.
    pub encode_json: fn(serde_json::Value) -> Result<Vec<u8>, String>,
    /// Decodes and re-encodes, to check the inverse.
    pub reencode: fn(&[u8], &Limits) -> Result<Vec<u8>, String>,
}

fn decode_json<T: Wire + serde::Serialize>(
    bytes: &[u8],
    limits: &Limits,
) -> Result<serde_json::Value, DecodeError> {
    let value = T::decode_exact(bytes, limits)?;
    serde_json::to_value(&value).map_err(|e| DecodeError::invalid(0, T::NAME, e.to_string()))
}

fn encode_json<T: Wire + serde::de::DeserializeOwned>(
    json: serde_json::Value,
) -> Result<Vec<u8>, String> {
    let value: T = serde_json::from_value(json).map_err(|e| e.to_string())?;
    value.to_bytes().map_err(|e| e.to_string())
}

fn reencode<T: Wire>(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, String> {
    T::decode_exact(bytes, limits)
        .map_err(|e| e.to_string())?
        .to_bytes()
        .map_err(|e| e.to_string())
}

macro_rules! entries {
    ($($t:ty),* $(,)?) => {
        &[$(TypeEntry {
            name: <$t as Wire>::NAME,
            decode_json: decode_json::<$t>,
            encode_json: encode_json::<$t>,
            reencode: reencode::<$t>,
        }),*]
    };
}

/// Every struct and identifier type of `docs/protocol.md`.
pub static TYPES: &[TypeEntry] = entries![
    ProviderDomain,
    UserId,
    ClientId,
    GroupId,
    MessageId,
    ProviderSignature,
    ProviderSignatureTBS,
    ProviderSignContent,
    DSRequestBody,
    DSAuthData,
    DSRequest,
    ClientSignatureTBS,
    PartialGroupInfo,
    MLSGroupUpdate,
    CreateGroupRequest,
    DeleteGroupRequest,
    AddUsersRequest,
    RemoveUsersRequest,
    AddClientsRequest,
    RemoveClientsRequest,
    SelfRemoveClientRequest,
    UpdateClientRequest,
    ExternalJoinRequest,
    SendMessageRequest,
    ReInitializeGroupRequest,
    WelcomeInformationRequest,
    ExternalCommitInformationRequest,
    DSResponseBody,
    DSResponse,
    DeliverMessage,
    BatchedMessage,
    DeliverMessages,
    ConnectionRequest,
    QueueingServiceRequest,
    QueueingServiceOk,
    QueueingServiceResponse,
    VerificationKey,
    VerificationKeyId,
    VerificationKeyRequest,
    VerificationKeyOk,
    VerificationKeyResponse,
    ConnectionKeyPackageRequest,
    GroupKeyPackageRequest,
    KeyPackagesOk,
    ConnectionKeyPackageResponse,
    GroupKeyPackageResponse,
    DSError,
    MimiDsGroup,
];

pub fn find_type(name: &str) -> Option<&'static TypeEntry> {
    TYPES.iter().find(|t| t.name.eq_ignore_ascii_case(name))
}

/// The eight endpoints of the seed with their request and response types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub path: &'static str,
    pub request: &'static str,
    pub response: &'static str,
}

impl Endpoint {
    pub const ALL: &'static [Endpoint] = &[
        Endpoint {
            path: "/group_operation",
            request: "DSRequest",
            response: "DSResponse",
        },
        Endpoint {
            path: "/welcome_information",
            request: "DSRequest",
            response: "DSResponse",
        },
        Endpoint {
            path: "/external_commit_information",
            request: "DSRequest",
            response: "DSResponse",
        },
        Endpoint {
            path: "/verification_key",
            request: "VerificationKeyRequest",
            response: "VerificationKeyResponse",
        },
        Endpoint {
            path: "/connection_request",
            request: "QueueingServiceRequest",
            response: "QueueingServiceResponse",
        },
        Endpoint {
            path: "/deliver_message",
            request: "QueueingServiceRequest",
            response: "QueueingServiceResponse",
        },
        Endpoint {
            path: "/connection_key_packages",
            request: "ConnectionKeyPackageRequest",
            response: "ConnectionKeyPackageResponse",
        },
        Endpoint {
            path: "/group_key_packages",
            request: "GroupKeyPackageRequest",
            response: "GroupKeyPackageResponse",
        },
    ];

    pub fn find(path: &str) -> Option<&'static Endpoint> {
        Self::ALL.iter().find(|e| e.path == path)
    }
}
