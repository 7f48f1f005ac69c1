//! The `mimi_ds_group` GroupContext extension (`docs/protocol.md` 12, G25).

use crate::codec::{wire_enum, wire_struct};

/// GroupContext extension type of [`MimiDsGroup`].
pub const MIMI_DS_GROUP_EXTENSION: u16 = 0xF0A0;

wire_enum! {
    pub enum GroupKind: u8 as "kind" {
        Regular = 0 as "regular",
        Connection = 1 as "connection",
    }
}

wire_struct! {
    /// `extension_data` of extension 0xF0A0: the DS version and the kind of
    /// group, fixed at creation.
    pub struct MimiDsGroup {
        pub version: u16,
        pub kind: GroupKind,
    }
}
