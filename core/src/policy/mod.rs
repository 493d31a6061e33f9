//! The hostgate policy model: `HostProcessPolicy` objects, their validation and their
//! constraints.

mod compile;
pub mod image;
pub mod load;
mod model;
pub mod selector;
pub mod winpath;

pub(crate) use compile::is_dns1123_subdomain;
pub use compile::{CompiledPolicy, DuplicatePolicy, InvalidPolicy, PolicySet};
// Names the policy model's users reach for; they live with the rules that use them.
pub use crate::rules::users::{LEAST_PRIVILEGE_USER, same_account};
pub use crate::rules::volumes::{DEFAULT_VOLUME_TYPES, VOLUME_TYPES, volume_type};
pub use model::{
    API_VERSION, AllowSpec, CrdError, DefaultsSpec, EphemeralAllow, GROUP, HostProcessPolicy,
    HostProcessPolicySpec, HostProcessPolicyStatus, KIND, LimitMaxima, MatchSpec, Mode,
    PrivilegedAnnotation, Profile, RequireSpec, VERSION, VolumeAllow, crd_yaml,
};
