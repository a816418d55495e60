//! Decoding request bodies, the first layer of the request path: read the body (bounded in
//! size), check how deeply it nests (bounded in depth) before any parser sees it, and parse
//! JSON, YAML or Kubernetes protobuf (what kubectl sends for typed objects; see
//! [`rkube_protobuf`]) into a value, off the async executor when the body is large.
//!
//! What it keeps true (tests below):
//! - a body over the size limit is a 413 before it is read whole;
//! - a body nested more than [`MAX_DEPTH`] levels (flow `[`/`{` and YAML block indentation
//!   together) is a 400 after one linear scan, in milliseconds, whatever a parser would make
//!   of it; Kubernetes objects nest about 20 levels;
//! - parsing a body larger than [`INLINE_PARSE_BYTES`] runs on a blocking thread, so a slow
//!   parse never holds up the executor's other requests.
//!
//! Not promised: the scan is exact for every YAML construct. It counts what can make a parser
//! slow (nesting); a body it lets through is still parsed and validated as before.

use axum::body::Body;
use http::HeaderMap;
use serde_json::Value;

use crate::error::ApiError;

/// The deepest a body may nest.
pub const MAX_DEPTH: usize = 100;

/// Bodies up to this size are parsed on the request's task; larger ones on a blocking thread.
pub const INLINE_PARSE_BYTES: usize = 16 * 1024;

/// Reads the whole body, refusing more than `limit` bytes with a 413.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let too_large = || ApiError::TooLarge(format!("Request entity too large: limit is {limit}"));
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        // Over the limit is a 413; a body that breaks off or is malformed (a bad chunk) is the
        // client's 400.
        let error = error.into_inner();
        if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            too_large()
        } else {
            ApiError::BadRequest(format!("the request body could not be read: {error}"))
        }
    })
}

/// The format of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML (a superset of JSON).
    Yaml,
    /// Kubernetes protobuf (`k8s\0` + `runtime.Unknown`).
    Protobuf,
}

impl Format {
    /// The format of an object body of media type `media` (`None`: JSON, as clients that send
    /// no Content-Type mean).
    pub fn of_object(media: Option<&str>) -> Result<Format, ApiError> {
        match media {
            None | Some("application/json") | Some("*/*") => Ok(Format::Json),
            Some("application/yaml" | "application/x-yaml" | "text/yaml") => Ok(Format::Yaml),
            Some(rkube_protobuf::MEDIA_TYPE) => Ok(Format::Protobuf),
            Some(other) => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other:?})"
            ))),
        }
    }
}

/// Parses a JSON or YAML object body (see the module docs).
pub async fn decode_object(bytes: bytes::Bytes, media: Option<&str>) -> Result<Value, ApiError> {
    let format = Format::of_object(media)?;
    let value = decode(bytes, format).await?;
    if !value.is_object() {
        return Err(ApiError::BadRequest("the request body must be a JSON object".into()));
    }
    Ok(value)
}

/// Parses a body of `format` after checking its depth; large bodies on a blocking thread.
pub async fn decode(bytes: bytes::Bytes, format: Format) -> Result<Value, ApiError> {
    // Protobuf nesting is bounded by the decoder itself (100 levels, as prost's limit).
    if format != Format::Protobuf {
        check_depth(&bytes, format)?;
    }
    if bytes.len() <= INLINE_PARSE_BYTES {
        return parse(&bytes, format);
    }
    tokio::task::spawn_blocking(move || parse(&bytes, format))
        .await
        .map_err(|e| ApiError::Internal(format!("decoding the request body: {e}")))?
}

/// Parses, without the depth check.
fn parse(bytes: &[u8], format: Format) -> Result<Value, ApiError> {
    match format {
        Format::Json => serde_json::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))),
        Format::Yaml => serde_yaml_ng::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid YAML: {e}"))),
        Format::Protobuf => decode_protobuf(bytes),
    }
}

/// A Kubernetes protobuf body as its JSON object: 400 for a body that is not one (or of a
/// kind Kubernetes has no message for), 500 only for a build defect.
pub fn decode_protobuf(bytes: &[u8]) -> Result<Value, ApiError> {
    rkube_protobuf::decode(bytes).map_err(|e| match e {
        rkube_protobuf::DecodeError::Descriptors(why) => ApiError::Internal(why),
        other => ApiError::BadRequest(format!("the request body is not valid protobuf: {other}")),
    })
}

/// A 400 when `bytes` nest deeper than [`MAX_DEPTH`].
pub fn check_depth(bytes: &[u8], format: Format) -> Result<(), ApiError> {
    let depth = nesting_depth(bytes, format);
    if depth > MAX_DEPTH {
        return Err(ApiError::BadRequest(format!(
            "the request body is nested too deeply: more than {MAX_DEPTH} levels"
        )));
    }
    Ok(())
}

/// The deepest nesting of `bytes`, stopping early once past [`MAX_DEPTH`]: flow collections
/// (`[`, `{`) outside strings, plus, for YAML, the number of block indentation levels open.
pub fn nesting_depth(bytes: &[u8], format: Format) -> usize {
    let yaml = format == Format::Yaml;
    let mut deepest = 0;
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut at_line_start = true;
    let mut column = 0usize;
    let mut in_comment = false;
    // The last byte that was not a space: in YAML a quote starts a quoted scalar only where a
    // scalar may start, so `it's` in a plain scalar opens nothing.
    let mut previous = b'\n';
    // The byte just before, spaces included: a YAML comment starts after a space.
    let mut just_before = b'\n';
    for &byte in bytes {
        let before = std::mem::replace(&mut just_before, byte);
        if byte == b'\n' {
            at_line_start = true;
            column = 0;
            in_comment = false;
            previous = b'\n';
            if yaml {
                // Counted as if quoted scalars ended at the line's end: a multi-line one may
                // count its brackets, which only errs towards refusing.
                quote = None;
                escaped = false;
            }
            continue;
        }
        if in_comment {
            continue;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if byte == b'\\' && q == b'"' {
                escaped = true;
            } else if byte == q {
                quote = None;
            }
            continue;
        }
        if at_line_start && yaml {
            if byte == b' ' || byte == b'-' {
                // Indentation, and the dash of a block sequence entry, which opens a level too.
                column += 1;
                continue;
            }
            at_line_start = false;
            if byte != b'#' && flow == 0 {
                while indents.last().is_some_and(|&open| open >= column) {
                    indents.pop();
                }
                indents.push(column);
            }
        }
        let scalar_may_start = !yaml || matches!(previous, b'\n' | b':' | b'-' | b'[' | b'{' | b',');
        match byte {
            b'"' | b'\'' if scalar_may_start => quote = Some(byte),
            b'#' if yaml && matches!(before, b'\n' | b' ' | b'\t') => in_comment = true,
            b'[' | b'{' => flow += 1,
            b']' | b'}' => flow = flow.saturating_sub(1),
            _ => {}
        }
        if byte != b' ' && byte != b'\t' {
            previous = byte;
        }
        deepest = deepest.max(flow + indents.len());
        if deepest > MAX_DEPTH {
            return deepest;
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_json(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn nested_yaml(depth: usize) -> String {
        (0..depth).map(|level| format!("{}k{level}:\n", "  ".repeat(level))).collect::<String>()
            + &"  ".repeat(depth)
            + "v: 1\n"
    }

    #[test]
    fn real_objects_are_far_from_the_limit() {
        let pod = serde_json::json!({"metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "y"}}}]}]}});
        let json = serde_json::to_vec(&pod).unwrap();
        assert!(nesting_depth(&json, Format::Json) < 10);
        let yaml = serde_yaml_ng::to_string(&pod).unwrap();
        let depth = nesting_depth(yaml.as_bytes(), Format::Yaml);
        assert!((5..15).contains(&depth), "{depth}\n{yaml}");
    }

    #[test]
    fn brackets_inside_strings_and_comments_do_not_count() {
        assert_eq!(nesting_depth(br#"{"a": "[[[[[[", "b": ["\"[["]}"#, Format::Json), 2);
        assert_eq!(nesting_depth(b"a: 1 # [[[[[[[[\nb: '{{{{'\n", Format::Yaml), 1);
        // An apostrophe inside a plain scalar does not hide what follows.
        let sneaky = format!("a: it's\nb: {}1{}\n", "[".repeat(200), "]".repeat(200));
        assert!(nesting_depth(sneaky.as_bytes(), Format::Yaml) > MAX_DEPTH);
    }

    #[test]
    fn deep_bodies_are_refused_quickly_in_either_format() {
        for body in [nested_json(MAX_DEPTH + 1), nested_json(5000)] {
            let started = std::time::Instant::now();
            assert!(matches!(check_depth(body.as_bytes(), Format::Json), Err(ApiError::BadRequest(_))));
            assert!(started.elapsed() < std::time::Duration::from_secs(1), "a linear scan");
        }
        assert!(check_depth(nested_json(MAX_DEPTH).as_bytes(), Format::Json).is_ok());
        assert!(matches!(
            check_depth(nested_yaml(MAX_DEPTH + 5).as_bytes(), Format::Yaml),
            Err(ApiError::BadRequest(_))
        ));
        assert!(check_depth(nested_yaml(50).as_bytes(), Format::Yaml).is_ok());
        let flow = format!("a: {}1{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(check_depth(flow.as_bytes(), Format::Yaml), Err(ApiError::BadRequest(_))));
    }

    #[tokio::test]
    async fn large_bodies_parse_off_the_executor_with_the_same_result() {
        let big = serde_json::json!({"data": {"k": "v".repeat(100_000)}});
        let bytes = bytes::Bytes::from(serde_json::to_vec(&big).unwrap());
        assert!(bytes.len() > INLINE_PARSE_BYTES);
        assert_eq!(decode_object(bytes, Some("application/json")).await.unwrap(), big);
        let yaml = bytes::Bytes::from("kind: Pod\nmetadata:\n  name: p\n");
        assert_eq!(decode_object(yaml, Some("application/yaml")).await.unwrap()["metadata"]["name"], "p");
        assert!(matches!(decode_object(bytes::Bytes::from("[1]"), None).await, Err(ApiError::BadRequest(_))));
    }
}
