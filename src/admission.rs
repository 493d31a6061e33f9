//! AdmissionReview in, AdmissionReview out: the webhook's logic without HTTP.
//!
//! [`Reviewer::review`] decodes an `admission.k8s.io/v1` AdmissionReview, judges the object with
//! the engine and answers with kube-core's [`AdmissionResponse`]. It is synchronous and does no
//! I/O, so the router tests, the fuzzer and `hostgate mutate` exercise exactly what the server
//! runs.
//!
//! - `/validate` judges the final object. Pods: CREATE, significant UPDATEs, and the
//!   `ephemeralcontainers` subresource; workload kinds: their pod template, as the mutating
//!   webhook would default the pods it creates. An admitted HostProcess pod must carry an
//!   approval that verifies and matches it. Enforce findings deny (403), Warn findings become
//!   `warnings`, Audit findings `auditAnnotations`.
//! - `/mutate` defaults HostProcess Pods, signs an approval for those a policy admits, and
//!   removes any approval it did not sign; the answer is an RFC 6902 patch. It never denies on
//!   policy grounds: `/validate` decides. With [`Reviewer::runtime_class`] it also names that
//!   RuntimeClass for the HostProcess pods it approves on CREATE that name none (the field
//!   cannot change on an existing pod), and `/validate` defaults pod templates the same way. A
//!   dry run (`dryRun: true`) is defaulted but not signed
//!   unless [`ReviewOptions::sign_dry_run`] asks for it (an approval is a credential for the
//!   node, and a dry run creates nothing that could use it), and `/validate` then judges it
//!   without asking for an approval.
//!
//! Every answer is bounded whatever the request: a body with more JSON objects than
//! [`ShapeLimits::max_objects`] is refused before it is decoded; a denial names the first
//! [`MAX_FINDINGS_SHOWN`] findings (each cut to [`MAX_FINDING_BYTES`]) and counts the rest; and a
//! `/mutate` patch larger than [`MAX_PATCH_BYTES`] is refused rather than sent, so that no
//! answer exceeds [`MAX_RESPONSE_BYTES`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::approval::{self, ApprovedPod, SigningIdentity, TrustStore};
use crate::decision::{Decision, Finding};
use crate::defaults::{self, Change};
use crate::engine::{EvalContext, evaluate};
use crate::object::{Kind, ReviewObject, Workload};
use crate::policy::{Mode, PolicySet};
use crate::rules::ids;
use crate::rules::structural::StructuralOptions;
use crate::shape::{ShapeLimits, TooManyObjects};
use crate::telemetry::cut;

/// Findings a denial, a warning list or an audit annotation names; the rest are counted.
pub const MAX_FINDINGS_SHOWN: usize = 20;
/// Longest text of one finding in an answer.
pub const MAX_FINDING_BYTES: usize = 512;
/// Largest JSON patch `/mutate` sends (before base64).
pub const MAX_PATCH_BYTES: usize = 36 * 1024;
/// Largest answer of either endpoint.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// `apiVersion` of the reviews hostgate speaks.
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of a review.
pub const REVIEW_KIND: &str = "AdmissionReview";
/// The subresource through which ephemeral containers are added.
pub const EPHEMERAL_SUBRESOURCE: &str = "ephemeralcontainers";

/// Which webhook is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /validate`
    Validate,
    /// `POST /mutate`
    Mutate,
}

impl Endpoint {
    /// The endpoint's name, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// A body that is not a well-formed `admission.k8s.io/v1` AdmissionReview request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedReview(pub String);

/// Why a review got no AdmissionReview answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewFailure {
    /// The body is not a well-formed review: the client's fault (400).
    #[error(transparent)]
    Malformed(#[from] MalformedReview),
    /// hostgate failed to build its answer: its own fault (500).
    #[error("answering review {uid}")]
    Internal {
        /// The review's uid, for the log.
        uid: String,
        /// What failed.
        #[source]
        source: InternalError,
    },
}

/// A failure of hostgate's own making while answering a well-formed review.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    /// The JSON patch could not be serialized.
    #[error("serializing the JSON patch")]
    Patch(#[source] serde_json::Error),
    /// The answer could not be serialized.
    #[error("serializing the AdmissionReview answer")]
    Encode(#[source] serde_json::Error),
    /// The answer came out larger than [`MAX_RESPONSE_BYTES`] (a bound that should hold by
    /// construction).
    #[error("the answer is {0} bytes, over the {MAX_RESPONSE_BYTES}-byte limit")]
    TooLarge(usize),
}

/// How reviews are answered, besides the policies.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReviewOptions {
    /// Sign approvals for dry-run requests too (`hostgate serve --sign-dry-run`). Off by
    /// default: a dry run creates no pod, so an approval signed for it could only be copied
    /// into another object by whoever asked for it.
    pub sign_dry_run: bool,
    /// Bodies of more objects than this are refused before they are decoded.
    pub shape: ShapeLimits,
}

/// Namespace labels, for `namespaceSelector`.
pub trait NamespaceLabels {
    /// The labels of `namespace`, if known.
    fn labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>>;
}

/// No namespace labels known (only `kubernetes.io/metadata.name` is).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLabels;

impl NamespaceLabels for NoLabels {
    fn labels(&self, _: &str) -> Option<&BTreeMap<String, String>> {
        None
    }
}

impl NamespaceLabels for BTreeMap<String, BTreeMap<String, String>> {
    fn labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.get(namespace)
    }
}

/// Everything a review needs besides the request.
pub struct Reviewer<'a> {
    /// The policies in force.
    pub policies: &'a PolicySet,
    /// Namespace labels.
    pub namespaces: &'a dyn NamespaceLabels,
    /// Signs approvals on `/mutate`; `None` disables approvals altogether.
    pub signer: Option<&'a SigningIdentity>,
    /// Keys whose approvals `/validate` accepts (the signer's own, plus any being rotated out).
    pub trust: Option<&'a TrustStore>,
    /// kube-apiserver `--allow-privileged`.
    pub allow_privileged: bool,
    /// Issue time for approvals, seconds since the Unix epoch.
    pub now: u64,
    /// `hostgate serve --runtime-class`: the RuntimeClass named for the HostProcess pods that
    /// `/mutate` approves and that name none.
    pub runtime_class: Option<&'a str>,
    /// Dry runs and shape limits.
    pub options: ReviewOptions,
}

impl std::fmt::Debug for Reviewer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviewer")
            .field("policies", &self.policies.len())
            .field("signer", &self.signer)
            .field("allow_privileged", &self.allow_privileged)
            .field("runtime_class", &self.runtime_class)
            .finish_non_exhaustive()
    }
}

/// What happened to a request, for logs and metrics: the verdict on a review (`hostgate check`
/// has [`crate::check::Verdict`] for objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Allowed after judgement.
    Allowed,
    /// Allowed with warnings.
    Warned,
    /// Denied.
    Denied,
    /// Not judged: another kind, a subresource hostgate ignores, DELETE, an insignificant update.
    Skipped,
}

impl Verdict {
    /// The verdict's name, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Warned => "warned",
            Verdict::Denied => "denied",
            Verdict::Skipped => "skipped",
        }
    }
}

/// A review's answer and what to record about it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The response to wrap in an AdmissionReview.
    pub response: AdmissionResponse,
    /// Request uid.
    pub uid: String,
    /// Object kind (`Pod`, `DaemonSet`, …).
    pub kind: String,
    /// Namespace of the request.
    pub namespace: String,
    /// Object name (may be empty for generated names).
    pub name: String,
    /// `CREATE`, `UPDATE`, …
    pub operation: &'static str,
    /// Subresource, if any.
    pub sub_resource: Option<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// The policy that admitted the HostProcess pod.
    pub policy: Option<String>,
    /// Rule ids of every finding with its action (`deny`, `warn`, `audit`).
    pub findings: Vec<(&'static str, &'static str)>,
    /// Whether `/mutate` returned a patch.
    pub mutated: bool,
    /// Whether `/mutate` signed an approval.
    pub signed: bool,
}

impl Outcome {
    /// The AdmissionReview response body.
    pub fn to_json(&self) -> Result<Vec<u8>, InternalError> {
        response_json(&self.response)
    }

    /// Numbers of findings by action: (denials, warnings, audits).
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |action: &str| self.findings.iter().filter(|(_, a)| *a == action).count();
        (count("deny"), count("warn"), count("audit"))
    }
}

/// The wire form of a response. kube-core serializes `patch` (a `Vec<u8>`) as an array of
/// numbers (kube-rs/kube#1781), but the apiserver decodes it as Go `[]byte`, which JSON carries
/// as a base64 string; so the envelope is written here, from kube-core's own response type.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: WireResponse<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a kube::core::Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    audit_annotations: &'a HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a Vec<String>>,
}

/// Serializes a response as an `admission.k8s.io/v1` AdmissionReview, at most
/// [`MAX_RESPONSE_BYTES`] long.
pub fn response_json(r: &AdmissionResponse) -> Result<Vec<u8>, InternalError> {
    use base64::Engine as _;
    let patch = r
        .patch
        .as_deref()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    let wire = WireReview {
        api_version: REVIEW_API_VERSION,
        kind: REVIEW_KIND,
        response: WireResponse {
            uid: &r.uid,
            allowed: r.allowed,
            status: &r.result,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            audit_annotations: &r.audit_annotations,
            warnings: r.warnings.as_ref(),
        },
    };
    let json = serde_json::to_vec(&wire).map_err(InternalError::Encode)?;
    if json.len() > MAX_RESPONSE_BYTES {
        return Err(InternalError::TooLarge(json.len()));
    }
    Ok(json)
}

/// The request. `O` is how `object` is read: decoded in the same pass ([`ReviewObject`]), or
/// left as raw JSON until the kind is known.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct RawRequest<'a, O = &'a RawValue> {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    user_info: k8s_openapi::api::authentication::v1::UserInfo,
    #[serde(default)]
    object: Option<O>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
    #[serde(default)]
    dry_run: bool,
}

impl<'a, O> RawRequest<'a, O> {
    fn map_object<P>(self, f: impl FnOnce(Option<O>) -> Option<P>) -> RawRequest<'a, P> {
        RawRequest {
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            request_kind: self.request_kind,
            request_resource: self.request_resource,
            request_sub_resource: self.request_sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: self.user_info,
            object: f(self.object),
            old_object: self.old_object,
            dry_run: self.dry_run,
        }
    }
}

/// A request's `object`: already decoded, or raw JSON to decode once the kind is known.
enum ObjectInput<'a> {
    Decoded(Workload),
    Raw(&'a RawValue),
}

#[derive(Deserialize)]
struct RawReview<'a> {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(borrow)]
    request: Option<&'a RawValue>,
}

/// A review read in one pass, object included, for well-formed bodies.
#[derive(Deserialize)]
struct Review<'a> {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(borrow)]
    request: Option<RawRequest<'a, ReviewObject>>,
}

/// Decodes a review body into its request. Errors describe what is wrong for the 400 answer.
///
/// The one-pass decode covers what the kube-apiserver sends; anything it does not take (an
/// error anywhere, an object of another kind than the request's) is read again step by step.
fn decode(body: &[u8]) -> Result<(TypeMeta, RawRequest<'_, ObjectInput<'_>>), MalformedReview> {
    if let Some(Review {
        api_version: Some(api_version),
        kind: Some(kind),
        request: Some(request),
    }) = one_pass(body)
        && api_version == REVIEW_API_VERSION
        && kind == REVIEW_KIND
        && !request.uid.is_empty()
    {
        let judged = judged_kind(&request.kind);
        let mut mismatch = false;
        let request = request.map_object(|o| match (o, judged) {
            (Some(ReviewObject(Some(w))), Some(kind)) if w.kind() == kind => {
                Some(ObjectInput::Decoded(w))
            }
            // A judged request whose object is of another kind: from_json decides.
            (Some(_), Some(_)) => {
                mismatch = true;
                None
            }
            // Not looked at: no object, or the request's kind is not judged.
            _ => None,
        });
        if !mismatch {
            return Ok((TypeMeta { api_version, kind }, request));
        }
    }
    let (types, request) = decode_checked(body)?;
    Ok((types, request.map_object(|o| o.map(ObjectInput::Raw))))
}

/// The review with its object, in one pass over the body, or `None` for the checked decoder to
/// explain. UTF-8 is checked once for the whole body: cheaper than serde_json's check of every
/// string, which `from_slice` makes.
fn one_pass(body: &[u8]) -> Option<Review<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    serde_json::from_str(text).ok()
}

/// Decodes a review step by step, so that the error says which part is wrong.
fn decode_checked(body: &[u8]) -> Result<(TypeMeta, RawRequest<'_>), MalformedReview> {
    let bad = |m: String| MalformedReview(m);
    if body.is_empty() {
        return Err(bad("empty body: expected an AdmissionReview".to_owned()));
    }
    let review: RawReview<'_> = serde_json::from_slice(body)
        .map_err(|e| bad(format!("body is not an AdmissionReview: {e}")))?;
    match (review.api_version.as_deref(), review.kind.as_deref()) {
        (Some(REVIEW_API_VERSION), Some(REVIEW_KIND)) => {}
        (v, k) => {
            return Err(bad(format!(
                "expected apiVersion {REVIEW_API_VERSION:?} and kind {REVIEW_KIND:?}, found {:?} and {:?}",
                v.unwrap_or(""),
                k.unwrap_or("")
            )));
        }
    }
    let raw = review
        .request
        .ok_or_else(|| bad("the AdmissionReview has no request".to_owned()))?;
    let request: RawRequest<'_> =
        serde_json::from_str(raw.get()).map_err(|e| bad(format!("request: {e}")))?;
    if request.uid.is_empty() {
        return Err(bad("request.uid is empty".to_owned()));
    }
    let types = TypeMeta {
        api_version: REVIEW_API_VERSION.to_owned(),
        kind: REVIEW_KIND.to_owned(),
    };
    Ok((types, request))
}

/// The judged kind of a request's GVK, if hostgate judges it.
fn judged_kind(gvk: &GroupVersionKind) -> Option<Kind> {
    let kind = Kind::from_name(&gvk.kind)?;
    let (group, version) = match kind.api_version().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", kind.api_version()),
    };
    (gvk.group == group && gvk.version == version).then_some(kind)
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// kube's request (from which the response takes uid and types) and the outcome to fill in.
fn start<O>(types: TypeMeta, raw: RawRequest<'_, O>) -> (AdmissionRequest<DynamicObject>, Outcome) {
    let request = AdmissionRequest::<DynamicObject> {
        types,
        uid: raw.uid,
        kind: raw.kind,
        resource: raw.resource,
        sub_resource: raw.sub_resource,
        request_kind: raw.request_kind,
        request_resource: raw.request_resource,
        request_sub_resource: raw.request_sub_resource,
        name: raw.name,
        namespace: raw.namespace,
        operation: raw.operation,
        user_info: raw.user_info,
        object: None,
        old_object: None,
        dry_run: raw.dry_run,
        options: None,
    };
    let outcome = Outcome {
        response: AdmissionResponse::from(&request),
        uid: request.uid.clone(),
        kind: request.kind.kind.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        name: request.name.clone(),
        operation: operation_name(&request.operation),
        sub_resource: request.sub_resource.clone(),
        verdict: Verdict::Skipped,
        policy: None,
        findings: Vec::new(),
        mutated: false,
        signed: false,
    };
    (request, outcome)
}

/// The answer to a body with too many objects: a denial when its envelope can be read (the
/// object itself is not decoded), else a malformed review.
fn refuse_shape(body: &[u8], too_many: &TooManyObjects) -> Result<Outcome, ReviewFailure> {
    let Ok((types, raw)) = decode_checked(body) else {
        return Err(MalformedReview(too_many.to_string()).into());
    };
    let (_, mut outcome) = start(types, raw);
    let mut denied = outcome
        .response
        .clone()
        .deny(format!("hostgate denied the request: {too_many}"));
    denied.result.code = 413;
    denied.result.reason = "RequestEntityTooLarge".to_owned();
    outcome.response = denied;
    outcome.verdict = Verdict::Denied;
    Ok(outcome)
}

impl Reviewer<'_> {
    /// Reviews one AdmissionReview body.
    pub fn review(&self, endpoint: Endpoint, body: &[u8]) -> Result<Outcome, ReviewFailure> {
        if let Err(too_many) = self.options.shape.check(body) {
            return refuse_shape(body, &too_many);
        }
        let (types, mut raw) = decode(body)?;
        let (object, old_object) = (raw.object.take(), raw.old_object);
        let (request, mut outcome) = start(types, raw);
        let Some(kind) = judged_kind(&request.kind) else {
            return Ok(outcome);
        };
        let subresource = request.sub_resource.as_deref();
        let ephemeral = kind == Kind::Pod && subresource == Some(EPHEMERAL_SUBRESOURCE);
        let judged_operation = matches!(request.operation, Operation::Create | Operation::Update);
        if !judged_operation || (subresource.is_some() && !ephemeral) {
            return Ok(outcome);
        }
        let object = object.ok_or_else(|| {
            MalformedReview(format!(
                "request.object is missing for {}",
                outcome.operation
            ))
        })?;
        let mut workload = match object {
            ObjectInput::Decoded(workload) => workload,
            ObjectInput::Raw(json) => Workload::from_json(kind, json.get())
                .map_err(|e| MalformedReview(format!("request.object: {e}")))?,
        };
        if outcome.name.is_empty() {
            outcome.name = workload.name().to_owned();
        }
        let namespace = request
            .namespace
            .clone()
            .or_else(|| workload.namespace().map(str::to_owned))
            .unwrap_or_else(|| "default".to_owned());
        outcome.namespace.clone_from(&namespace);

        if kind == Kind::Pod && matches!(request.operation, Operation::Update) && !ephemeral {
            let old = old_object
                .map(|o| Workload::from_json(kind, o.get()))
                .transpose()
                .map_err(|e| MalformedReview(format!("request.oldObject: {e}")))?;
            if let Some(old) = old
                && !significant_update(&old, &workload, &namespace)
            {
                return Ok(outcome);
            }
        }

        let ctx = EvalContext {
            namespace: &namespace,
            namespace_labels: self.namespaces.labels(&namespace),
            structural: StructuralOptions {
                allow_privileged: self.allow_privileged,
                create: matches!(request.operation, Operation::Create),
            },
        };
        // A dry run is not signed (unless asked), so it is not asked for an approval either.
        let approvals = !request.dry_run || self.options.sign_dry_run;
        match endpoint {
            Endpoint::Validate => {
                self.validate(&mut outcome, kind, &mut workload, &ctx, approvals);
            }
            Endpoint::Mutate => {
                if kind == Kind::Pod && !ephemeral {
                    self.mutate(&mut outcome, workload, &ctx, approvals)
                        .map_err(|source| ReviewFailure::Internal {
                            uid: request.uid.clone(),
                            source,
                        })?;
                }
            }
        }
        Ok(outcome)
    }

    fn validate(
        &self,
        outcome: &mut Outcome,
        kind: Kind,
        workload: &mut Workload,
        ctx: &EvalContext<'_>,
        approvals: bool,
    ) {
        let mut decision = if kind == Kind::Pod {
            match workload.pod() {
                Some(view) => evaluate(self.policies, &view, ctx),
                None => return,
            }
        } else {
            // Pods of this template are defaulted by /mutate before they are judged, and they
            // are created: the RuntimeClass applies whatever the operation on the template.
            defaults::default_workload_with(self.policies, workload, ctx, self.defaulting(true))
                .decision
        };
        if kind == Kind::Pod
            && approvals
            && decision.allowed
            && decision.host_process
            && let (Some(trust), Some(view)) = (self.trust, workload.pod())
            && let Err(e) = trust.verify_pod(&view, ctx.namespace)
        {
            let rule = match e {
                approval::ApprovalError::Mismatch(_) => ids::APPROVAL_MISMATCH,
                _ => ids::APPROVAL_INVALID,
            };
            decision.denials.push(Finding::new(
                rule,
                format!("metadata.annotations[{}]", approval::ANNOTATION),
                format!("{e}; the pod must pass hostgate's mutating webhook last (reinvocationPolicy: IfNeeded)"),
            ));
            decision.allowed = false;
            decision.policy = None;
        }
        apply_decision(outcome, &decision);
    }

    fn mutate(
        &self,
        outcome: &mut Outcome,
        mut workload: Workload,
        ctx: &EvalContext<'_>,
        approvals: bool,
    ) -> Result<(), InternalError> {
        let before = workload.to_value();
        let defaulting = self.defaulting(ctx.structural.create);
        let defaulted =
            defaults::default_workload_with(self.policies, &mut workload, ctx, defaulting);
        let Workload::Pod(pod) = &mut workload else {
            return Ok(());
        };
        let signer = if approvals { self.signer } else { None };
        outcome.signed =
            crate::approval::approve(pod, &defaulted.decision, signer, ctx.namespace, self.now);
        let after = workload.to_value();
        drop(workload);
        let patch = json_patch::diff(&before, &after);
        drop((before, after));
        if !patch.0.is_empty() {
            let bytes = serde_json::to_vec(&patch).map_err(InternalError::Patch)?;
            if bytes.len() > MAX_PATCH_BYTES {
                outcome.signed = false;
                let mut denied = outcome.response.clone().deny(format!(
                    "hostgate denied the request: the changes it would make to this pod take a {} KiB patch, over its {} KiB limit; a pod this large cannot be defaulted and approved",
                    bytes.len().div_ceil(1024),
                    MAX_PATCH_BYTES / 1024
                ));
                denied.result.code = 413;
                denied.result.reason = "RequestEntityTooLarge".to_owned();
                outcome.response = denied;
                outcome.verdict = Verdict::Denied;
                return Ok(());
            }
            outcome.response.patch = Some(bytes);
            outcome.mutated = true;
        }
        outcome.policy = defaulted.policy.as_deref().map(str::to_owned);
        outcome.verdict = Verdict::Allowed;
        if !defaulted.changes.is_empty() {
            outcome
                .response
                .audit_annotations
                .insert("defaulted".to_owned(), changes_summary(&defaulted.changes));
        }
        Ok(())
    }
}

impl Reviewer<'_> {
    /// The webhook's own defaults for a pod that is being created (or not).
    fn defaulting(&self, create: bool) -> defaults::DefaultingOptions<'_> {
        defaults::DefaultingOptions {
            runtime_class: self.runtime_class.filter(|_| create),
        }
    }
}

/// Whether a pod update changes what hostgate judges: the approved fields, the privileged
/// annotations, the approval itself or the ephemeral containers. Label changes and the like are
/// not re-judged (as Pod Security Admission does).
fn significant_update(old: &Workload, new: &Workload, namespace: &str) -> bool {
    let (Some(a), Some(b)) = (old.pod(), new.pod()) else {
        return true;
    };
    let approval_of = |v: &crate::pod::PodView<'_>| {
        v.annotations()
            .and_then(|m| m.get(approval::ANNOTATION))
            .cloned()
    };
    ApprovedPod::describe(&a, namespace) != ApprovedPod::describe(&b, namespace)
        || approval_of(&a) != approval_of(&b)
        || a.spec.ephemeral_containers != b.spec.ephemeral_containers
}

fn changes_summary(changes: &[Change]) -> String {
    bounded_list(
        changes
            .iter()
            .map(|c| format!("{}: {}", c.path, c.description)),
        "; ",
    )
}

/// The first [`MAX_FINDINGS_SHOWN`] items, each cut to [`MAX_FINDING_BYTES`], joined, with
/// `and N more` for the rest.
fn bounded_list(items: impl ExactSizeIterator<Item = String>, separator: &str) -> String {
    let total = items.len();
    let mut s = String::new();
    for (i, item) in items.take(MAX_FINDINGS_SHOWN).enumerate() {
        if i > 0 {
            s.push_str(separator);
        }
        s.push_str(&cut(&item, MAX_FINDING_BYTES));
    }
    if total > MAX_FINDINGS_SHOWN {
        let _ = write!(s, "{separator}and {} more", total - MAX_FINDINGS_SHOWN);
    }
    s
}

fn action(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "deny",
        Mode::Warn => "warn",
        Mode::Audit => "audit",
    }
}

/// Turns a decision into the response fields and the outcome's record.
fn apply_decision(outcome: &mut Outcome, d: &Decision) {
    outcome.findings = d
        .denials
        .iter()
        .map(|f| (f.rule, action(Mode::Enforce)))
        .chain(d.warnings.iter().map(|f| (f.rule, action(Mode::Warn))))
        .chain(d.audits.iter().map(|f| (f.rule, action(Mode::Audit))))
        .collect();
    outcome.policy = d.policy.as_deref().map(str::to_owned);
    let r = &mut outcome.response;
    if !d.allowed {
        let msg = format!(
            "hostgate denied the request: {}",
            bounded_list(d.denials.iter().map(Finding::to_string), "; ")
        );
        let mut denied = r.clone().deny(msg);
        denied.result.code = 403;
        denied.result.reason = "Forbidden".to_owned();
        *r = denied;
        outcome.verdict = Verdict::Denied;
    } else if d.warnings.is_empty() {
        outcome.verdict = Verdict::Allowed;
    } else {
        let shown = d.warnings.iter().take(MAX_FINDINGS_SHOWN);
        let mut warnings: Vec<String> = shown
            .map(|f| format!("hostgate: {}", cut(&f.to_string(), MAX_FINDING_BYTES)))
            .collect();
        if d.warnings.len() > MAX_FINDINGS_SHOWN {
            warnings.push(format!(
                "hostgate: and {} more",
                d.warnings.len() - MAX_FINDINGS_SHOWN
            ));
        }
        r.warnings = Some(warnings);
        outcome.verdict = Verdict::Warned;
    }
    let audit: &mut HashMap<String, String> = &mut r.audit_annotations;
    if let Some(policy) = &d.policy
        && d.host_process
    {
        audit.insert("admitted-by".to_owned(), policy.to_string());
    }
    if !d.audits.is_empty() {
        let text = bounded_list(d.audits.iter().map(Finding::to_string), "; ");
        audit.insert("audit-violations".to_owned(), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every captured review takes the one-pass decoder, and it reads what the step-by-step
    /// decoder reads: a regression here would only show as lost throughput.
    #[test]
    fn captured_reviews_decode_in_one_pass_like_the_checked_decoder() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/admissionreview");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let body = std::fs::read(&path).expect("read");
            let fast = one_pass(&body)
                .unwrap_or_else(|| panic!("{}: not decoded in one pass", path.display()));
            let fast = fast.request.expect("a request");
            let (_, checked) = decode_checked(&body).expect("well-formed");
            type Key = (
                String,
                GroupVersionKind,
                Option<String>,
                String,
                Option<String>,
                &'static str,
                Option<String>,
                bool,
            );
            fn key<O>(r: &RawRequest<'_, O>) -> Key {
                (
                    r.uid.clone(),
                    r.kind.clone(),
                    r.sub_resource.clone(),
                    r.name.clone(),
                    r.namespace.clone(),
                    operation_name(&r.operation),
                    r.old_object.map(|o| o.get().to_owned()),
                    r.dry_run,
                )
            }
            assert_eq!(key(&fast), key(&checked), "{}", path.display());
            // The object decoded in the review's pass is the one from_json reads from raw JSON.
            let judged = judged_kind(&checked.kind);
            match (fast.object.as_ref(), checked.object, judged) {
                (Some(ReviewObject(Some(eager))), Some(raw), Some(kind)) => {
                    let slow = Workload::from_json(kind, raw.get()).expect("decodes");
                    assert_eq!(eager, &slow, "{}", path.display());
                }
                (None, None, _) | (Some(ReviewObject(None)), Some(_), None) => {}
                (eager, raw, _) => panic!(
                    "{}: one-pass object {:?}, raw object {:?}",
                    path.display(),
                    eager.map(|o| o.0.as_ref().map(Workload::kind)),
                    raw.map(|r| r.get().len())
                ),
            }
            assert!(
                matches!(
                    decode(&body).expect("decodes").1.object,
                    None | Some(ObjectInput::Decoded(_))
                ),
                "{}: a captured review fell back to the step-by-step decoder",
                path.display()
            );
            seen += 1;
        }
        assert!(seen >= 20, "only {seen} captured reviews");
    }

    /// A captured HostProcess pod review, as a JSON value to alter.
    fn captured_pod_review() -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/admissionreview/pod-create-hostprocess-valid.validating.json");
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
    }

    fn decoded_object(body: &[u8]) -> (bool, Workload) {
        let (_, request) = decode(body).expect("decodes");
        match request.object.expect("an object") {
            ObjectInput::Decoded(w) => (true, w),
            ObjectInput::Raw(raw) => (
                false,
                Workload::from_json(Kind::Pod, raw.get()).expect("pod"),
            ),
        }
    }

    #[test]
    fn objects_the_one_pass_decoder_does_not_take_are_read_again() {
        // serde_json::Value keeps keys sorted, so `kind` comes before `spec` as from the apiserver.
        let review = captured_pod_review();
        let body = review.to_string();
        let (eager, expected) = decoded_object(body.as_bytes());
        assert!(eager, "the captured review takes the one-pass decoder");

        // `spec` before `kind`: read step by step, to the same pod.
        let object = &review["request"]["object"];
        let fields: Vec<String> = ["spec", "metadata", "kind", "apiVersion", "status"]
            .iter()
            .filter_map(|key| Some(format!("{key:?}:{}", object.get(*key)?)))
            .collect();
        let reordered = body.replace(&object.to_string(), &format!("{{{}}}", fields.join(",")));
        assert_ne!(reordered, body);
        let (eager, workload) = decoded_object(reordered.as_bytes());
        assert!(!eager, "spec before kind is read step by step");
        assert_eq!(workload, expected);

        // An object of another kind than the request's is left to from_json.
        let mut other = review.clone();
        other["request"]["object"]["kind"] = "Deployment".into();
        other["request"]["object"]["apiVersion"] = "apps/v1".into();
        let other = other.to_string();
        let (_, request) = decode(other.as_bytes()).expect("decodes");
        assert!(matches!(request.object, Some(ObjectInput::Raw(_))));

        // A type error inside the object still names its field.
        let mut bad = review.clone();
        bad["request"]["object"]["spec"]["containers"][0]["image"] = 5.into();
        let bad = bad.to_string();
        let (_, request) = decode(bad.as_bytes()).expect("the envelope is well-formed");
        let Some(ObjectInput::Raw(raw)) = request.object else {
            panic!("a bad object is read step by step");
        };
        let err = Workload::from_json(Kind::Pod, raw.get()).expect_err("type error");
        assert!(err.path.contains("containers[0].image"), "{err:?}");
    }
}
