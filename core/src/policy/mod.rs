//! The hostgate policy model: `HostProcessPolicy` objects, their validation and their
//! constraints.

mod compile;
pub mod image;
pub mod load;
mod model;
pub mod selector;
pub mod winpath;

pub use compile::{
    CompiledPolicy, DEFAULT_VOLUME_TYPES, DuplicatePolicy, InvalidPolicy, LEAST_PRIVILEGE_USER,
    PolicySet, VOLUME_TYPES, same_account, volume_type,
};
pub use model::{
    API_VERSION, AllowSpec, CrdError, DefaultsSpec, GROUP, HostProcessPolicy,
    HostProcessPolicySpec, HostProcessPolicyStatus, KIND, LimitMaxima, MatchSpec, Mode,
    PrivilegedAnnotation, Profile, RequireSpec, VERSION, VolumeAllow, crd_yaml,
};
