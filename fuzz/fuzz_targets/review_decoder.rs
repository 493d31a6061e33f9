//! Any bytes into both webhook endpoints: the review decoder and everything behind it must
//! answer or refuse, never panic.
#![no_main]

use std::sync::LazyLock;

use hostgate::admission::{Endpoint, NoLabels, Reviewer};
use hostgate::approval::{SigningIdentity, TrustStore};
use hostgate::policy::PolicySet;
use hostgate::policy::load::parse_policies;
use libfuzzer_sys::fuzz_target;

const POLICIES: &str = include_str!("../../tests/data/webhook/policies/test-policies.yaml");

static SET: LazyLock<PolicySet> = LazyLock::new(|| {
    let (policies, errors) = parse_policies(POLICIES.as_bytes(), "test-policies.yaml");
    assert!(errors.is_empty(), "{errors:?}");
    PolicySet::new(policies).expect("unique names")
});

static SIGNER: LazyLock<SigningIdentity> = LazyLock::new(|| {
    let key = ed25519_seed();
    SigningIdentity::new(key)
});

fn ed25519_seed() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

static TRUST: LazyLock<TrustStore> = LazyLock::new(|| {
    let mut t = TrustStore::default();
    t.add(SIGNER.verifying_key());
    t
});

fuzz_target!(|data: &[u8]| {
    let reviewer = Reviewer {
        policies: &SET,
        namespaces: &NoLabels,
        signer: Some(&SIGNER),
        trust: Some(&TRUST),
        allow_privileged: true,
        now: 1_764_170_000,
        // Exercises the RuntimeClass defaulting of /mutate and of templates too.
        runtime_class: Some("hostgate"),
        options: Default::default(),
    };
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        match reviewer.review(endpoint, data) {
            Ok(outcome) => {
                // Every answer encodes, within the response limit.
                let body = outcome.to_json().expect("the answer encodes");
                assert!(body.len() <= hostgate::admission::MAX_RESPONSE_BYTES);
            }
            Err(hostgate::admission::ReviewFailure::Malformed(_)) => {}
            Err(e) => panic!("internal error on fuzz input: {e:?}"),
        }
    }
});
