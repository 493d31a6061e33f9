//! Any bytes through the manifest reader and the engine, as `hostgate check` reads files.
#![no_main]

use hostgate::engine::{EvalContext, evaluate};
use hostgate::manifest::read_documents;
use hostgate::object::Workload;
use hostgate::policy::{PolicySet, Profile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let set = PolicySet::default().with_profile(Profile::Baseline);
    let (docs, _) = read_documents(data);
    for doc in docs {
        if let Ok(Some(w)) = Workload::from_value(doc.value) {
            if let Some(view) = w.pod() {
                let _ = evaluate(&set, &view, &EvalContext::new("default"));
            }
        }
    }
});
