//! `--expect-review`: checks that an answer is an AdmissionReview response for the request.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<Uid>,
    response: Option<Response>,
}

#[derive(Deserialize)]
struct Uid {
    uid: Option<String>,
}

#[derive(Deserialize)]
struct Response {
    uid: Option<String>,
    allowed: Option<bool>,
}

/// Why an answer is not the expected review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReview {
    /// Not JSON of the right shape.
    NotJson,
    /// `apiVersion`/`kind` are not `admission.k8s.io/v1` `AdmissionReview`.
    WrongKind,
    /// No `response`, or no `response.allowed`.
    NoResponse,
    /// `response.uid` is not the request's uid.
    UidMismatch,
}

/// The `request.uid` of an AdmissionReview request body, if it has one.
pub fn request_uid(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Review>(body).ok()?.request?.uid
}

/// Checks an answer body; `Ok(allowed)` when it is an `admission.k8s.io/v1` AdmissionReview
/// whose response carries `allowed` and, when `expected_uid` is known, that uid.
pub fn check_answer(body: &[u8], expected_uid: Option<&str>) -> Result<bool, BadReview> {
    let r: Review = serde_json::from_slice(body).map_err(|_| BadReview::NotJson)?;
    if r.api_version.as_deref() != Some("admission.k8s.io/v1")
        || r.kind.as_deref() != Some("AdmissionReview")
    {
        return Err(BadReview::WrongKind);
    }
    let resp = r.response.ok_or(BadReview::NoResponse)?;
    let allowed = resp.allowed.ok_or(BadReview::NoResponse)?;
    if let Some(want) = expected_uid
        && resp.uid.as_deref() != Some(want)
    {
        return Err(BadReview::UidMismatch);
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
        "request":{"uid":"u-1","object":{"kind":"Pod"}}}"#;

    #[test]
    fn uid_of_a_request() {
        assert_eq!(request_uid(REQ).as_deref(), Some("u-1"));
        assert_eq!(request_uid(b"{}"), None);
        assert_eq!(request_uid(b"not json"), None);
    }

    #[test]
    fn good_answers() {
        let allow = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
            "response":{"uid":"u-1","allowed":true,"patchType":"JSONPatch","patch":"W10="}}"#;
        let deny = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
            "response":{"uid":"u-1","allowed":false,"status":{"code":403,"message":"no"}}}"#;
        assert_eq!(check_answer(allow, Some("u-1")), Ok(true));
        assert_eq!(check_answer(deny, Some("u-1")), Ok(false));
        assert_eq!(check_answer(deny, None), Ok(false));
    }

    #[test]
    fn bad_answers() {
        assert_eq!(check_answer(b"ok", None), Err(BadReview::NotJson));
        assert_eq!(
            check_answer(br#"{"error":"x"}"#, None),
            Err(BadReview::WrongKind)
        );
        assert_eq!(
            check_answer(
                br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","response":{"uid":"u-1","allowed":true}}"#,
                None
            ),
            Err(BadReview::WrongKind)
        );
        assert_eq!(
            check_answer(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                None
            ),
            Err(BadReview::NoResponse)
        );
        assert_eq!(
            check_answer(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u-2","allowed":true}}"#,
                Some("u-1")
            ),
            Err(BadReview::UidMismatch)
        );
    }
}
