//! `ds_add_clients`: a member adds new clients of its own user.

use mimid_wire::{MLSGroupUpdate, WelcomeMessage};

use super::additions;
use crate::commit;
use crate::error::HubError;
use crate::state::HubGroup;
use crate::step::{Outcome, Req};

pub(crate) fn handle(
    req: &Req,
    group: &mut HubGroup,
    update: &MLSGroupUpdate,
    welcomes: &[WelcomeMessage],
) -> Result<Outcome, HubError> {
    commit::run(req, group, update, welcomes, false, &|group, staged| {
        let added = additions(group, staged, "add_clients")?;
        // A user adds its own new devices: another member cannot attach a
        // client (whose credential nobody but its provider vouches for) to
        // someone else's membership (`docs/protocol.md` 6.3).
        let committer = group
            .member(staged.committer)
            .ok_or_else(|| HubError::NotAMember("committer is not a member".into()))?;
        let user = committer.client.user();
        if let Some(c) = added.iter().find(|c| c.user() != user) {
            return Err(HubError::NotAllowed(format!(
                "{} may add only clients of its own user, not {c}",
                committer.client
            )));
        }
        Ok(())
    })
}
