//! Which error wins when a DS request has two faults: the hub reports the
//! first failing check in the order of `docs/protocol.md` 6.2, for every DS
//! operation, on both backends (the core alone, and the service on a real
//! SQLite file).
//!
//! Each operation has a builder for a valid request (checked to be
//! accepted, last) and a list of the faults that apply to it, in the order
//! the hub must report them. Every fault alone must give its own error (so
//! that no pair passes vacuously); every pair (a, b), a before b, applied
//! to a fresh valid request, must give a's error. Body edits come first,
//! then the request is signed again (with `sender_index` per the faults),
//! and a `Signature` fault flips a bit of that signature last. A refused
//! request changes nothing (checked after each operation's refusals), so
//! one group serves all of an operation's refusals; the requests with a
//! `Pending` fault go to another group, in which Carol's self-remove is
//! pending and unseen by the committers.
//!
//! The table (`TABLE`, below): the position of each fault in the order of
//! each operation (1 is reported first), `.` where it does not apply.
//! Columns: Ver `Version`, End `Endpoint`, Aut `AuthType`, Rcp
//! `Recipient`, Unk `UnknownGroup`, Frn `Foreign`, Lf9 `NoLeaf`, Sig
//! `Signature`, Snd `Sender`, Org `Origin`, Epo `Epoch`, Mls
//! `Mls`, Pnd `Pending`, Rul `Rule`, Wel `Welcome`, GI `GroupInfo`, NoS
//! `NoSnapshot`, NoA `NotAdded` (see `Fault`).
//!
//! FAULT-TABLE-BEGIN
//! operation                    Ver End Aut Rcp Unk Frn Lf9 Sig Snd Org Epo Mls Pnd Rul Wel  GI NoS NoA
//! update_client                  1   2   3   4   5   .   6   7   8   9  10  11  12  13   .  14   .   .
//! update_client, 17 KiB          1   2   3   4   5   .   6   7   8   9  10  11  12  13   .  14   .   .
//! add_users                      1   2   3   4   5   .   6   7   8   9  10  11  12  13  14  15   .   .
//! add_clients                    1   2   3   4   5   .   6   7   8   9  10  11  12  13  14  15   .   .
//! remove_users                   1   2   3   4   5   .   6   7   8   9  10  11  12  13   .  14   .   .
//! remove_clients                 1   2   3   4   5   .   6   7   8   9  10  11  12  13   .  14   .   .
//! delete_group                   1   2   3   4   5   .   6   7   8   9  10  11  12  13   .  14   .   .
//! self_remove_client             1   2   3   4   5   .   6   7   8   9  10  11   .  12   .   .   .   .
//! send_message                   1   2   3   4   5   .   6   7   .   8   9   .   .   .   .   .   .   .
//! external_join                  1   2   3   4   5   .   .   9   8  10   6   7   .  11   .  12   .   .
//! create_group                   1   2   3   4   6   5   .   9   7  10   .   8   .   .   .  11   .   .
//! request_group_id               1   2   3   .   .   4   .   .   .   .   .   .   .   .   .   .   .   .
//! welcome_information            1   2   3   4   5   .   .   9   6  10   .   .   .   .   .   .   7   8
//! external_commit_information    1   2   3   4   5   .   .   .   .   6   .   .   .   7   .   .   .   .
//! re_initialize_group            1   2   3   4   5   .   6   7   .   8   9  10   .   .   .   .   .   .
//! FAULT-TABLE-END
//!
//! For `ds_create_group` and `ds_external_join` the signer's key is known
//! only from the MLS message: signature and origin come after the MLS
//! validation. `ds_create_group`'s `sender_index` must be 0 and is checked
//! before, as `ds_welcome_information`'s 0xFFFFFFFF is. For
//! `ds_re_initialize_group` every fault after the group (steps 1-4) gives
//! `UnsupportedOperation`, the answer to its valid request: the hub does
//! not look further.
//!
//! Faults of one step that give the same error code (a bad signature, a
//! missing leaf and a `sender_index` that is not the MLS sender; no
//! snapshot and no such joiner) are compared by variant only when paired:
//! 6.2 does not order them among themselves. Some pairs hide their second
//! fault (an anonymous request has no signature to spoil): they still
//! check that the first one wins.
//!
//! What decoding refuses (step 2: an embedded message of the wrong content
//! type or wire format, an MLS group id that is not a `GroupId`, empty
//! lists) cannot be built as a `DSRequest` at all; the wire crate's
//! negative vectors (`crates/wire/tests/negative.rs`) cover those, and the
//! version (step 1) is read before them.
//!
//! Where the hub breaks the order the test fails, listing every check that
//! gave the wrong error.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use common::*;
use mimid_client::MimiClient;
use mimid_core::{DsEndpoint, HubError, Origin};
use mimid_wire::{
    Bytes, ClientId, DSAuthData, DSRequest, DSRequestBody, DSResponseBody, DeleteGroupRequest,
    ExternalCommitInformationRequest, GroupId, GroupIdField, GroupKind, KeyPackage, MLSGroupUpdate,
    Mls, MlsKind, PublicMessage, ReInitializeGroupRequest, RemoveClientsRequest,
    RemoveUsersRequest, ShortBytes, UpdateClientRequest, WelcomeMessage,
};
use openmls::prelude::{ContentType, MlsMessageBodyIn};

/// One fault of a DS request, named after the check of 6.2 it trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    /// `version` 2 (step 2): `UnsupportedVersion`.
    Version,
    /// Sent to another endpoint (step 3): `WrongEndpoint`.
    Endpoint,
    /// The other `auth_type` (step 3): a client-signed operation sent
    /// anonymous (`ClientSignature`), an anonymous one signed (`Malformed`).
    AuthType,
    /// Sent to another hub, b.example (step 4): `WrongRecipient`.
    Recipient,
    /// Sent to a hub of a.example without the group (step 4):
    /// `UnknownGroup`; for `ds_create_group` an id the hub did not issue
    /// (`NotAllowed`).
    UnknownGroup,
    /// From another provider (b.example) to a hub that serves only its own
    /// clients with new groups: `NotAllowed` (the first check of
    /// `ds_request_group_id` and `ds_create_group`).
    Foreign,
    /// `sender_index` 9, a leaf nobody holds (step 5): `ClientSignature`.
    NoLeaf,
    /// A bit of the client signature flipped (step 5): `ClientSignature`.
    Signature,
    /// `sender_index` is not the MLS sender: another member signs as its
    /// own leaf; for joiners a wrong leaf (step 5): `ClientSignature`.
    Sender,
    /// The signer's client does not belong to the provider the request acts
    /// for (step 5): `NotAllowed` ("may not act for").
    Origin,
    /// The embedded message names the previous epoch (step 6):
    /// `WrongEpoch`. Its bytes are edited, so it is invalid MLS too.
    Epoch,
    /// A byte of the FramedContent signature flipped, epoch intact (step
    /// 7): `InvalidMls`; for `ds_create_group` a byte of the leaf's
    /// signature (`InvalidGroupInfo`, from the tree validation).
    Mls,
    /// A pending self-remove the committer has not seen (step 8):
    /// `MissingPendingProposals`.
    Pending,
    /// The operation's own rule (6.3) broken (step 8): `NotAllowed`.
    Rule,
    /// No Welcome for the added client (step 8): `MissingWelcome`.
    Welcome,
    /// A bit of the PartialGroupInfo signature flipped (step 9); for
    /// `ds_create_group` a GroupInfo of another group: `InvalidGroupInfo`.
    GroupInfo,
    /// `ds_welcome_information` for an epoch without a joiner snapshot:
    /// `NoWelcomeInformation`.
    NoSnapshot,
    /// `ds_welcome_information` for a KeyPackage nobody was added with:
    /// `NoWelcomeInformation`.
    NotAdded,
}

impl Fault {
    const ALL: [Fault; 18] = [
        Fault::Version,
        Fault::Endpoint,
        Fault::AuthType,
        Fault::Recipient,
        Fault::UnknownGroup,
        Fault::Foreign,
        Fault::NoLeaf,
        Fault::Signature,
        Fault::Sender,
        Fault::Origin,
        Fault::Epoch,
        Fault::Mls,
        Fault::Pending,
        Fault::Rule,
        Fault::Welcome,
        Fault::GroupInfo,
        Fault::NoSnapshot,
        Fault::NotAdded,
    ];

    fn short(self) -> &'static str {
        match self {
            Fault::Version => "Ver",
            Fault::Endpoint => "End",
            Fault::AuthType => "Aut",
            Fault::Recipient => "Rcp",
            Fault::UnknownGroup => "Unk",
            Fault::Foreign => "Frn",
            Fault::NoLeaf => "Lf9",
            Fault::Signature => "Sig",
            Fault::Sender => "Snd",
            Fault::Origin => "Org",
            Fault::Epoch => "Epo",
            Fault::Mls => "Mls",
            Fault::Pending => "Pnd",
            Fault::Rule => "Rul",
            Fault::Welcome => "Wel",
            Fault::GroupInfo => "GI",
            Fault::NoSnapshot => "NoS",
            Fault::NotAdded => "NoA",
        }
    }

    /// Faults of one step with one error code: 6.2 does not order them.
    fn unordered_with(self, other: Fault) -> bool {
        let group = |f: Fault| match f {
            Fault::NoLeaf | Fault::Signature | Fault::Sender => 1,
            Fault::NoSnapshot | Fault::NotAdded => 2,
            _ => 0,
        };
        group(self) != 0 && group(self) == group(other)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    UpdateClient,
    /// `ds_update_client` with a commit of 17 KiB: the hub checks the client
    /// signature beside the MLS validation, the service stores the commit
    /// ahead once the sender is authenticated.
    UpdateClientLarge,
    AddUsers,
    AddClients,
    RemoveUsers,
    RemoveClients,
    DeleteGroup,
    SelfRemoveClient,
    SendMessage,
    ExternalJoin,
    CreateGroup,
    RequestGroupId,
    WelcomeInformation,
    ExternalCommitInformation,
    ReInitializeGroup,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::UpdateClient => "update_client",
            Op::UpdateClientLarge => "update_client, 17 KiB",
            Op::AddUsers => "add_users",
            Op::AddClients => "add_clients",
            Op::RemoveUsers => "remove_users",
            Op::RemoveClients => "remove_clients",
            Op::DeleteGroup => "delete_group",
            Op::SelfRemoveClient => "self_remove_client",
            Op::SendMessage => "send_message",
            Op::ExternalJoin => "external_join",
            Op::CreateGroup => "create_group",
            Op::RequestGroupId => "request_group_id",
            Op::WelcomeInformation => "welcome_information",
            Op::ExternalCommitInformation => "external_commit_information",
            Op::ReInitializeGroup => "re_initialize_group",
        }
    }

    fn anonymous(self) -> bool {
        matches!(self, Op::RequestGroupId | Op::ExternalCommitInformation)
    }

    /// Faults that need another request rather than an edit of the valid
    /// one: its builder makes one variant per subset of them.
    fn built_in(self) -> &'static [Fault] {
        match self {
            Op::CreateGroup => &[Fault::Origin, Fault::GroupInfo],
            Op::RequestGroupId
            | Op::SendMessage
            | Op::WelcomeInformation
            | Op::ReInitializeGroup => &[],
            _ => &[Fault::Rule],
        }
    }
}

use Fault::{
    AuthType, Endpoint, Epoch, Foreign, GroupInfo, Mls as MlsSig, NoLeaf, NoSnapshot, NotAdded,
    Origin as OriginF, Pending, Recipient, Rule, Sender, Signature, UnknownGroup, Version, Welcome,
};

/// Each operation and the faults that apply to it, in the order the hub
/// must report them (first failing check wins), by step of 6.2.
#[rustfmt::skip]
const TABLE: &[(Op, &[Fault])] = &[
    (Op::UpdateClient, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup, // 1-4
        NoLeaf, Signature, Sender, OriginF,                   // 5
        Epoch, MlsSig,                                        // 6-7
        Pending, Rule, GroupInfo,                             // 8-9
    ]),
    (Op::UpdateClientLarge, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        NoLeaf, Signature, Sender, OriginF,
        Epoch, MlsSig,
        Pending, Rule, GroupInfo,
    ]),
    (Op::AddUsers, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        NoLeaf, Signature, Sender, OriginF,
        Epoch, MlsSig,
        Pending, Rule, Welcome, GroupInfo,
    ]),
    (Op::AddClients, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        NoLeaf, Signature, Sender, OriginF,
        Epoch, MlsSig,
        Pending, Rule, Welcome, GroupInfo,
    ]),
    (Op::RemoveUsers, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        NoLeaf, Signature, Sender, OriginF,
        Epoch, MlsSig,
        Pending, Rule, GroupInfo,
    ]),
    (Op::RemoveClients, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        NoLeaf, Signature, Sender, OriginF,
        Epoch, MlsSig,
        Pending, Rule, GroupInfo,
    ]),
    (Op::DeleteGroup, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        NoLeaf, Signature, Sender, OriginF,
        Epoch, MlsSig,
        Pending, Rule, GroupInfo,
    ]),
    (Op::SelfRemoveClient, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        NoLeaf, Signature, Sender, OriginF,
        Epoch, MlsSig,
        Rule,
    ]),
    // The MLS sender of a PrivateMessage is encrypted: no `Sender`.
    (Op::SendMessage, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        NoLeaf, Signature, OriginF,
        Epoch,
    ]),
    // The joiner's key is known only from the commit: signature and origin
    // right after the MLS validation.
    (Op::ExternalJoin, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        Epoch, MlsSig,
        Sender, Signature, OriginF,
        Rule, GroupInfo,
    ]),
    // So is the creator's; `sender_index` 0 is checked before, like
    // 0xFFFFFFFF for welcome information. The hub serves other providers
    // no new groups, and says so before it looks at the reservation.
    (Op::CreateGroup, &[
        Version, Endpoint, AuthType, Recipient,
        Foreign, UnknownGroup,
        Sender,
        MlsSig,
        Signature, OriginF,
        GroupInfo,
    ]),
    (Op::RequestGroupId, &[
        Version, Endpoint, AuthType,
        Foreign,
    ]),
    (Op::WelcomeInformation, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        Sender, NoSnapshot, NotAdded, Signature, OriginF,
    ]),
    (Op::ExternalCommitInformation, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        OriginF,
        Rule,
    ]),
    // After step 4 always `UnsupportedOperation`.
    (Op::ReInitializeGroup, &[
        Version, Endpoint, AuthType, Recipient, UnknownGroup,
        NoLeaf, Signature, OriginF,
        Epoch, MlsSig,
    ]),
];

/// Operations sharing one group: only the last may change it when accepted.
const STAGES: &[&[Op]] = &[
    &[Op::UpdateClient],
    &[Op::UpdateClientLarge],
    &[Op::AddUsers],
    &[Op::AddClients],
    &[Op::RemoveUsers],
    &[Op::RemoveClients],
    &[Op::DeleteGroup],
    &[
        Op::SendMessage,
        Op::WelcomeInformation,
        Op::ExternalCommitInformation,
        Op::ReInitializeGroup,
        Op::SelfRemoveClient,
    ],
    &[Op::ExternalJoin],
    &[Op::RequestGroupId, Op::CreateGroup],
];

/// The member commits that have a `Pending` fault: their requests with it
/// are built in one group with a pending self-remove of Carol's.
const WITH_PENDING: [Op; 7] = [
    Op::UpdateClient,
    Op::UpdateClientLarge,
    Op::AddUsers,
    Op::AddClients,
    Op::RemoveUsers,
    Op::RemoveClients,
    Op::DeleteGroup,
];

/// The epoch of every scene's group (after Bob's laptop is added).
const EPOCH: u64 = 2;

const LAPTOP: &str = "mimi://b.example/d/bob/laptop";
const BOB_TABLET: &str = "mimi://b.example/d/bob/tablet";
const CAROL_PHONE: &str = "mimi://c.example/d/carol/phone";
const DAVE: &str = "mimi://b.example/d/dave/desk";
const ERIN: &str = "mimi://c.example/d/erin/phone";
const ALICE_DESK: &str = "mimi://a.example/d/alice/desk";
const MALLORY: &str = "mimi://b.example/d/mallory/desk";

/// Positions of the scene's members in `Stage::clients`.
const AT_ALICE: usize = 0;
const AT_BOB: usize = 1;
const AT_CAROL: usize = 2;
const AT_LAPTOP: usize = 3;

/// The error a fault must give.
#[derive(Clone, Copy, Debug)]
enum Want {
    UnsupportedVersion,
    WrongEndpoint,
    Malformed(&'static str),
    WrongRecipient,
    UnknownGroup,
    Unsupported,
    ClientSignature(&'static str),
    NotAllowed(&'static str),
    InvalidMls(&'static str),
    WrongEpoch,
    MissingPending,
    MissingWelcome,
    InvalidGroupInfo(&'static str),
    NoWelcome(u64),
}

impl Want {
    /// Whether `e` is this error; `exact` compares the message (a part of
    /// it) or detail too.
    fn matches(self, e: &HubError, exact: bool) -> bool {
        let text = |needle: &str, s: &str| !exact || s.contains(needle);
        match (self, e) {
            (Want::UnsupportedVersion, HubError::UnsupportedVersion(v)) => !exact || *v == 2,
            (Want::WrongEndpoint, HubError::WrongEndpoint(_)) => true,
            (Want::Malformed(n), HubError::Malformed(s)) => text(n, s),
            (Want::WrongRecipient, HubError::WrongRecipient(_)) => true,
            (Want::UnknownGroup, HubError::UnknownGroup) => true,
            (Want::Unsupported, HubError::UnsupportedOperation(_)) => true,
            (Want::ClientSignature(n), HubError::ClientSignature(s)) => text(n, s),
            (Want::NotAllowed(n), HubError::NotAllowed(s)) => text(n, s),
            (Want::InvalidMls(n), HubError::InvalidMls(s)) => text(n, s),
            (Want::WrongEpoch, HubError::WrongEpoch { current }) => !exact || *current == EPOCH,
            (Want::MissingPending, HubError::MissingPendingProposals(_)) => true,
            (Want::MissingWelcome, HubError::MissingWelcome(_)) => true,
            (Want::InvalidGroupInfo(n), HubError::InvalidGroupInfo(s)) => text(n, s),
            (Want::NoWelcome(a), HubError::NoWelcomeInformation(b)) => !exact || a == *b,
            _ => false,
        }
    }
}

/// The error `fault` gives in a request of `op`.
fn want(op: Op, fault: Fault) -> Want {
    let before_group = matches!(
        fault,
        Version | Endpoint | AuthType | Recipient | UnknownGroup
    );
    if op == Op::ReInitializeGroup && !before_group {
        return Want::Unsupported;
    }
    match fault {
        Version => Want::UnsupportedVersion,
        Endpoint => Want::WrongEndpoint,
        AuthType if op.anonymous() => Want::Malformed("auth_type must be anonymous"),
        AuthType => Want::ClientSignature("needs a client signature"),
        Recipient => Want::WrongRecipient,
        UnknownGroup if op == Op::CreateGroup => Want::NotAllowed("was not issued by this hub"),
        UnknownGroup => Want::UnknownGroup,
        Foreign => Want::NotAllowed("its own clients"),
        NoLeaf => Want::ClientSignature("no member at leaf 9"),
        Signature => Want::ClientSignature("does not verify"),
        Sender => Want::ClientSignature(match op {
            Op::ExternalJoin => "is not the leaf the joiner lands in",
            Op::CreateGroup => "the creator is leaf 0",
            Op::WelcomeInformation => "0xFFFFFFFF",
            _ => "is not the message's sender",
        }),
        OriginF if op == Op::WelcomeInformation => {
            Want::NotAllowed("may not fetch welcome information")
        }
        OriginF => Want::NotAllowed("may not act for"),
        Epoch => Want::WrongEpoch,
        MlsSig if op == Op::CreateGroup => Want::InvalidGroupInfo("InvalidNodeSignature"),
        MlsSig => Want::InvalidMls("InvalidSignature"),
        Pending => Want::MissingPending,
        Rule => Want::NotAllowed(match op {
            Op::UpdateClient | Op::UpdateClientLarge => "may only carry no proposals by value",
            Op::AddUsers => "is already in the group: use add_clients",
            Op::AddClients => "may add only clients of its own user",
            Op::RemoveUsers => "would keep",
            Op::RemoveClients => "is not a client of",
            Op::DeleteGroup => "must remove every member but the committer",
            Op::SelfRemoveClient => "removes only its sender",
            Op::ExternalJoin | Op::ExternalCommitInformation => "has no client in the group",
            other => panic!("no rule fault for {}", other.name()),
        }),
        Welcome => Want::MissingWelcome,
        GroupInfo if op == Op::CreateGroup => Want::InvalidGroupInfo("another group id"),
        GroupInfo => Want::InvalidGroupInfo("does not verify with the committer's key"),
        NoSnapshot => Want::NoWelcome(0),
        NotAdded => Want::NoWelcome(EPOCH),
    }
}

/// The table as the module documentation shows it.
fn render_table() -> String {
    let mut out = format!("//! {:<28}", "operation");
    for f in Fault::ALL {
        out.push_str(&format!(" {:>3}", f.short()));
    }
    out.push('\n');
    for (op, faults) in TABLE {
        out.push_str(&format!("//! {:<28}", op.name()));
        for f in Fault::ALL {
            match faults.iter().position(|g| *g == f) {
                Some(i) => out.push_str(&format!(" {:>3}", i + 1)),
                None => out.push_str("   ."),
            }
        }
        out.push('\n');
    }
    out
}

/// A request of an operation, before any fault but those built in.
#[derive(Clone)]
struct Signed {
    body: DSRequestBody,
    /// The signing client (position in `Stage::clients`) and its
    /// `sender_index`; `None` for an anonymous request.
    signer: Option<(usize, u32)>,
    /// The provider the request acts for.
    domain: String,
    /// The origin, when it is not `domain`'s.
    origin: Option<Origin>,
}

struct Material {
    endpoint: DsEndpoint,
    /// Per subset of the operation's `built_in` faults (in their order).
    variants: Vec<(Vec<Fault>, Signed)>,
    /// With `Sender`: another client signing as the given leaf, or (None)
    /// the same signer with the given `sender_index`.
    sender: Option<(Option<usize>, u32)>,
}

/// Where a request goes.
#[derive(Clone, Copy)]
enum To {
    Stage,
    /// The hub of b.example.
    Elsewhere,
    /// A hub of a.example without the group.
    Empty,
}

struct Built {
    endpoint: DsEndpoint,
    request: DSRequest,
    origin: Origin,
    to: To,
}

/// The hubs a request can go to besides the stage's.
struct Others<B: Backend> {
    elsewhere: B,
    empty: B,
}

/// One group and everything its requests are made from.
struct Stage<B: Backend> {
    hub: B,
    group_id: GroupId,
    /// Alice, Bob, Carol and Bob's laptop (at `AT_*`), then clients made
    /// for the materials.
    clients: Vec<MimiClient>,
    materials: HashMap<Op, Material>,
    /// The KeyPackage Bob's laptop was added with, in epoch 2.
    laptop_kp: Option<KeyPackage>,
}

fn domain_of(c: &MimiClient) -> String {
    c.id().domain().to_string()
}

/// The origin of a request acting for `domain`.
fn acting(domain: &str) -> Origin {
    if domain == "a.example" {
        Origin::Local
    } else {
        provider(domain)
    }
}

/// An origin that does not act for `domain`.
fn not_acting(domain: &str) -> Origin {
    provider(if domain == "c.example" {
        "b.example"
    } else {
        "c.example"
    })
}

fn update_of(c: &mut MimiClient, g: &GroupId) -> MLSGroupUpdate {
    let DSRequestBody::UpdateClient(u) = c.update(g).unwrap().request_body else {
        unreachable!()
    };
    c.clear_pending_commit(g).unwrap();
    u.group_update
}

fn add_of(c: &mut MimiClient, g: &GroupId, kp: KeyPackage, clients: bool) -> DSRequestBody {
    let body = c.add(g, &[kp], clients).unwrap().request_body;
    c.clear_pending_commit(g).unwrap();
    body
}

fn remove_of(c: &mut MimiClient, g: &GroupId, leaves: &[u32]) -> MLSGroupUpdate {
    let (update, _) = c.remove(g, leaves).unwrap();
    c.clear_pending_commit(g).unwrap();
    update
}

fn key_package(id: &str) -> KeyPackage {
    client(id).key_package(false, false).unwrap()
}

/// The offset of `epoch` in an `MLSMessage` holding a PublicMessage or a
/// PrivateMessage: after version, wire_format and `group_id<V>`.
fn epoch_at(bytes: &[u8]) -> usize {
    let b = &bytes[4..];
    let (len, head) = match b[0] >> 6 {
        0 => (usize::from(b[0] & 0x3f), 1),
        1 => ((usize::from(b[0] & 0x3f) << 8) | usize::from(b[1]), 2),
        _ => panic!("group_id longer than a test's"),
    };
    4 + head + len
}

/// `m` with its bytes edited; it must still decode.
fn edited<K: MlsKind>(m: &Mls<K>, edit: impl FnOnce(&mut Vec<u8>)) -> Mls<K> {
    let mut bytes = m.as_bytes().to_vec();
    edit(&mut bytes);
    Mls::from_bytes(&bytes).expect("the edited message still decodes")
}

/// `m` for the previous epoch.
fn stale<K: MlsKind>(m: &Mls<K>) -> Mls<K> {
    edited(m, |b| {
        let at = epoch_at(b);
        assert_eq!(b[at..at + 8], EPOCH.to_be_bytes(), "epoch found");
        b[at..at + 8].copy_from_slice(&(EPOCH - 1).to_be_bytes());
    })
}

/// `m` with a bit of its FramedContent signature flipped: the signature
/// comes before the confirmation tag (commits) and the membership tag
/// (member senders), each a 32-byte `opaque<V>`.
fn bad_framed_signature(m: &PublicMessage) -> PublicMessage {
    let MlsMessageBodyIn::PublicMessage(p) = m.parsed() else {
        unreachable!()
    };
    let tags = usize::from(p.content_type() == ContentType::Commit)
        + usize::from(matches!(p.sender(), openmls::prelude::Sender::Member(_)));
    edited(m, |b| {
        let end = b.len() - 33 * tags;
        for t in 0..tags {
            assert_eq!(b[end + 33 * t], 0x20, "a 32-byte tag");
        }
        assert_eq!(b[end - 65], 0x40, "a 64-byte signature");
        b[end - 64 + 40] ^= 1;
    })
}

fn group_update(body: &mut DSRequestBody) -> Option<&mut MLSGroupUpdate> {
    match body {
        DSRequestBody::DeleteGroup(r) => Some(&mut r.group_update),
        DSRequestBody::AddUsers(r) => Some(&mut r.group_update),
        DSRequestBody::RemoveUsers(r) => Some(&mut r.group_update),
        DSRequestBody::AddClients(r) => Some(&mut r.group_update),
        DSRequestBody::RemoveClients(r) => Some(&mut r.group_update),
        DSRequestBody::UpdateClient(r) => Some(&mut r.group_update),
        DSRequestBody::ExternalJoin(r) => Some(&mut r.group_update),
        DSRequestBody::ReInitializeGroup(r) => Some(&mut r.commit),
        _ => None,
    }
}

fn welcomes(body: &mut DSRequestBody) -> Option<&mut Vec<WelcomeMessage>> {
    match body {
        DSRequestBody::AddUsers(r) => Some(&mut r.welcome_messages),
        DSRequestBody::AddClients(r) => Some(&mut r.welcome_messages),
        _ => None,
    }
}

impl<B: Backend> Stage<B> {
    /// The conversation of `World::new` with Bob's laptop added too (so
    /// that Bob has two clients and epoch 2 a joiner snapshot); with
    /// `pending`, Carol's self-remove is pending, unseen by the others.
    fn scene(pending: bool) -> Self {
        let mut w = World::<B>::new();
        let g = w.group_id.clone();
        let mut laptop = client(LAPTOP);
        let kp = laptop.key_package(false, false).unwrap();
        let add = w.bob.add(&g, std::slice::from_ref(&kp), true).unwrap();
        let outcome = w.hub.op(&add, provider("b.example")).expect("laptop");
        w.bob.merge_pending_commit(&g).unwrap();
        w.deliver(&outcome, &[ALICE, CAROL]);
        let ask = laptop.welcome_information_request(&g, EPOCH, &kp).unwrap();
        let info = w
            .hub
            .call(DsEndpoint::WelcomeInformation, &ask, provider("b.example"))
            .expect("welcome information");
        let DSResponseBody::WelcomeInfo(tree) = info.response else {
            panic!("no tree")
        };
        laptop
            .join(&outcome.welcome_for(LAPTOP).expect("welcome"), &tree)
            .unwrap();
        assert_eq!(w.hub.group(&g).epoch(), EPOCH);
        w.assert_in_sync(&[ALICE, BOB, CAROL]);
        if pending {
            w.hub
                .op(&w.carol.self_remove(&g).unwrap(), provider("c.example"))
                .expect("self remove");
        }
        let World {
            hub,
            group_id,
            alice,
            bob,
            carol,
        } = w;
        Stage {
            hub,
            group_id,
            clients: vec![alice, bob, carol, laptop],
            materials: HashMap::new(),
            laptop_kp: Some(kp),
        }
    }

    /// A hub of a.example without groups.
    fn bare() -> Self {
        Stage {
            hub: B::new("a.example"),
            group_id: GroupId {
                hub_domain: "a.example".parse().unwrap(),
                local_id: [0; 16],
            },
            clients: Vec::new(),
            materials: HashMap::new(),
            laptop_kp: None,
        }
    }

    fn leaf(&mut self, id: &str) -> u32 {
        self.hub
            .group(&self.group_id)
            .members()
            .iter()
            .find(|m| m.client.as_str() == id)
            .map(|m| m.leaf_index)
            .unwrap_or_else(|| panic!("{id} is not a member"))
    }

    fn add_client(&mut self, c: MimiClient) -> usize {
        self.clients.push(c);
        self.clients.len() - 1
    }

    /// A request signed by the member at `at`, as its own leaf.
    fn by_member(&mut self, at: usize, body: DSRequestBody) -> Signed {
        let id = self.clients[at].id().to_string();
        let leaf = self.leaf(&id);
        Signed {
            body,
            signer: Some((at, leaf)),
            domain: domain_of(&self.clients[at]),
            origin: None,
        }
    }

    /// Builds what the requests of `ops` are made of.
    fn prepare(&mut self, ops: &[Op]) {
        for &op in ops {
            let material = self.material(op);
            self.materials.insert(op, material);
        }
    }

    /// A member's commit: the committer, the valid body, and a body that
    /// breaks the operation's rule.
    fn member_commit(&mut self, op: Op) -> (usize, DSRequestBody, DSRequestBody) {
        let g = self.group_id.clone();
        let [bob, carol, laptop] = [BOB, CAROL, LAPTOP].map(|id| self.leaf(id));
        let cs = &mut self.clients;
        match op {
            Op::UpdateClient => (
                AT_BOB,
                DSRequestBody::UpdateClient(UpdateClientRequest {
                    group_update: update_of(&mut cs[AT_BOB], &g),
                }),
                // A Remove by value.
                DSRequestBody::UpdateClient(UpdateClientRequest {
                    group_update: remove_of(&mut cs[AT_BOB], &g, &[laptop]),
                }),
            ),
            Op::UpdateClientLarge => {
                let aad = vec![0x2a; 17 * 1024];
                cs[AT_BOB].set_authenticated_data(&g, &aad).unwrap();
                let valid = update_of(&mut cs[AT_BOB], &g);
                cs[AT_BOB].set_authenticated_data(&g, &aad).unwrap();
                let rule = remove_of(&mut cs[AT_BOB], &g, &[laptop]);
                for u in [&valid, &rule] {
                    assert!(u.commit.as_bytes().len() > 17 * 1024);
                }
                (
                    AT_BOB,
                    DSRequestBody::UpdateClient(UpdateClientRequest {
                        group_update: valid,
                    }),
                    DSRequestBody::UpdateClient(UpdateClientRequest { group_update: rule }),
                )
            }
            Op::AddUsers => (
                AT_ALICE,
                add_of(&mut cs[AT_ALICE], &g, key_package(DAVE), false),
                // Carol is in the group already.
                add_of(&mut cs[AT_ALICE], &g, key_package(CAROL_PHONE), false),
            ),
            Op::AddClients => (
                AT_BOB,
                add_of(&mut cs[AT_BOB], &g, key_package(BOB_TABLET), true),
                // Dave is another user.
                add_of(&mut cs[AT_BOB], &g, key_package(DAVE), true),
            ),
            Op::RemoveUsers => (
                AT_ALICE,
                DSRequestBody::RemoveUsers(RemoveUsersRequest {
                    group_update: remove_of(&mut cs[AT_ALICE], &g, &[carol]),
                }),
                // Bob would keep his laptop.
                DSRequestBody::RemoveUsers(RemoveUsersRequest {
                    group_update: remove_of(&mut cs[AT_ALICE], &g, &[bob]),
                }),
            ),
            Op::RemoveClients => (
                AT_BOB,
                DSRequestBody::RemoveClients(RemoveClientsRequest {
                    group_update: remove_of(&mut cs[AT_BOB], &g, &[laptop]),
                }),
                // Carol is not one of Bob's clients.
                DSRequestBody::RemoveClients(RemoveClientsRequest {
                    group_update: remove_of(&mut cs[AT_BOB], &g, &[carol]),
                }),
            ),
            Op::DeleteGroup => (
                AT_ALICE,
                DSRequestBody::DeleteGroup(DeleteGroupRequest {
                    group_update: remove_of(&mut cs[AT_ALICE], &g, &[bob, carol, laptop]),
                }),
                // Carol would stay.
                DSRequestBody::DeleteGroup(DeleteGroupRequest {
                    group_update: remove_of(&mut cs[AT_ALICE], &g, &[bob, laptop]),
                }),
            ),
            other => panic!("{} is not a member's commit", other.name()),
        }
    }

    fn material(&mut self, op: Op) -> Material {
        let g = self.group_id.clone();
        let group_op = DsEndpoint::GroupOperation;
        if WITH_PENDING.contains(&op) {
            let (at, valid, rule) = self.member_commit(op);
            // The other one of Alice and Bob signs as its own leaf.
            let other = if at == AT_ALICE { AT_BOB } else { AT_ALICE };
            let other_id = self.clients[other].id().to_string();
            let other_leaf = self.leaf(&other_id);
            return Material {
                endpoint: group_op,
                variants: vec![
                    (vec![], self.by_member(at, valid)),
                    (vec![Rule], self.by_member(at, rule)),
                ],
                sender: Some((Some(other), other_leaf)),
            };
        }
        match op {
            Op::SelfRemoveClient => {
                let bob = self.leaf(BOB);
                let valid = self.clients[AT_CAROL].self_remove(&g).unwrap();
                // A Remove of Bob's leaf, framed as a self-remove.
                let rule = self.clients[AT_CAROL].propose_remove(&g, bob).unwrap();
                Material {
                    endpoint: group_op,
                    variants: vec![
                        (vec![], self.by_member(AT_CAROL, valid.request_body)),
                        (vec![Rule], self.by_member(AT_CAROL, rule.request_body)),
                    ],
                    sender: Some((Some(AT_BOB), bob)),
                }
            }
            Op::SendMessage => {
                let body = self.clients[AT_BOB]
                    .send_message(&g, b"hello")
                    .unwrap()
                    .request_body;
                Material {
                    endpoint: group_op,
                    variants: vec![(vec![], self.by_member(AT_BOB, body))],
                    sender: None,
                }
            }
            Op::ReInitializeGroup => {
                let body = DSRequestBody::ReInitializeGroup(ReInitializeGroupRequest {
                    commit: update_of(&mut self.clients[AT_BOB], &g),
                });
                Material {
                    endpoint: group_op,
                    variants: vec![(vec![], self.by_member(AT_BOB, body))],
                    sender: None,
                }
            }
            Op::WelcomeInformation => {
                // Bob's laptop asks for the tree of the epoch it was added in.
                let kp = self.laptop_kp.as_ref().expect("a scene");
                let body = self.clients[AT_LAPTOP]
                    .welcome_information_request(&g, EPOCH, kp)
                    .unwrap()
                    .request_body;
                Material {
                    endpoint: DsEndpoint::WelcomeInformation,
                    variants: vec![(
                        vec![],
                        Signed {
                            body,
                            signer: Some((AT_LAPTOP, u32::MAX)),
                            domain: "b.example".into(),
                            origin: None,
                        },
                    )],
                    // Its leaf instead of 0xFFFFFFFF.
                    sender: Some((None, 3)),
                }
            }
            Op::ExternalCommitInformation => {
                let eci = |requester: &str| Signed {
                    body: DSRequestBody::ExternalCommitInformation(
                        ExternalCommitInformationRequest {
                            group_id: GroupIdField(g.clone()),
                            requester: requester.parse().unwrap(),
                        },
                    ),
                    signer: None,
                    domain: requester.parse::<ClientId>().unwrap().domain().to_string(),
                    origin: None,
                };
                Material {
                    endpoint: DsEndpoint::ExternalCommitInformation,
                    // Erin's user has no client in the group.
                    variants: vec![(vec![], eci(CAROL_PHONE)), (vec![Rule], eci(ERIN))],
                    sender: None,
                }
            }
            Op::ExternalJoin => {
                let ask = DSRequest {
                    version: 1,
                    request_body: DSRequestBody::ExternalCommitInformation(
                        ExternalCommitInformationRequest {
                            group_id: GroupIdField(g.clone()),
                            requester: CAROL_PHONE.parse().unwrap(),
                        },
                    ),
                    authentication_data: DSAuthData::Anonymous,
                };
                let info = self
                    .hub
                    .call(
                        DsEndpoint::ExternalCommitInformation,
                        &ask,
                        provider("c.example"),
                    )
                    .expect("external commit information");
                let DSResponseBody::ExternalCommitInfo(info) = info.response else {
                    panic!("no external commit information")
                };
                // Carol's new phone joins; Dave's user has no client in the group.
                let mut join = |id: &str| {
                    let mut joiner = client(id);
                    let request = joiner.external_join(&info).unwrap();
                    let DSAuthData::ClientSignature(sig) = &request.authentication_data else {
                        unreachable!()
                    };
                    let index = sig.sender_index;
                    let domain = domain_of(&joiner);
                    let at = self.add_client(joiner);
                    Signed {
                        body: request.request_body,
                        signer: Some((at, index)),
                        domain,
                        origin: None,
                    }
                };
                let valid = join(CAROL_PHONE);
                let rule = join(DAVE);
                Material {
                    endpoint: group_op,
                    variants: vec![(vec![], valid), (vec![Rule], rule)],
                    // Not the leaf the joiner lands in.
                    sender: Some((None, 0)),
                }
            }
            Op::RequestGroupId => Material {
                endpoint: group_op,
                variants: vec![(
                    vec![],
                    Signed {
                        body: DSRequestBody::RequestGroupId,
                        signer: None,
                        domain: "a.example".into(),
                        origin: None,
                    },
                )],
                sender: None,
            },
            Op::CreateGroup => {
                // The id the hub reserved; another one for a GroupInfo of
                // another group.
                let reserved = g.clone();
                let other = GroupId {
                    hub_domain: "a.example".parse().unwrap(),
                    local_id: [0x77; 16],
                };
                let mut variants = Vec::new();
                for (faults, creator, gid) in [
                    (vec![], ALICE_DESK, &reserved),
                    // A creator the hub's clients may not act for.
                    (vec![OriginF], MALLORY, &reserved),
                    (vec![GroupInfo], ALICE_DESK, &other),
                    (vec![OriginF, GroupInfo], MALLORY, &other),
                ] {
                    let mut c = client(creator);
                    let DSRequestBody::CreateGroup(mut body) = c
                        .create_group(gid, GroupKind::Regular)
                        .unwrap()
                        .request_body
                    else {
                        unreachable!()
                    };
                    body.group_id = GroupIdField(reserved.clone());
                    let domain = domain_of(&c);
                    let at = self.add_client(c);
                    variants.push((
                        faults,
                        Signed {
                            body: DSRequestBody::CreateGroup(body),
                            signer: Some((at, 0)),
                            domain,
                            // The hub's own clients ask.
                            origin: Some(Origin::Local),
                        },
                    ));
                }
                Material {
                    endpoint: group_op,
                    variants,
                    sender: Some((None, 1)),
                }
            }
            _ => unreachable!("member commits are built above"),
        }
    }

    /// The request of `op` with `faults`.
    fn assemble(&self, op: Op, faults: &[Fault]) -> Built {
        let has = |f: Fault| faults.contains(&f);
        let m = &self.materials[&op];
        let key: Vec<Fault> = op.built_in().iter().copied().filter(|f| has(*f)).collect();
        let signed = &m
            .variants
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("{} has no variant {key:?}", op.name()))
            .1;
        let mut body = signed.body.clone();
        self.edit(&mut body, faults);

        let (mut signer, mut domain) = (signed.signer, signed.domain.clone());
        if has(Sender) {
            match m.sender {
                Some((Some(other), leaf)) => {
                    signer = Some((other, leaf));
                    domain = domain_of(&self.clients[other]);
                }
                Some((None, index)) => signer = signer.map(|(at, _)| (at, index)),
                None => panic!("{} has no Sender fault", op.name()),
            }
        }
        if has(NoLeaf) {
            signer = signer.map(|(at, _)| (at, 9));
        }
        let mut request = match signer {
            Some((at, index)) => self.clients[at].sign_request(body, index).unwrap(),
            None => DSRequest {
                version: 1,
                request_body: body,
                authentication_data: DSAuthData::Anonymous,
            },
        };
        if has(Signature)
            && let DSAuthData::ClientSignature(sig) = &mut request.authentication_data
        {
            sig.signature.0[40] ^= 1;
        }
        if has(AuthType) {
            request.authentication_data = match request.authentication_data {
                DSAuthData::Anonymous => DSAuthData::ClientSignature(mimid_wire::ClientSignature {
                    sender_index: 0,
                    signature: ShortBytes(vec![0; 64]),
                }),
                DSAuthData::ClientSignature(_) => DSAuthData::Anonymous,
            };
        }
        if has(Version) {
            request.version = 2;
        }
        let origin = if has(Foreign) {
            provider("b.example")
        } else if let Some(origin) = &signed.origin {
            origin.clone()
        } else if has(OriginF) {
            not_acting(&domain)
        } else {
            acting(&domain)
        };
        let endpoint = match (has(Endpoint), m.endpoint) {
            (false, e) => e,
            (true, DsEndpoint::GroupOperation) => DsEndpoint::WelcomeInformation,
            (true, _) => DsEndpoint::GroupOperation,
        };
        let to = if has(Recipient) {
            To::Elsewhere
        } else if has(UnknownGroup) {
            To::Empty
        } else {
            To::Stage
        };
        Built {
            endpoint,
            request,
            origin,
            to,
        }
    }

    /// The faults that edit the body.
    fn edit(&self, body: &mut DSRequestBody, faults: &[Fault]) {
        let has = |f: Fault| faults.contains(&f);
        if has(Epoch) {
            match &mut *body {
                DSRequestBody::SelfRemoveClient(p) => p.proposal = stale(&p.proposal),
                DSRequestBody::SendMessage(m) => {
                    m.application_message = stale(&m.application_message)
                }
                other => {
                    let u = group_update(other).expect("a commit");
                    u.commit = stale(&u.commit);
                }
            }
        }
        if has(MlsSig) {
            match &mut *body {
                DSRequestBody::SelfRemoveClient(p) => {
                    p.proposal = bad_framed_signature(&p.proposal)
                }
                DSRequestBody::CreateGroup(c) => {
                    // A LeafNode ends with its signature<V>.
                    c.leaf_node = edited(&c.leaf_node, |b| {
                        let start = b.len() - 64;
                        assert_eq!(b[start - 1], 0x40, "a 64-byte signature");
                        b[start + 40] ^= 1;
                    });
                }
                other => {
                    let u = group_update(other).expect("a commit");
                    u.commit = bad_framed_signature(&u.commit);
                }
            }
        }
        if has(GroupInfo)
            && let Some(u) = group_update(body)
        {
            u.partial_group_info.signature.0[40] ^= 1;
        }
        if has(Welcome) {
            welcomes(body).expect("welcomes").clear();
        }
        if let DSRequestBody::WelcomeInformation(w) = body {
            if has(NoSnapshot) {
                w.epoch = 0;
            }
            if has(NotAdded) {
                w.key_package_ref = Bytes(vec![0x55; w.key_package_ref.0.len()]);
            }
        }
    }
}

/// What the checks found.
#[derive(Default)]
struct Report {
    singles: usize,
    pairs: usize,
    failures: Vec<String>,
}

fn show(result: &Result<Effects, HubError>) -> String {
    match result {
        Ok(_) => "accepted".into(),
        Err(e) => format!("{e:?}"),
    }
}

impl<B: Backend> Stage<B> {
    /// Sends the request of `op` with `faults`.
    fn fire(
        &mut self,
        others: &mut Others<B>,
        op: Op,
        faults: &[Fault],
    ) -> Result<Effects, HubError> {
        let built = self.assemble(op, faults);
        let hub = match built.to {
            To::Stage => &mut self.hub,
            To::Elsewhere => &mut others.elsewhere,
            To::Empty => &mut others.empty,
        };
        hub.call(built.endpoint, &built.request, built.origin)
    }
}

/// Everything the refusals of one operation must leave unchanged.
fn fingerprints<B: Backend>(
    stage: &mut Stage<B>,
    pending: &mut Stage<B>,
    others: &mut Others<B>,
) -> [String; 4] {
    let g = stage.group_id.clone();
    [
        stage.hub.fingerprint(&g),
        pending.hub.fingerprint(&pending.group_id),
        others.elsewhere.fingerprint(&g),
        others.empty.fingerprint(&g),
    ]
}

fn faults_of(op: Op) -> &'static [Fault] {
    TABLE
        .iter()
        .find(|(o, _)| *o == op)
        .map(|(_, f)| *f)
        .expect("in the table")
}

/// Every fault of `op` alone, every pair, then the valid request (last:
/// it may change the group). Returns what the valid request did.
fn check_op<B: Backend>(
    stage: &mut Stage<B>,
    pending: &mut Stage<B>,
    others: &mut Others<B>,
    op: Op,
    report: &mut Report,
) -> Option<Effects> {
    let faults = faults_of(op);
    // Refusals change nothing: one group serves them all. Checked once
    // for all of them (checking each costs more than the requests).
    let before = fingerprints(stage, pending, others);
    let mut fire = |fs: &[Fault]| {
        let s = if fs.contains(&Pending) {
            &mut *pending
        } else {
            &mut *stage
        };
        s.fire(others, op, fs)
    };
    for &f in faults {
        let result = fire(&[f]);
        report.singles += 1;
        let w = want(op, f);
        if !matches!(&result, Err(e) if w.matches(e, true)) {
            report.failures.push(format!(
                "{}: {f:?} alone: expected {w:?}, got {}",
                op.name(),
                show(&result)
            ));
        }
    }
    for (i, &a) in faults.iter().enumerate() {
        for &b in &faults[i + 1..] {
            let result = fire(&[a, b]);
            report.pairs += 1;
            let w = want(op, a);
            if !matches!(&result, Err(e) if w.matches(e, !a.unordered_with(b))) {
                report.failures.push(format!(
                    "{}: ({a:?}, {b:?}): expected {w:?} of {a:?}, got {}",
                    op.name(),
                    show(&result)
                ));
            }
        }
    }
    if fingerprints(stage, pending, others) != before {
        report
            .failures
            .push(format!("{}: a refused request changed a hub", op.name()));
    }
    let result = stage.fire(others, op, &[]);
    match (op, result) {
        (Op::ReInitializeGroup, Err(HubError::UnsupportedOperation(_))) => None,
        (Op::ReInitializeGroup, other) => {
            report.failures.push(format!(
                "{}: expected UnsupportedOperation, got {}",
                op.name(),
                show(&other)
            ));
            None
        }
        (_, Ok(effects)) => Some(effects),
        (_, Err(e)) => {
            report.failures.push(format!(
                "{}: the valid request was refused: {e:?}",
                op.name()
            ));
            None
        }
    }
}

fn errors_come_in_the_documented_order<B: Backend>() {
    let start = Instant::now();
    let mut others = Others {
        elsewhere: B::new("b.example"),
        empty: B::new("a.example"),
    };
    let mut report = Report::default();
    let mut pending = Stage::<B>::scene(true);
    pending.prepare(&WITH_PENDING);
    for ops in STAGES {
        let at = Instant::now();
        if ops[0] == Op::RequestGroupId {
            let mut stage = Stage::<B>::bare();
            stage.prepare(&[Op::RequestGroupId]);
            let reserved = check_op(
                &mut stage,
                &mut pending,
                &mut others,
                Op::RequestGroupId,
                &mut report,
            );
            let Some(DSResponseBody::GroupId(GroupIdField(g))) = reserved.map(|e| e.response)
            else {
                panic!("no group id: {:#?}", report.failures)
            };
            stage.group_id = g;
            stage.prepare(&[Op::CreateGroup]);
            check_op(
                &mut stage,
                &mut pending,
                &mut others,
                Op::CreateGroup,
                &mut report,
            );
        } else {
            let mut stage = Stage::<B>::scene(false);
            stage.prepare(ops);
            for &op in *ops {
                check_op(&mut stage, &mut pending, &mut others, op, &mut report);
            }
        }
        let names: Vec<_> = ops.iter().map(|op| op.name()).collect();
        println!("{names:?}: {:.1?}", at.elapsed());
    }
    println!("{}", render_table());
    println!(
        "{} single faults, {} pairs in {:.1?}",
        report.singles,
        report.pairs,
        start.elapsed()
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} checks gave the wrong answer:\n{}",
        report.failures.len(),
        report.singles + report.pairs,
        report.failures.join("\n")
    );
}

on_both_backends!(errors_come_in_the_documented_order);

/// The table in the module documentation is the one the test runs.
#[test]
fn documentation_shows_the_tested_table() {
    let rendered = render_table();
    assert!(
        include_str!("order.rs").contains(&rendered),
        "update the module documentation:\n{rendered}"
    );
}
