//! How much memory a review can take, and the shape limit that bounds it.
//!
//! A decoded object costs far more than its JSON: `k8s_openapi`'s `Container` is 2,144 bytes in
//! memory whatever it holds (every optional part — security context, three probes, lifecycle,
//! resources — is stored inline), `EphemeralContainer` 2,168 and `Volume` 3,208, and a vector
//! of them grows by doubling, so up to half its capacity is unused. `{"name":"c1","image":"i"}`
//! (26 bytes) became ~3.4 KB once decoded, and `/mutate` then built two `serde_json::Value`
//! copies of the whole object (before and after defaulting, ~660 bytes per such container each)
//! to diff them: ~5 KB per container, measured with a counting allocator on a 20,000-container
//! review (69 MB to decode, 96 MB in all for `/mutate`).
//!
//! Defaulting also tried each matching policy on a full copy of the object (fixed: it now
//! undoes the few fields a policy's defaults change). The decoded size is fixed by the types,
//! so what bounds the rest is the number of JSON objects a review may hold: [`count_objects`]
//! counts them in one pass over the bytes (no allocation), before anything is decoded, and a
//! review with more than [`ShapeLimits::max_objects`] is refused with a message that says so. Every array element
//! that decodes into one of the large structs is a JSON object, so this bounds them all. The
//! kube-apiserver stores objects of at most 1.5 MiB in etcd; a real pod, `managedFields`
//! included, holds a few hundred objects, a very large one a few thousand.

/// Limits on the shape of a reviewed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimits {
    /// Most JSON objects (`{…}`) a review body may hold, the AdmissionReview envelope included.
    pub max_objects: usize,
}

impl Default for ShapeLimits {
    fn default() -> Self {
        ShapeLimits {
            max_objects: DEFAULT_MAX_OBJECTS,
        }
    }
}

/// Default of [`ShapeLimits::max_objects`]: ten times the most objects of a captured review in
/// `tests/data` (213, in 8.5 KB, `managedFields` included). At this limit a review's objects
/// take at most 24 MiB.
pub const DEFAULT_MAX_OBJECTS: usize = 2048;

/// Upper bound of the resident memory one JSON object of a review adds at the peak of
/// `/mutate` (the costlier endpoint): the decoded struct (up to 3,208 bytes) with the slack of
/// vector growth, the two `serde_json::Value` copies, and what the allocator keeps of the
/// buffers it grew. `tests/review_memory.rs` measured 11.8 KB per container and per volume
/// (peak RSS of the server over 3,996 of them, debug build).
pub const PEAK_BYTES_PER_OBJECT: usize = 12 * 1024;

/// Upper bound of the resident memory per byte of body besides the objects: the body and its
/// buffers, the strings decoded from it, their copies in the two `Value`s and the findings.
/// Measured: 10 bytes per byte for one 3 MiB string.
pub const PEAK_BYTES_PER_BODY_BYTE: usize = 12;

/// Fixed part of a review's peak (envelope, engine, signing), in bytes.
pub const PEAK_BYTES_BASE: usize = 256 * 1024;

/// The fewest bytes a JSON object in an array takes (`{}` and a comma).
const MIN_OBJECT_BYTES: usize = 3;

/// An upper bound of the memory one review of a `body_len`-byte body takes, before its bytes
/// are seen: what the server reserves from its review memory budget.
pub fn review_peak_bytes(body_len: usize, limits: ShapeLimits) -> usize {
    let objects = (body_len / MIN_OBJECT_BYTES + 1).min(limits.max_objects);
    PEAK_BYTES_BASE
        .saturating_add(body_len.saturating_mul(PEAK_BYTES_PER_BODY_BYTE))
        .saturating_add(objects.saturating_mul(PEAK_BYTES_PER_OBJECT))
}

/// The number of JSON objects in `json`: every `{` outside a string. Malformed JSON gives a
/// count too; the decoder refuses it afterwards.
pub fn count_objects(json: &[u8]) -> usize {
    let mut objects = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'{' {
            objects += 1;
        }
    }
    objects
}

/// A body with more objects than the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the request holds {objects} JSON objects; hostgate judges requests of at most {limit} (a pod with so many containers, volumes or variables is not one it can judge)"
)]
pub struct TooManyObjects {
    /// Objects counted.
    pub objects: usize,
    /// The limit.
    pub limit: usize,
}

impl ShapeLimits {
    /// Counts the objects of `json` and refuses it when they are more than the limit.
    pub fn check(&self, json: &[u8]) -> Result<usize, TooManyObjects> {
        let objects = count_objects(json);
        if objects > self.max_objects {
            return Err(TooManyObjects {
                objects,
                limit: self.max_objects,
            });
        }
        Ok(objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_objects_outside_strings_only() {
        let cases: &[(&str, usize)] = &[
            ("{}", 1),
            (r#"{"a":{"b":[{},{}]}}"#, 4),
            (r#"{"s":"{{{"}"#, 1),
            (r#"{"s":"a\"{\\"}"#, 1),
            (r#"{"s":"\\"}{"#, 2),
            ("[1,2,3]", 0),
            ("", 0),
        ];
        for (json, want) in cases {
            assert_eq!(count_objects(json.as_bytes()), *want, "{json}");
        }
    }

    #[test]
    fn refuses_more_objects_than_the_limit() {
        let limits = ShapeLimits { max_objects: 2 };
        assert_eq!(limits.check(b"{\"a\":{}}"), Ok(2));
        let err = limits.check(b"[{},{},{}]").expect_err("three objects");
        assert_eq!(
            err,
            TooManyObjects {
                objects: 3,
                limit: 2
            }
        );
        assert!(err.to_string().contains("holds 3 JSON objects"), "{err}");
    }

    #[test]
    fn the_estimate_grows_with_the_body_and_is_capped_by_the_objects() {
        let limits = ShapeLimits::default();
        let small = review_peak_bytes(3 * 1024, limits);
        let large = review_peak_bytes(3 * 1024 * 1024, limits);
        assert!(small < large);
        assert_eq!(
            large,
            PEAK_BYTES_BASE
                + 3 * 1024 * 1024 * PEAK_BYTES_PER_BODY_BYTE
                + DEFAULT_MAX_OBJECTS * PEAK_BYTES_PER_OBJECT
        );
    }
}
