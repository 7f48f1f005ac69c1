//! DS messages: `DSRequest`, `DSResponse` and the operation bodies
//! (`docs/protocol.md` section 5; DS draft -04 plus profile additions).

use crate::codec::{Bytes, ShortBytes, Wire, rules, wire_enum, wire_struct};
use crate::dserror::DSError;
use crate::ident::{ClientId, GroupIdField};
use crate::mls::{
    GroupInfoExtensions, GroupInfoMessage, LeafNode, PrivateMessage, PublicMessage, RatchetTree,
    WelcomeMessage,
};

/// `uint16 DSProtocolVersion`; this profile is version 1.
pub type DSProtocolVersion = u16;

/// The only version of profile 1.
pub const PROTOCOL_VERSION: DSProtocolVersion = 1;

/// The versions this implementation decodes, as listed in an
/// `unsupported_version` error.
pub const SUPPORTED_VERSIONS: &[DSProtocolVersion] = &[PROTOCOL_VERSION];

wire_struct! {
    /// The GroupInfo pieces a hub cannot compute itself.
    pub struct PartialGroupInfo {
        pub group_info_extensions: GroupInfoExtensions,
        pub signature: Bytes,
    }
}

wire_struct! {
    /// A commit and the pieces to rebuild the next GroupInfo.
    pub struct MLSGroupUpdate {
        pub commit: PublicMessage where rules::commit,
        pub partial_group_info: PartialGroupInfo,
    }
}

wire_struct! {
    pub struct CreateGroupRequest {
        pub group_id: GroupIdField,
        pub leaf_node: LeafNode,
        pub group_info: GroupInfoMessage,
    }
}

wire_struct! {
    pub struct DeleteGroupRequest { pub group_update: MLSGroupUpdate }
}

wire_struct! {
    pub struct AddUsersRequest {
        pub group_update: MLSGroupUpdate,
        pub welcome_messages: Vec<WelcomeMessage> [max_welcomes],
    }
}

wire_struct! {
    pub struct RemoveUsersRequest { pub group_update: MLSGroupUpdate }
}

wire_struct! {
    pub struct AddClientsRequest {
        pub group_update: MLSGroupUpdate,
        pub welcome_messages: Vec<WelcomeMessage> [max_welcomes],
    }
}

wire_struct! {
    pub struct RemoveClientsRequest { pub group_update: MLSGroupUpdate }
}

wire_struct! {
    pub struct SelfRemoveClientRequest { pub proposal: PublicMessage where rules::proposal }
}

wire_struct! {
    pub struct UpdateClientRequest { pub group_update: MLSGroupUpdate }
}

wire_struct! {
    pub struct ExternalJoinRequest { pub group_update: MLSGroupUpdate }
}

wire_struct! {
    pub struct SendMessageRequest { pub application_message: PrivateMessage }
}

wire_struct! {
    pub struct ReInitializeGroupRequest { pub commit: MLSGroupUpdate }
}

wire_struct! {
    /// Profile addition: asks for the tree of the epoch a joiner was added
    /// in. The joiner names itself by its KeyPackageRef: before it has the
    /// tree it cannot know its leaf index.
    pub struct WelcomeInformationRequest {
        pub group_id: GroupIdField,
        pub epoch: u64,
        pub key_package_ref: Bytes,
    }
}

wire_struct! {
    /// Profile addition: asks for the GroupInfo and tree to join externally.
    pub struct ExternalCommitInformationRequest {
        pub group_id: GroupIdField,
        pub requester: ClientId,
    }
}

wire_enum! {
    /// `DSRequestBody`, selected by `DSRequestType`. Values 11..13 are
    /// reserved and rejected like unknown values.
    pub enum DSRequestBody: u8 as "request_type" {
        RequestGroupId = 0 as "request_group_id",
        CreateGroup(CreateGroupRequest) = 1 as "create_group",
        DeleteGroup(DeleteGroupRequest) = 2 as "delete_group",
        AddUsers(AddUsersRequest) = 3 as "add_users",
        RemoveUsers(RemoveUsersRequest) = 4 as "remove_users",
        AddClients(AddClientsRequest) = 5 as "add_clients",
        RemoveClients(RemoveClientsRequest) = 6 as "remove_clients",
        SelfRemoveClient(SelfRemoveClientRequest) = 7 as "self_remove_client",
        UpdateClient(UpdateClientRequest) = 8 as "update_client",
        ExternalJoin(ExternalJoinRequest) = 9 as "external_join",
        SendMessage(SendMessageRequest) = 10 as "send_message",
        ReInitializeGroup(ReInitializeGroupRequest) = 14 as "re_initialize_group",
        WelcomeInformation(WelcomeInformationRequest) = 15 as "welcome_information",
        ExternalCommitInformation(ExternalCommitInformationRequest) = 16 as "external_commit_information",
    }
}

wire_struct! {
    /// The client-signature arm of `DSAuthData`.
    pub struct ClientSignature {
        pub sender_index: u32,
        pub signature: ShortBytes,
    }
}

wire_enum! {
    pub enum DSAuthData: u8 as "auth_type" {
        Anonymous = 0 as "anonymous",
        ClientSignature(ClientSignature) = 1 as "client_signature",
    }
}

wire_struct! {
    /// The body of `/group_operation`, `/welcome_information` and
    /// `/external_commit_information`.
    pub struct DSRequest {
        pub version: u16 where rules::version,
        pub request_body: DSRequestBody,
        pub authentication_data: DSAuthData,
    }
}

wire_struct! {
    /// What a `client_signature` signs (with SignWithLabel).
    pub struct ClientSignatureTBS {
        pub protocol_version: u16,
        pub request_body: DSRequestBody,
        pub sender_index: u32,
    }
}

/// The SignWithLabel label of a client signature (`docs/protocol.md` 6.1).
pub const CLIENT_SIGNATURE_LABEL: &str = "MIMI DS ClientSignature";

impl DSRequest {
    /// The bytes a client signature covers, for `sender_index`, without
    /// copying the body into a `ClientSignatureTBS`.
    pub fn client_signature_tbs(&self, sender_index: u32) -> Result<Vec<u8>, crate::EncodeError> {
        client_signature_tbs(self.version, &self.request_body, sender_index)
    }
}

/// Encodes `ClientSignatureTBS` from its parts.
pub fn client_signature_tbs(
    version: u16,
    body: &DSRequestBody,
    sender_index: u32,
) -> Result<Vec<u8>, crate::EncodeError> {
    let mut w = Vec::with_capacity(2 + body.encoded_len() + 4);
    version.encode(&mut w)?;
    body.encode(&mut w)?;
    sender_index.encode(&mut w)?;
    Ok(w)
}

wire_struct! {
    /// The `external_commit_info` arm of `DSResponseBody`.
    pub struct ExternalCommitInfo {
        pub group_info: GroupInfoMessage,
        pub ratchet_tree: RatchetTree,
    }
}

wire_enum! {
    /// `DSResponseBody`, selected by `DSResponseType`. Values 5..7 are
    /// reserved and rejected like unknown values.
    pub enum DSResponseBody: u8 as "response_type" {
        Ok = 0 as "ok",
        Error(DSError) = 1 as "error",
        GroupId(GroupIdField) = 2 as "group_id",
        WelcomeInfo(RatchetTree) = 3 as "welcome_info",
        ExternalCommitInfo(ExternalCommitInfo) = 4 as "external_commit_info",
    }
}

wire_struct! {
    pub struct DSResponse {
        pub protocol_version: u16 where rules::version,
        pub response_body: DSResponseBody,
    }
}
