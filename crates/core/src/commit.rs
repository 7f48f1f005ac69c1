//! The path every committing operation shares: authenticate, validate with
//! OpenMLS' public group view, check the operation's rules, rebuild and
//! verify the GroupInfo, check the Welcomes, compute the fan-out, merge.

use std::collections::BTreeMap;

use mimid_wire::{DSResponseBody, MLSGroupUpdate, WelcomeMessage};
use openmls::prelude::{
    ContentType, KeyPackageRef, MlsMessageBodyIn, ProcessedMessageContent, ProposalOrRefType,
    ProtocolMessage, Sender, SignContent, StagedCommit, tls_codec::Serialize as _,
};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::auth;
use crate::error::{HubError, internal, invalid};
use crate::fanout;
use crate::state::{AddedClient, HubGroup, JoinerSnapshot, client_of_credential};
use crate::step::{DeliveryKind, Outcome, Req, Write, encode};

/// A validated, not yet merged commit.
pub(crate) struct Staged {
    pub staged: StagedCommit,
    /// The committer's leaf (for an external commit: where the joiner lands).
    pub committer: u32,
    pub external: bool,
    /// The commit's confirmation tag, for the GroupInfo of the new epoch.
    confirmation_tag: openmls::prelude::ConfirmationTag,
}

impl Staged {
    /// By-value proposals of the commit.
    pub fn by_value(&self) -> impl Iterator<Item = &openmls::prelude::Proposal> {
        self.staged
            .queued_proposals()
            .filter(|p| p.proposal_or_ref_type() == ProposalOrRefType::Proposal)
            .map(|p| p.proposal())
    }
}

/// The operation's own rules, run on the staged commit before anything
/// changes.
pub(crate) type Rules<'a> = &'a dyn Fn(&HubGroup, &Staged) -> Result<(), HubError>;

/// Runs a committing operation end to end.
pub(crate) fn run(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
    welcomes: &[WelcomeMessage],
    external: bool,
    rules: Rules,
) -> Result<Outcome, HubError> {
    let crypto = req.crypto;
    // Members are authenticated against the current tree before the commit
    // counts; a joiner's key is only known from the commit.
    let (member, staged) = if external {
        (None, stage(req, group, update)?)
    } else {
        let signature = auth::MemberSignature::look_up(group, req.request, req.ctx)?;
        auth::framed_sender_is(signature.index, &update.commit)?;
        let staged = authenticate_and_stage(req, group, update, &signature)?;
        (Some(signature.index), staged)
    };
    if staged.external != external {
        return Err(HubError::InvalidMls(if external {
            "an external join must be a new_member_commit".into()
        } else {
            "a member operation must be a commit by a member".into()
        }));
    }
    match member {
        Some(index) if index != staged.committer => {
            return Err(HubError::ClientSignature(format!(
                "sender_index {index} is not the commit's sender {}",
                staged.committer
            )));
        }
        Some(_) => {}
        None => {
            let index = auth::sender_index(req.request)?;
            if index != staged.committer {
                return Err(HubError::ClientSignature(format!(
                    "sender_index {index} is not the leaf the joiner lands in ({})",
                    staged.committer
                )));
            }
            let leaf = staged
                .staged
                .update_path_leaf_node()
                .ok_or_else(|| HubError::InvalidMls("external commit without a path".into()))?;
            auth::verify(
                crypto,
                group.public.ciphersuite().signature_algorithm(),
                req.request,
                leaf.signature_key().as_slice(),
            )?;
            let joiner = client_of_credential(leaf.credential()).map_err(HubError::InvalidMls)?;
            auth::acts_for(req, &joiner)?;
        }
    }
    check_identities(&staged)?;
    // Step 8 of 6.2: the operation's rules, Welcome coverage; then step 9.
    if !external {
        committer_unchanged(group, &staged)?;
    }
    rules(group, &staged)?;
    let welcome_targets = check_welcomes(crypto, &staged, welcomes)?;
    let group_info = group_info(req, group, update, &staged)?;

    // Everything is checked: compute the effects, then merge.
    let epoch = group.epoch();
    let group_id = req.group_id.clone();
    let mut messages = vec![update.commit.as_bytes().to_vec()];
    let mut deliveries = fanout::to_members_except(
        group,
        Some(staged.committer).filter(|_| !external),
        &group_id,
        epoch,
        0,
    );
    // (KeyPackageRef, signature key, provider) of each added client.
    let added_keys = staged
        .staged
        .add_proposals()
        .map(|a| {
            let kp = a.add_proposal().key_package();
            let reference = kp.hash_ref(crypto).map_err(internal)?.as_slice().to_vec();
            let client =
                client_of_credential(kp.leaf_node().credential()).map_err(HubError::InvalidMls)?;
            Ok((
                reference,
                kp.leaf_node().signature_key().as_slice().to_vec(),
                client.domain().to_string(),
            ))
        })
        .collect::<Result<Vec<_>, HubError>>()?;
    // Who is where changes only with adds, removes and joins; otherwise only
    // the committer's leaf (and maybe its key) changed.
    let membership_changed = external
        || staged.staged.add_proposals().next().is_some()
        || staged.staged.remove_proposals().next().is_some();
    let committer = staged.committer;
    group
        .public
        .merge_commit(&group.storage, staged.staged)
        .map_err(internal)?;
    group.meta.group_info = group_info.clone();
    if membership_changed {
        group.refresh_members()?;
    } else {
        group.forget_key(committer);
    }
    let new_epoch = group.epoch();

    for (welcome, recipients) in welcomes.iter().zip(welcome_targets) {
        messages.push(welcome.as_bytes().to_vec());
        let index = messages.len() - 1;
        deliveries.extend(fanout::deliveries(
            recipients,
            DeliveryKind::Welcome,
            &group_id,
            new_epoch,
            index,
        ));
    }
    let snapshot = if added_keys.is_empty() {
        None
    } else {
        let leaves: Vec<_> = group
            .public
            .members()
            .map(|m| (m.signature_key, m.index.u32()))
            .collect();
        let added = added_keys
            .into_iter()
            .map(|(key_package_ref, signature_key, client_domain)| {
                let leaf_index = leaves
                    .iter()
                    .find(|(k, _)| *k == signature_key)
                    .map(|(_, i)| *i)
                    .ok_or_else(|| HubError::Internal("added client not in the new tree".into()))?;
                Ok(AddedClient {
                    key_package_ref,
                    leaf_index,
                    signature_key,
                    client_domain,
                })
            })
            .collect::<Result<_, HubError>>()?;
        let ratchet_tree = group
            .public
            .export_ratchet_tree()
            .tls_serialize_detached()
            .map_err(internal)?;
        Some(JoinerSnapshot {
            epoch: new_epoch,
            ratchet_tree,
            group_info,
            added,
        })
    };
    let retention = req.config.welcome_retention;
    Ok(Outcome {
        response: DSResponseBody::Ok,
        write: Write::Put(group.to_bytes()?),
        snapshot,
        prune_snapshots_before: Some(req.ctx.now.saturating_sub(retention)),
        messages,
        deliveries,
        app_message: None,
        forget_app_messages: leaving_window(new_epoch, req.config.app_message_past_epochs),
    })
}

/// The epoch whose application messages a commit to `new_epoch` makes
/// refused (`send_message` accepts `past` epochs before the current one):
/// the one that leaves the window, if any.
fn leaving_window(new_epoch: u64, past: u64) -> Option<std::ops::Range<u64>> {
    let oldest = new_epoch.checked_sub(past)?;
    let left = oldest.checked_sub(1)?;
    Some(left..oldest)
}

/// Signed requests at least this large have their client signature checked
/// on a thread of its own while OpenMLS validates the commit: hashing the
/// request then costs far more than starting the thread.
const PARALLEL_SIGNATURE_MIN: usize = 16 * 1024;

/// The member's client signature and origin checked, then [`stage`]; for a
/// large commit the signature is checked beside `stage` instead. The errors
/// come in the order of `docs/protocol.md` 6.2 either way: `stage` changes
/// nothing, so having run it for a request that turns out forged is only
/// wasted work.
fn authenticate_and_stage(
    req: &Req,
    group: &HubGroup,
    update: &MLSGroupUpdate,
    signature: &auth::MemberSignature,
) -> Result<Staged, HubError> {
    let crypto = req.crypto;
    let request = req.request;
    // The origin is looked up here: the group stays on this thread.
    let origin = auth::check_origin(req, group, signature.index);
    if update.commit.as_bytes().len() < PARALLEL_SIGNATURE_MIN {
        signature.check(crypto, request)?;
        origin?;
        (req.authenticated)();
        return stage(req, group, update);
    }
    let origin_ok = origin.is_ok();
    let (signed, staged) = std::thread::scope(|scope| {
        let check = || {
            let signed = signature.check(crypto, request);
            if signed.is_ok() && origin_ok {
                (req.authenticated)();
            }
            signed
        };
        let checker = std::thread::Builder::new()
            .name("mimid-signature".into())
            .spawn_scoped(scope, check);
        let staged = stage(req, group, update);
        let signed = match checker {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(HubError::Internal("signature check panicked".into()))),
            // No thread to be had: check here.
            Err(_) => check(),
        };
        (signed, staged)
    });
    signed?;
    origin?;
    staged
}

/// Checks the commit's framing and epoch, validates it with OpenMLS, and
/// checks that it includes every pending proposal (6.2 steps 6 to 8).
fn stage(req: &Req, group: &HubGroup, update: &MLSGroupUpdate) -> Result<Staged, HubError> {
    let crypto = req.crypto;
    let current = group.epoch();
    // Cheap checks by reference first: a stale commit costs no copy.
    let MlsMessageBodyIn::PublicMessage(public_message) = update.commit.parsed() else {
        return Err(HubError::InvalidMls(
            "handshake messages must be PublicMessages".into(),
        ));
    };
    if public_message.content_type() != ContentType::Commit {
        return Err(HubError::InvalidMls("not a commit".into()));
    }
    if public_message.epoch().as_u64() != current {
        return Err(HubError::WrongEpoch { current });
    }
    let confirmation_tag = public_message
        .confirmation_tag()
        .cloned()
        .ok_or_else(|| HubError::InvalidMls("commit without confirmation tag".into()))?;
    let processed = group
        .public
        .process_message(crypto, ProtocolMessage::from(public_message.clone()))
        .map_err(invalid)?;
    let sender = processed.sender().clone();
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        return Err(HubError::InvalidMls("not a commit".into()));
    };
    let staged = *staged;
    let (committer, external) = match sender {
        Sender::Member(index) => (index.u32(), false),
        Sender::NewMemberCommit => (
            group
                .public
                .ext_commit_sender_index(&staged)
                .map_err(internal)?
                .u32(),
            true,
        ),
        _ => {
            return Err(HubError::InvalidMls(
                "commit from an external sender".into(),
            ));
        }
    };
    if !external {
        check_pending_proposals(group, &staged)?;
    }

    Ok(Staged {
        staged,
        committer,
        external,
        confirmation_tag,
    })
}

/// Rebuilds the GroupInfo of the new epoch from the commit and its
/// PartialGroupInfo, and checks that the committer signed it (6.2 step 9).
/// Returns it as an `MLSMessage`.
fn group_info(
    req: &Req,
    group: &HubGroup,
    update: &MLSGroupUpdate,
    staged: &Staged,
) -> Result<Vec<u8>, HubError> {
    let crypto = req.crypto;
    let committer = staged.committer;
    let signer_key = match staged.staged.update_path_leaf_node() {
        Some(leaf) => leaf.signature_key().as_slice().to_vec(),
        None => group
            .leaf_key(committer)
            .ok_or_else(|| HubError::InvalidMls("committer has no leaf".into()))?,
    };
    let pgi = &update.partial_group_info;
    let mut tbs = staged
        .staged
        .group_context()
        .tls_serialize_detached()
        .map_err(internal)?;
    tbs.extend_from_slice(pgi.group_info_extensions.as_bytes());
    tbs.extend_from_slice(
        &staged
            .confirmation_tag
            .tls_serialize_detached()
            .map_err(internal)?,
    );
    tbs.extend_from_slice(&committer.to_be_bytes());
    let content = SignContent::new("GroupInfoTBS", tbs.clone().into())
        .tls_serialize_detached()
        .map_err(internal)?;
    crypto
        .verify_signature(
            group.public.ciphersuite().signature_algorithm(),
            &content,
            &signer_key,
            &pgi.signature.0,
        )
        .map_err(|_| {
            HubError::InvalidGroupInfo(
                "the GroupInfo signature does not verify with the committer's key".into(),
            )
        })?;
    // MLSMessage { mls10, group_info, GroupInfo { tbs, signature<V> } }.
    let mut group_info = vec![0x00, 0x01, 0x00, 0x04];
    group_info.extend_from_slice(&tbs);
    group_info.extend_from_slice(&encode(&pgi.signature)?);
    mimid_wire::GroupInfoMessage::from_bytes(&group_info).map_err(|e| {
        HubError::InvalidGroupInfo(format!("rebuilt GroupInfo does not decode: {e}"))
    })?;
    Ok(group_info)
}

/// Every stored proposal (pending self-removes) must be committed by
/// reference (`docs/protocol.md` 6.3).
fn check_pending_proposals(group: &HubGroup, staged: &StagedCommit) -> Result<(), HubError> {
    let pending = group
        .public
        .queued_proposals(&group.storage)
        .map_err(internal)?;
    let referenced: Vec<_> = staged
        .queued_proposals()
        .filter(|p| p.proposal_or_ref_type() == ProposalOrRefType::Reference)
        .map(|p| p.proposal_reference_ref().clone())
        .collect();
    let missing = pending
        .iter()
        .filter(|(r, _)| !referenced.contains(r))
        .count();
    if missing > 0 {
        return Err(HubError::MissingPendingProposals(format!(
            "{missing} pending proposal(s) of this epoch are not included by reference"
        )));
    }
    Ok(())
}

/// A member's commit must not change the committer's identity (G23).
fn committer_unchanged(group: &HubGroup, staged: &Staged) -> Result<(), HubError> {
    let Some(leaf) = staged.staged.update_path_leaf_node() else {
        return Ok(());
    };
    let new = client_of_credential(leaf.credential()).map_err(HubError::InvalidMls)?;
    match group.member(staged.committer) {
        Some(m) if m.client == new => Ok(()),
        _ => Err(HubError::NotAllowed(
            "a commit may not change the committer's ClientID".into(),
        )),
    }
}

/// Leaves entering or changing in the commit must carry ClientID
/// credentials (G23).
fn check_identities(staged: &Staged) -> Result<(), HubError> {
    for add in staged.staged.add_proposals() {
        client_of_credential(add.add_proposal().key_package().leaf_node().credential())
            .map_err(HubError::InvalidMls)?;
    }
    if let Some(leaf) = staged.staged.update_path_leaf_node() {
        client_of_credential(leaf.credential()).map_err(HubError::InvalidMls)?;
    }
    Ok(())
}

/// Every added KeyPackage is covered by exactly one Welcome; returns, per
/// Welcome, the clients it covers.
fn check_welcomes(
    crypto: &impl OpenMlsCrypto,
    staged: &Staged,
    welcomes: &[WelcomeMessage],
) -> Result<Vec<Vec<mimid_wire::ClientId>>, HubError> {
    let mut added: BTreeMap<Vec<u8>, (mimid_wire::ClientId, bool)> = BTreeMap::new();
    for add in staged.staged.add_proposals() {
        let kp = add.add_proposal().key_package();
        let reference: KeyPackageRef = kp.hash_ref(crypto).map_err(internal)?;
        let client =
            client_of_credential(kp.leaf_node().credential()).map_err(HubError::InvalidMls)?;
        added.insert(reference.as_slice().to_vec(), (client, false));
    }
    let mut targets = Vec::with_capacity(welcomes.len());
    for (i, welcome) in welcomes.iter().enumerate() {
        let MlsMessageBodyIn::Welcome(w) = welcome.parsed() else {
            return Err(HubError::MissingWelcome(format!(
                "welcome_messages[{i}] is not a Welcome"
            )));
        };
        let mut covered = Vec::new();
        for secret in w.secrets() {
            let reference = secret.new_member();
            let entry = added.get_mut(reference.as_slice()).ok_or_else(|| {
                HubError::MissingWelcome(format!(
                    "welcome_messages[{i}] is for a KeyPackage the commit does not add"
                ))
            })?;
            if entry.1 {
                return Err(HubError::MissingWelcome(format!(
                    "{} is covered by more than one Welcome",
                    entry.0
                )));
            }
            entry.1 = true;
            covered.push(entry.0.clone());
        }
        targets.push(covered);
    }
    if let Some((_, (client, _))) = added.iter().find(|(_, (_, seen))| !seen) {
        return Err(HubError::MissingWelcome(format!(
            "no Welcome covers {client}"
        )));
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::leaving_window;

    /// Each commit forgets the one epoch that leaves the window, so every
    /// epoch is forgotten once, and none while it is still accepted.
    #[test]
    fn a_commit_forgets_the_epoch_leaving_the_window() {
        assert_eq!(leaving_window(1, 0), Some(0..1));
        assert_eq!(leaving_window(2, 0), Some(1..2));
        assert_eq!(leaving_window(3, 1), Some(1..2));
        assert_eq!(leaving_window(1, 1), None);
        assert_eq!(leaving_window(0, 0), None);
        assert_eq!(leaving_window(u64::MAX, 0), Some(u64::MAX - 1..u64::MAX));
    }
}
