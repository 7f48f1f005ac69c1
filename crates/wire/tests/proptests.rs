//! Property tests of the codec of every top-level body type.
//!
//! For each type:
//! - arbitrary values encode, decode back to the same value, and
//!   `encoded_len` is the real length; the JSON form of `mimid inspect`
//!   round-trips to the same bytes;
//! - a valid encoding with bytes appended is rejected as trailing bytes, and
//!   every strict prefix of it is rejected;
//! - random bytes and mutated valid encodings never panic the decoder, and
//!   whatever decodes re-encodes to exactly the input (one encoding per
//!   value).
//!
//! MLS fields cannot be random; they are drawn from the real OpenMLS objects
//! in `vectors/mls.json`.
//!
//! `PROPTEST_CASES` overrides the number of cases (default 256). With
//! `MIMID_STRICT_MLS=1`, a panic inside OpenMLS (which the codec catches and
//! turns into an error) fails the test, to find such inputs.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::LazyLock;

use mimid_wire::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // Failures are recorded in the test output, not in files next to
        // the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn limits() -> Limits {
    Limits::default()
}

// ---------------------------------------------------------------------------
// Real MLS objects
// ---------------------------------------------------------------------------

const MLS_JSON: &str = include_str!("../vectors/mls.json");

/// The fixtures of `vectors/mls.json`, parsed once, by the kind of field
/// they may fill.
struct MlsPool {
    public: Vec<PublicMessage>,
    commit: Vec<PublicMessage>,
    proposal: Vec<PublicMessage>,
    private: Vec<PrivateMessage>,
    welcome: Vec<WelcomeMessage>,
    group_info: Vec<GroupInfoMessage>,
    deliverable: Vec<DeliverableMessage>,
    key_package: Vec<KeyPackage>,
    leaf_node: Vec<LeafNode>,
    ratchet_tree: Vec<RatchetTree>,
    group_info_extensions: Vec<GroupInfoExtensions>,
}

static MLS: LazyLock<MlsPool> = LazyLock::new(|| {
    let objects: std::collections::BTreeMap<String, String> =
        serde_json::from_str(MLS_JSON).expect("mls.json is a map of hex strings");
    let bytes = |name: &str| -> Vec<u8> {
        parse_hex(
            objects
                .get(name)
                .unwrap_or_else(|| panic!("mls.json lacks {name}")),
        )
        .unwrap_or_else(|e| panic!("mls.json {name}: {e}"))
    };
    fn all<K: MlsKind>(names: &[&str], bytes: &dyn Fn(&str) -> Vec<u8>) -> Vec<Mls<K>> {
        names
            .iter()
            .map(|n| {
                Mls::<K>::from_bytes(&bytes(n))
                    .unwrap_or_else(|e| panic!("mls.json {n} as {}: {e}", K::WHAT))
            })
            .collect()
    }
    const COMMIT: &[&str] = &[
        "commit_add",
        "commit_update",
        "commit_remove",
        "commit_external_join",
        "commit_reinit",
    ];
    const PROPOSAL: &[&str] = &["proposal_self_remove"];
    let public: Vec<&str> = [COMMIT, PROPOSAL].concat();
    const PRIVATE: &[&str] = &["application_message"];
    const WELCOME: &[&str] = &["welcome"];
    let deliverable: Vec<&str> = [&public[..], PRIVATE, WELCOME].concat();
    MlsPool {
        public: all(&public, &bytes),
        commit: all(COMMIT, &bytes),
        proposal: all(PROPOSAL, &bytes),
        private: all(PRIVATE, &bytes),
        welcome: all(WELCOME, &bytes),
        group_info: all(&["group_info_epoch0", "group_info_epoch1"], &bytes),
        deliverable: all(&deliverable, &bytes),
        key_package: all(
            &[
                "key_package",
                "key_package_connection",
                "key_package_last_resort",
            ],
            &bytes,
        ),
        leaf_node: all(&["leaf_node"], &bytes),
        ratchet_tree: all(&["ratchet_tree"], &bytes),
        group_info_extensions: all(&["group_info_extensions"], &bytes),
    }
});

// ---------------------------------------------------------------------------
// Strategies: leaves
// ---------------------------------------------------------------------------

/// A PublicMessage with a commit, for `MLSGroupUpdate.commit`.
fn commit_message() -> impl Strategy<Value = PublicMessage> {
    select(MLS.commit.clone())
}
/// A PublicMessage with a proposal, for `SelfRemoveClientRequest.proposal`.
fn proposal_message() -> impl Strategy<Value = PublicMessage> {
    select(MLS.proposal.clone())
}
fn private_message() -> impl Strategy<Value = PrivateMessage> {
    select(MLS.private.clone())
}
fn welcome_message() -> impl Strategy<Value = WelcomeMessage> {
    select(MLS.welcome.clone())
}
fn group_info_message() -> impl Strategy<Value = GroupInfoMessage> {
    select(MLS.group_info.clone())
}
fn deliverable_message() -> impl Strategy<Value = DeliverableMessage> {
    select(MLS.deliverable.clone())
}
fn key_package() -> impl Strategy<Value = KeyPackage> {
    select(MLS.key_package.clone())
}
fn leaf_node() -> impl Strategy<Value = LeafNode> {
    select(MLS.leaf_node.clone())
}
fn ratchet_tree() -> impl Strategy<Value = RatchetTree> {
    select(MLS.ratchet_tree.clone())
}
fn group_info_extensions() -> impl Strategy<Value = GroupInfoExtensions> {
    select(MLS.group_info_extensions.clone())
}

/// A DNS domain as the identifier rules allow it (lower case, digits,
/// inner hyphens; two labels at least, a top label that is not all digits).
fn domain_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,10}){1,3}",
        1 => "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){0,2}\\.[a-z]([a-z0-9-]{0,8}[a-z0-9])?",
    ]
}

/// A user name or device: `[a-z0-9._~-]{1,20}` but not `.` or `..`.
fn segment() -> impl Strategy<Value = String> {
    "[a-z0-9._~-]{1,20}".prop_filter("dot segments are not names", |s| s != "." && s != "..")
}

fn provider_domain() -> impl Strategy<Value = ProviderDomain> {
    domain_string().prop_map(|d| d.parse().expect("generated domain is valid"))
}

fn user_id() -> impl Strategy<Value = UserId> {
    (domain_string(), segment()).prop_map(|(d, n)| {
        format!("mimi://{d}/u/{n}")
            .parse()
            .expect("generated user is valid")
    })
}

fn client_id() -> impl Strategy<Value = ClientId> {
    (domain_string(), segment(), segment()).prop_map(|(d, n, dev)| {
        format!("mimi://{d}/d/{n}/{dev}")
            .parse()
            .expect("generated client is valid")
    })
}

fn group_id_field() -> impl Strategy<Value = GroupIdField> {
    (provider_domain(), any::<[u8; 16]>()).prop_map(|(hub_domain, local_id)| {
        GroupIdField(GroupId {
            hub_domain,
            local_id,
        })
    })
}

/// The `DSProtocolVersion` of a top-level body: the decoder refuses every
/// other (`docs/protocol.md` 1.3), so valid values carry version 1. Other
/// versions are checked in `decoding_rules.rs`.
fn version() -> impl Strategy<Value = u16> {
    Just(PROTOCOL_VERSION)
}

fn message_id() -> impl Strategy<Value = MessageId> {
    any::<[u8; 16]>().prop_map(MessageId)
}

/// Raw bytes of a length that exercises all three varint header sizes.
fn byte_vec() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => vec(any::<u8>(), 0..64),
        4 => vec(any::<u8>(), 60..300),
        1 => vec(any::<u8>(), 16_380..16_400),
    ]
}

fn bytes() -> impl Strategy<Value = Bytes> {
    byte_vec().prop_map(Bytes)
}

fn short_bytes() -> impl Strategy<Value = ShortBytes> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..80),
        1 => vec(any::<u8>(), 250..=255),
    ]
    .prop_map(ShortBytes)
}

// ---------------------------------------------------------------------------
// Strategies: errors
// ---------------------------------------------------------------------------

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        3 => select(ErrorCode::ALL.to_vec()),
        // Mostly unregistered codes, kept as `Unknown`.
        // (0 is reserved and refused.)
        1 => (1..=u16::MAX).prop_map(ErrorCode::from_u16),
    ]
}

fn error_text() -> impl Strategy<Value = String> {
    let max = limits().max_error_detail;
    prop_oneof![
        8 => "(?s).{0,120}",
        1 => "[ -~]{1000,1024}",
    ]
    .prop_filter("text detail fits its bound", move |t| t.len() <= max)
}

/// A `DSError` whose detail has the form its code requires.
fn ds_error() -> impl Strategy<Value = DSError> {
    let max = limits().max_error_detail;
    error_code().prop_flat_map(move |code| {
        let detail = match code {
            ErrorCode::WrongEpoch => any::<u64>()
                .prop_map(|current_epoch| ErrorDetail::WrongEpoch { current_epoch })
                .boxed(),
            ErrorCode::UnsupportedVersion => vec(any::<u16>(), 1..=limits().max_versions)
                .prop_map(ErrorDetail::Supported)
                .boxed(),
            ErrorCode::PayloadTooLarge => any::<u32>().prop_map(ErrorDetail::LimitBytes).boxed(),
            ErrorCode::RateLimited | ErrorCode::Unavailable => {
                any::<u32>().prop_map(ErrorDetail::RetryAfter).boxed()
            }
            ErrorCode::Unknown(_) => prop_oneof![
                4 => vec(any::<u8>(), 0..80),
                1 => vec(any::<u8>(), max - 4..=max),
            ]
            .prop_map(|b| ErrorDetail::Opaque(Bytes(b)))
            .boxed(),
            _ => error_text().prop_map(ErrorDetail::Text).boxed(),
        };
        detail.prop_map(move |detail| DSError { code, detail })
    })
}

// ---------------------------------------------------------------------------
// Strategies: DS
// ---------------------------------------------------------------------------

fn group_update() -> impl Strategy<Value = MLSGroupUpdate> {
    (commit_message(), group_info_extensions(), bytes()).prop_map(
        |(commit, group_info_extensions, signature)| MLSGroupUpdate {
            commit,
            partial_group_info: PartialGroupInfo {
                group_info_extensions,
                signature,
            },
        },
    )
}

fn welcomes() -> impl Strategy<Value = Vec<WelcomeMessage>> {
    vec(welcome_message(), 0..4)
}

fn ds_request_body() -> impl Strategy<Value = DSRequestBody> {
    prop_oneof![
        Just(DSRequestBody::RequestGroupId),
        (group_id_field(), leaf_node(), group_info_message()).prop_map(
            |(group_id, leaf_node, group_info)| DSRequestBody::CreateGroup(CreateGroupRequest {
                group_id,
                leaf_node,
                group_info,
            })
        ),
        group_update().prop_map(
            |group_update| DSRequestBody::DeleteGroup(DeleteGroupRequest { group_update })
        ),
        (group_update(), welcomes()).prop_map(|(group_update, welcome_messages)| {
            DSRequestBody::AddUsers(AddUsersRequest {
                group_update,
                welcome_messages,
            })
        }),
        group_update().prop_map(
            |group_update| DSRequestBody::RemoveUsers(RemoveUsersRequest { group_update })
        ),
        (group_update(), welcomes()).prop_map(|(group_update, welcome_messages)| {
            DSRequestBody::AddClients(AddClientsRequest {
                group_update,
                welcome_messages,
            })
        }),
        group_update().prop_map(|group_update| DSRequestBody::RemoveClients(
            RemoveClientsRequest { group_update }
        )),
        proposal_message().prop_map(|proposal| DSRequestBody::SelfRemoveClient(
            SelfRemoveClientRequest { proposal }
        )),
        group_update().prop_map(
            |group_update| DSRequestBody::UpdateClient(UpdateClientRequest { group_update })
        ),
        group_update().prop_map(
            |group_update| DSRequestBody::ExternalJoin(ExternalJoinRequest { group_update })
        ),
        private_message().prop_map(|application_message| DSRequestBody::SendMessage(
            SendMessageRequest {
                application_message
            }
        )),
        group_update().prop_map(|commit| DSRequestBody::ReInitializeGroup(
            ReInitializeGroupRequest { commit }
        )),
        (group_id_field(), any::<u64>(), bytes()).prop_map(|(group_id, epoch, key_package_ref)| {
            DSRequestBody::WelcomeInformation(WelcomeInformationRequest {
                group_id,
                epoch,
                key_package_ref,
            })
        }),
        (group_id_field(), client_id()).prop_map(|(group_id, requester)| {
            DSRequestBody::ExternalCommitInformation(ExternalCommitInformationRequest {
                group_id,
                requester,
            })
        }),
    ]
}

fn ds_auth_data() -> impl Strategy<Value = DSAuthData> {
    prop_oneof![
        Just(DSAuthData::Anonymous),
        (any::<u32>(), short_bytes()).prop_map(|(sender_index, signature)| {
            DSAuthData::ClientSignature(ClientSignature {
                sender_index,
                signature,
            })
        }),
    ]
}

fn ds_request() -> impl Strategy<Value = DSRequest> {
    (version(), ds_request_body(), ds_auth_data()).prop_map(
        |(version, request_body, authentication_data)| DSRequest {
            version,
            request_body,
            authentication_data,
        },
    )
}

fn ds_response_body() -> impl Strategy<Value = DSResponseBody> {
    prop_oneof![
        Just(DSResponseBody::Ok),
        ds_error().prop_map(DSResponseBody::Error),
        group_id_field().prop_map(DSResponseBody::GroupId),
        ratchet_tree().prop_map(DSResponseBody::WelcomeInfo),
        (group_info_message(), ratchet_tree()).prop_map(|(group_info, ratchet_tree)| {
            DSResponseBody::ExternalCommitInfo(ExternalCommitInfo {
                group_info,
                ratchet_tree,
            })
        }),
    ]
}

fn ds_response() -> impl Strategy<Value = DSResponse> {
    (version(), ds_response_body()).prop_map(|(protocol_version, response_body)| DSResponse {
        protocol_version,
        response_body,
    })
}

// ---------------------------------------------------------------------------
// Strategies: queueing
// ---------------------------------------------------------------------------

fn queueing_payload() -> impl Strategy<Value = QueueingServicePayload> {
    prop_oneof![
        (
            group_id_field(),
            any::<u64>(),
            vec(client_id(), 1..6),
            deliverable_message()
        )
            .prop_map(|(group_id, epoch, recipients, message)| {
                QueueingServicePayload::DeliverMessage(DeliverMessage {
                    group_id,
                    epoch,
                    recipients,
                    message,
                })
            }),
        (
            user_id(),
            user_id(),
            group_id_field(),
            any::<u64>(),
            welcome_message()
        )
            .prop_map(|(sender_user, recipient_user, group_id, epoch, welcome)| {
                QueueingServicePayload::ConnectionRequest(ConnectionRequest {
                    sender_user,
                    recipient_user,
                    group_id,
                    epoch,
                    welcome,
                })
            }),
    ]
}

fn queueing_request() -> impl Strategy<Value = QueueingServiceRequest> {
    (
        version(),
        provider_domain(),
        provider_domain(),
        message_id(),
        queueing_payload(),
    )
        .prop_map(
            |(version, sender, recipient, message_id, payload)| QueueingServiceRequest {
                version,
                sender,
                recipient,
                message_id,
                payload,
            },
        )
}

fn queueing_result() -> impl Strategy<Value = QueueingServiceResult> {
    prop_oneof![
        vec(client_id(), 0..6).prop_map(|unknown_recipients| QueueingServiceResult::Ok(
            QueueingServiceOk { unknown_recipients }
        )),
        ds_error().prop_map(QueueingServiceResult::Error),
    ]
}

fn queueing_response() -> impl Strategy<Value = QueueingServiceResponse> {
    (version(), message_id(), queueing_result()).prop_map(|(version, message_id, result)| {
        QueueingServiceResponse {
            version,
            message_id,
            result,
        }
    })
}

// ---------------------------------------------------------------------------
// Strategies: keys, key packages, provider signature, group extension
// ---------------------------------------------------------------------------

fn verification_key() -> impl Strategy<Value = VerificationKey> {
    (any::<[u8; 32]>(), any::<u64>(), any::<u64>()).prop_map(|(pk, a, b)| {
        VerificationKey::new(
            ProviderKeyAlgorithm::Ed25519,
            pk.to_vec(),
            a.min(b),
            a.max(b),
        )
        .expect("a 32-byte key encodes")
    })
}

fn verification_key_request() -> impl Strategy<Value = VerificationKeyRequest> {
    (version(), provider_domain())
        .prop_map(|(version, provider)| VerificationKeyRequest { version, provider })
}

fn verification_key_response() -> impl Strategy<Value = VerificationKeyResponse> {
    let result = prop_oneof![
        (
            provider_domain(),
            vec(verification_key(), 1..=limits().max_keys)
        )
            .prop_map(
                |(provider, keys)| VerificationKeyResult::Ok(VerificationKeyOk { provider, keys })
            ),
        ds_error().prop_map(VerificationKeyResult::Error),
    ];
    (version(), result).prop_map(|(version, result)| VerificationKeyResponse { version, result })
}

fn connection_key_package_request() -> impl Strategy<Value = ConnectionKeyPackageRequest> {
    (version(), user_id(), user_id()).prop_map(|(version, requester, target)| {
        ConnectionKeyPackageRequest {
            version,
            requester,
            target,
        }
    })
}

fn group_key_package_request() -> impl Strategy<Value = GroupKeyPackageRequest> {
    (version(), user_id(), user_id(), vec(client_id(), 0..8)).prop_map(
        |(version, requester, target, clients)| GroupKeyPackageRequest {
            version,
            requester,
            target,
            clients,
        },
    )
}

fn key_packages_result() -> impl Strategy<Value = KeyPackagesResult> {
    prop_oneof![
        (user_id(), vec(key_package(), 1..4)).prop_map(|(target, key_packages)| {
            KeyPackagesResult::Ok(KeyPackagesOk {
                target,
                key_packages,
            })
        }),
        ds_error().prop_map(KeyPackagesResult::Error),
    ]
}

fn connection_key_package_response() -> impl Strategy<Value = ConnectionKeyPackageResponse> {
    (version(), key_packages_result())
        .prop_map(|(version, result)| ConnectionKeyPackageResponse { version, result })
}

fn group_key_package_response() -> impl Strategy<Value = GroupKeyPackageResponse> {
    (version(), key_packages_result())
        .prop_map(|(version, result)| GroupKeyPackageResponse { version, result })
}

fn provider_signature() -> impl Strategy<Value = ProviderSignature> {
    (
        provider_domain(),
        any::<[u8; 8]>(),
        any::<u64>(),
        any::<[u8; 16]>(),
        vec(any::<u8>(), 64).prop_map(Bytes),
    )
        .prop_map(
            |(sender, key_id, timestamp, nonce, signature)| ProviderSignature {
                sender,
                key_id,
                timestamp,
                nonce,
                signature,
            },
        )
}

fn client_signature_tbs() -> impl Strategy<Value = ClientSignatureTBS> {
    (any::<u16>(), ds_request_body(), any::<u32>()).prop_map(
        |(protocol_version, request_body, sender_index)| ClientSignatureTBS {
            protocol_version,
            request_body,
            sender_index,
        },
    )
}

fn provider_signature_tbs() -> impl Strategy<Value = ProviderSignatureTBS> {
    (
        provider_domain(),
        provider_domain(),
        vec(any::<u8>(), 0..=16).prop_map(Bytes),
        vec(any::<u8>(), 0..=255).prop_map(Bytes),
        any::<u64>(),
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
    )
        .prop_map(
            |(sender, recipient, method, path, timestamp, nonce, body_sha256)| {
                ProviderSignatureTBS {
                    sender,
                    recipient,
                    method,
                    path,
                    timestamp,
                    nonce,
                    body_sha256,
                }
            },
        )
}

fn provider_sign_content() -> impl Strategy<Value = ProviderSignContent> {
    (bytes(), bytes()).prop_map(|(label, content)| ProviderSignContent { label, content })
}

fn verification_key_id() -> impl Strategy<Value = VerificationKeyId> {
    bytes().prop_map(|public_key| VerificationKeyId {
        algorithm: ProviderKeyAlgorithm::Ed25519,
        public_key,
    })
}

fn mimi_ds_group() -> impl Strategy<Value = MimiDsGroup> {
    (
        any::<u16>(),
        prop_oneof![Just(GroupKind::Regular), Just(GroupKind::Connection)],
    )
        .prop_map(|(version, kind)| MimiDsGroup { version, kind })
}

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

/// One change to a valid encoding.
#[derive(Clone, Debug)]
enum Mutation {
    /// XOR a byte with a non-zero mask.
    Flip(Index, u8),
    /// Overwrite a byte.
    Set(Index, u8),
    /// Insert a byte (at any position, the end included).
    Insert(Index, u8),
    /// Remove a byte.
    Delete(Index),
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match *self {
            Mutation::Flip(at, mask) if !bytes.is_empty() => {
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
            }
            Mutation::Set(at, byte) if !bytes.is_empty() => {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            Mutation::Insert(at, byte) => {
                let i = at.index(bytes.len() + 1);
                bytes.insert(i, byte);
            }
            Mutation::Delete(at) if !bytes.is_empty() => {
                let i = at.index(bytes.len());
                bytes.remove(i);
            }
            _ => {}
        }
    }
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        3 => (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
    ];
    vec(one, 1..=3)
}

/// Bytes that are not a valid encoding of anything in particular: uniform,
/// or over an alphabet of the byte values the format uses most (small
/// tags, lengths, version 1), so that decoding gets past the first fields.
fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    let common = select(vec![
        0x00u8, 0x01, 0x02, 0x03, 0x04, 0x05, 0x08, 0x0a, 0x10, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xc0,
        0xff, b'a', b'.', b'/', b':', b'm', b'i',
    ]);
    prop_oneof![
        vec(any::<u8>(), 0..64),
        vec(any::<u8>(), 0..1024),
        vec(common, 0..256),
    ]
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// Decodes `bytes` as `T`; whatever decodes must re-encode to exactly
/// `bytes`. A panic fails the proptest case by itself.
fn check_decode<T: Wire + Debug + PartialEq>(bytes: &[u8]) -> Result<(), TestCaseError> {
    match T::decode_exact(bytes, &limits()) {
        Ok(value) => {
            let again = value.to_bytes().map_err(fail)?;
            prop_assert_eq!(
                hex_string(&again),
                hex_string(bytes),
                "{} decoded {:?} but re-encodes differently",
                T::NAME,
                value
            );
            prop_assert_eq!(value.encoded_len(), bytes.len());
        }
        Err(e) => {
            if let DecodeErrorKind::Mls { reason, .. } = &e.kind
                && reason == "decoder panicked"
                && std::env::var_os("MIMID_STRICT_MLS").is_some()
            {
                return Err(fail(format!(
                    "OpenMLS panicked decoding {} input {}: {e}",
                    T::NAME,
                    hex_string(bytes)
                )));
            }
        }
    }
    Ok(())
}

/// Every property of a generated value.
fn check_value<T: Wire + Debug + PartialEq>(
    value: &T,
    mutations: &[Mutation],
    cut: Index,
    suffix: &[u8],
) -> Result<(), TestCaseError> {
    let limits = limits();

    // Encode, decode, equal; `encoded_len` is exact.
    let bytes = value.to_bytes().map_err(fail)?;
    prop_assert_eq!(
        value.encoded_len(),
        bytes.len(),
        "encoded_len of {:?}",
        value
    );
    let decoded = T::decode_exact(&bytes, &limits)
        .map_err(|e| fail(format!("{e} decoding {}", hex_string(&bytes))))?;
    prop_assert_eq!(&decoded, value);
    prop_assert_eq!(decoded.to_bytes().map_err(fail)?, bytes.clone());

    // The JSON form of the registry (`mimid inspect`) gives the same bytes.
    let entry = find_type(T::NAME).ok_or_else(|| fail(format!("{} not in TYPES", T::NAME)))?;
    let json = (entry.decode_json)(&bytes, &limits).map_err(fail)?;
    let from_json =
        (entry.encode_json)(json.clone()).map_err(|e| fail(format!("{e} encoding JSON {json}")))?;
    prop_assert_eq!(
        hex_string(&from_json),
        hex_string(&bytes),
        "JSON {} changes the bytes",
        json
    );
    prop_assert_eq!(
        (entry.reencode)(&bytes, &limits).map_err(fail)?,
        bytes.clone()
    );

    // Appended bytes are trailing bytes, found right after the value.
    let mut longer = bytes.clone();
    longer.extend_from_slice(suffix);
    match T::decode_exact(&longer, &limits) {
        Ok(v) => {
            return Err(fail(format!(
                "{v:?} decoded with {} trailing bytes",
                suffix.len()
            )));
        }
        Err(e) => {
            prop_assert_eq!(
                &e.kind,
                &DecodeErrorKind::TrailingBytes(suffix.len()),
                "{}",
                e
            );
            prop_assert_eq!(e.offset, bytes.len());
        }
    }

    // A strict prefix never decodes.
    let prefix = &bytes[..cut.index(bytes.len())];
    if let Ok(v) = T::decode_exact(prefix, &limits) {
        return Err(fail(format!(
            "prefix {} of {} bytes decoded as {v:?}",
            prefix.len(),
            bytes.len()
        )));
    }

    // A mutated encoding never panics, and decodes only canonically.
    let mut mutated = bytes;
    for m in mutations {
        m.apply(&mut mutated);
    }
    check_decode::<T>(&mutated)
}

macro_rules! properties {
    ($($module:ident: $t:ty = $strategy:expr;)*) => {$(
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(config())]

                #[test]
                fn roundtrip_and_mutations(
                    value in $strategy,
                    mutations in mutations(),
                    cut in any::<Index>(),
                    suffix in vec(any::<u8>(), 1..8),
                ) {
                    check_value::<$t>(&value, &mutations, cut, &suffix)?;
                }

                #[test]
                fn random_bytes_decode_canonically(bytes in random_bytes()) {
                    check_decode::<$t>(&bytes)?;
                }
            }
        }
    )*};
}

properties! {
    ds_request: DSRequest = ds_request();
    ds_response: DSResponse = ds_response();
    queueing_service_request: QueueingServiceRequest = queueing_request();
    queueing_service_response: QueueingServiceResponse = queueing_response();
    verification_key_request: VerificationKeyRequest = verification_key_request();
    verification_key_response: VerificationKeyResponse = verification_key_response();
    connection_key_package_request: ConnectionKeyPackageRequest = connection_key_package_request();
    connection_key_package_response: ConnectionKeyPackageResponse = connection_key_package_response();
    group_key_package_request: GroupKeyPackageRequest = group_key_package_request();
    group_key_package_response: GroupKeyPackageResponse = group_key_package_response();
    provider_signature: ProviderSignature = provider_signature();
    ds_error: DSError = ds_error();
    mimi_ds_group: MimiDsGroup = mimi_ds_group();
    // The signed structs, which no body contains.
    client_signature_tbs: ClientSignatureTBS = client_signature_tbs();
    provider_signature_tbs: ProviderSignatureTBS = provider_signature_tbs();
    provider_sign_content: ProviderSignContent = provider_sign_content();
    verification_key_id: VerificationKeyId = verification_key_id();
}

// ---------------------------------------------------------------------------
// The strategies themselves
// ---------------------------------------------------------------------------

/// Draws `n` values of a strategy and collects a name for each.
fn names_drawn<S: Strategy>(
    s: S,
    n: usize,
    name: impl Fn(&S::Value) -> String,
) -> BTreeSet<String> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| name(&s.new_tree(&mut runner).expect("strategy draws").current()))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn mls_fixtures_fill_every_pool() {
    let pool = &*MLS;
    assert_eq!(pool.public.len(), 6);
    assert_eq!(pool.commit.len(), 5);
    assert_eq!(pool.proposal.len(), 1);
    assert_eq!(pool.private.len(), 1);
    assert_eq!(pool.welcome.len(), 1);
    assert_eq!(pool.group_info.len(), 2);
    assert_eq!(pool.deliverable.len(), 8);
    assert_eq!(pool.key_package.len(), 3);
    assert_eq!(pool.leaf_node.len(), 1);
    assert_eq!(pool.ratchet_tree.len(), 1);
    assert_eq!(pool.group_info_extensions.len(), 1);
}

#[test]
fn every_variant_is_reachable() {
    assert_eq!(
        names_drawn(ds_request_body(), 600, |b| b.name().to_string()),
        set(&[
            "request_group_id",
            "create_group",
            "delete_group",
            "add_users",
            "remove_users",
            "add_clients",
            "remove_clients",
            "self_remove_client",
            "update_client",
            "external_join",
            "send_message",
            "re_initialize_group",
            "welcome_information",
            "external_commit_information",
        ])
    );
    assert_eq!(
        names_drawn(ds_auth_data(), 100, |a| a.name().to_string()),
        set(&["anonymous", "client_signature"])
    );
    assert_eq!(
        names_drawn(ds_response_body(), 300, |b| b.name().to_string()),
        set(&[
            "ok",
            "error",
            "group_id",
            "welcome_info",
            "external_commit_info"
        ])
    );
    assert_eq!(
        names_drawn(queueing_payload(), 100, |p| p.name().to_string()),
        set(&["deliver_message", "connection_request"])
    );
    assert_eq!(
        names_drawn(queueing_result(), 100, |r| r.name().to_string()),
        set(&["ok", "error"])
    );
    assert_eq!(
        names_drawn(verification_key_response(), 100, |r| r
            .result
            .name()
            .to_string()),
        set(&["ok", "error"])
    );
    assert_eq!(
        names_drawn(key_packages_result(), 100, |r| r.name().to_string()),
        set(&["ok", "error"])
    );
    assert_eq!(
        names_drawn(mimi_ds_group(), 100, |g| g.kind.name().to_string()),
        set(&["regular", "connection"])
    );
    // Every form of `DSError.detail`, and unregistered codes.
    assert_eq!(
        names_drawn(ds_error(), 1000, |e| match &e.detail {
            ErrorDetail::Text(_) => "text",
            ErrorDetail::WrongEpoch { .. } => "wrong_epoch",
            ErrorDetail::Supported(_) => "supported",
            ErrorDetail::LimitBytes(_) => "limit_bytes",
            ErrorDetail::RetryAfter(_) => "retry_after",
            ErrorDetail::Opaque(_) => "opaque",
        }
        .to_string()),
        set(&[
            "text",
            "wrong_epoch",
            "supported",
            "limit_bytes",
            "retry_after",
            "opaque"
        ])
    );
    // Every fixture of each pool is drawn.
    let delivered = names_drawn(deliverable_message(), 200, |m| hex_string(m.as_bytes()));
    assert_eq!(delivered.len(), MLS.deliverable.len());
    let key_packages = names_drawn(key_package(), 100, |m| hex_string(m.as_bytes()));
    assert_eq!(key_packages.len(), MLS.key_package.len());
    // The three varint header sizes of `opaque<V>`.
    assert_eq!(
        names_drawn(bytes(), 300, |b| match b.0.len() {
            0..=0x3f => "1",
            0x40..=0x3fff => "2",
            _ => "4",
        }
        .to_string()),
        set(&["1", "2", "4"])
    );
}
