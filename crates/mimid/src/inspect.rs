//! `mimid inspect`: decode a captured request or response body and show it.
//!
//! The input is one whole body (the bytes of an HTTP request or response, see
//! `docs/protocol.md` section 3.2). It is decoded strictly, exactly as the
//! server would, so a body `inspect` rejects is a body the server rejects,
//! and the error names the byte offset and the field path.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use mimid_wire::{
    DecodeError, DecodeErrorKind, Endpoint, ErrorCode, Limits, TYPES, TypeEntry, find_type,
};
use serde_json::Value;

/// The top-level body types of the eight endpoints, in the order `inspect`
/// lists them when it tries every type.
pub const TOP_LEVEL: &[&str] = &[
    "DSRequest",
    "DSResponse",
    "QueueingServiceRequest",
    "QueueingServiceResponse",
    "VerificationKeyRequest",
    "VerificationKeyResponse",
    "ConnectionKeyPackageRequest",
    "ConnectionKeyPackageResponse",
    "GroupKeyPackageRequest",
    "GroupKeyPackageResponse",
];

/// Byte strings longer than this are shortened in the tree view.
const SHORTEN_ABOVE_BYTES: usize = 32;
/// How many bytes of a shortened byte string the tree view keeps.
const SHORTENED_PREFIX_BYTES: usize = 16;

/// Why `inspect` failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    #[error("input is not valid hex (whitespace is ignored): {0}")]
    Hex(hex::FromHexError),
    #[error("unknown type `{name}`; known types: {known}")]
    UnknownType { name: String, known: String },
    #[error("unknown endpoint `{path}`; known endpoints: {known}")]
    UnknownEndpoint { path: String, known: String },
    #[error("type `{0}` is named by the endpoint table but missing from the type registry")]
    MissingType(&'static str),
    /// The body does not decode as the type asked for.
    #[error("cannot decode as {type_name}: {error}\n{}", answer_note(error))]
    Decode {
        type_name: &'static str,
        error: Box<DecodeError>,
    },
    /// The body decodes as neither the request nor the response type of an
    /// endpoint; `type_name` is the one whose decoding got further.
    #[error(
        "cannot decode as {type_name}: {error}\n{}\n\
         note: the body is not a {other_name} either: {other_error}",
        answer_note(error)
    )]
    EndpointMismatch {
        type_name: &'static str,
        error: Box<DecodeError>,
        other_name: &'static str,
        other_error: Box<DecodeError>,
    },
    /// No type decodes the whole body; `type_name` got furthest.
    #[error(
        "cannot decode as {type_name}: {error}\n\
         note: none of the {tried} known types decodes the whole input; \
         {type_name} got furthest{}",
        tied_note(tied)
    )]
    NoType {
        type_name: &'static str,
        error: Box<DecodeError>,
        tried: usize,
        /// Other types whose decoding got as far.
        tied: Vec<&'static str>,
    },
    #[error("the type registry is empty")]
    EmptyRegistry,
    #[error("cannot render JSON: {0}")]
    Json(serde_json::Error),
}

/// What a receiver answers a body it cannot decode with
/// (`docs/protocol.md` 1.4, 6.2).
fn answer_note(error: &DecodeError) -> String {
    let code = error.code();
    format!(
        "note: a receiver refuses it with {} {}",
        code.http_status(),
        code.name()
    )
}

/// How many of the types that got as far as the reported one are named.
const TIED_NAMED: usize = 4;

fn tied_note(tied: &[&str]) -> String {
    match tied.len() {
        0 => String::new(),
        n if n <= TIED_NAMED => format!(" (as far as {})", tied.join(", ")),
        n => format!(
            " (as far as {} and {} other types)",
            tied[..TIED_NAMED].join(", "),
            n - TIED_NAMED
        ),
    }
}

impl InspectError {
    /// The process exit code: 2 when the body does not decode, 1 for input
    /// and usage problems.
    pub fn exit_code(&self) -> u8 {
        match self {
            InspectError::Decode { .. }
            | InspectError::EndpointMismatch { .. }
            | InspectError::NoType { .. } => 2,
            _ => 1,
        }
    }
}

/// Where the body comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    /// `-` is stdin, anything else a file path.
    pub fn from_arg(arg: &Path) -> Self {
        if arg.as_os_str() == "-" {
            Input::Stdin
        } else {
            Input::File(arg.to_path_buf())
        }
    }
}

/// Which side of an endpoint a body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
}

/// Which types to decode the body as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selector<'a> {
    /// Exactly this type (name as in `docs/protocol.md`, any case).
    Type(&'a str),
    /// The request or response type of an endpoint path; with no side, the
    /// request type first, then the response type.
    Endpoint { path: &'a str, side: Option<Side> },
    /// Every known type.
    Any,
}

/// A body decoded as one type.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub type_name: &'static str,
    pub value: Value,
}

/// What `inspect` found.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// Decoded as the type asked for.
    Type(Decoded),
    /// Decoded as one side of an endpoint.
    Endpoint {
        path: &'static str,
        side: Side,
        /// The side was not given; it was found by trying.
        guessed: bool,
        /// With a guessed side: the other side's type decodes the body too.
        also: Option<&'static str>,
        decoded: Decoded,
    },
    /// Every type that decodes the whole body (at least one), top-level
    /// body types first.
    Matches(Vec<Decoded>),
}

/// Reads the body from `input`; with `hex`, the input is hex text and
/// whitespace in it is ignored.
pub fn read_input(input: &Input, hex: bool) -> Result<Vec<u8>, InspectError> {
    let raw = match input {
        Input::Stdin => {
            let mut buf = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(|source| InspectError::Read {
                    what: "standard input".into(),
                    source,
                })?;
            buf
        }
        Input::File(path) => std::fs::read(path).map_err(|source| InspectError::Read {
            what: path.display().to_string(),
            source,
        })?,
    };
    if hex { decode_hex(&raw) } else { Ok(raw) }
}

/// Decodes hex text, ignoring ASCII whitespace anywhere in it.
pub fn decode_hex(text: &[u8]) -> Result<Vec<u8>, InspectError> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex::decode(digits).map_err(InspectError::Hex)
}

/// Decodes `body` as `selector` says.
pub fn inspect(
    body: &[u8],
    selector: Selector<'_>,
    limits: &Limits,
) -> Result<Report, InspectError> {
    match selector {
        Selector::Type(name) => {
            let entry = find_type(name).ok_or_else(|| InspectError::UnknownType {
                name: name.to_owned(),
                known: TYPES.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
            })?;
            decode_as(entry, body, limits)
                .map(Report::Type)
                .map_err(|error| InspectError::Decode {
                    type_name: entry.name,
                    error: Box::new(error),
                })
        }
        Selector::Endpoint { path, side } => inspect_endpoint(body, path, side, limits),
        Selector::Any => inspect_any(body, limits),
    }
}

fn decode_as(
    entry: &'static TypeEntry,
    body: &[u8],
    limits: &Limits,
) -> Result<Decoded, DecodeError> {
    (entry.decode_json)(body, limits).map(|value| Decoded {
        type_name: entry.name,
        value,
    })
}

fn registered(name: &'static str) -> Result<&'static TypeEntry, InspectError> {
    TYPES
        .iter()
        .find(|t| t.name == name)
        .ok_or(InspectError::MissingType(name))
}

fn inspect_endpoint(
    body: &[u8],
    path: &str,
    side: Option<Side>,
    limits: &Limits,
) -> Result<Report, InspectError> {
    let normalized = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let endpoint = Endpoint::find(&normalized).ok_or_else(|| InspectError::UnknownEndpoint {
        path: path.to_owned(),
        known: Endpoint::ALL
            .iter()
            .map(|e| e.path)
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let request = registered(endpoint.request)?;
    let response = registered(endpoint.response)?;
    let report = |side, guessed, also, decoded| Report::Endpoint {
        path: endpoint.path,
        side,
        guessed,
        also,
        decoded,
    };
    if let Some(side) = side {
        let entry = match side {
            Side::Request => request,
            Side::Response => response,
        };
        return decode_as(entry, body, limits)
            .map(|decoded| report(side, false, None, decoded))
            .map_err(|error| InspectError::Decode {
                type_name: entry.name,
                error: Box::new(error),
            });
    }
    match (
        decode_as(request, body, limits),
        decode_as(response, body, limits),
    ) {
        (Ok(decoded), other) => Ok(report(
            Side::Request,
            true,
            other.ok().map(|_| response.name),
            decoded,
        )),
        (Err(_), Ok(decoded)) => Ok(report(Side::Response, true, None, decoded)),
        (Err(req_err), Err(resp_err)) => {
            // Report the side whose decoding got further; the request on a tie.
            let (first, second) = if reach(&resp_err) > reach(&req_err) {
                ((response.name, resp_err), (request.name, req_err))
            } else {
                ((request.name, req_err), (response.name, resp_err))
            };
            Err(InspectError::EndpointMismatch {
                type_name: first.0,
                error: Box::new(first.1),
                other_name: second.0,
                other_error: Box::new(second.1),
            })
        }
    }
}

/// Every registered type, the top-level body types first (in [`TOP_LEVEL`]
/// order), then the others in registry order.
pub fn candidates() -> Vec<&'static TypeEntry> {
    let mut all: Vec<&'static TypeEntry> = TYPES.iter().collect();
    all.sort_by_key(|t| {
        TOP_LEVEL
            .iter()
            .position(|n| *n == t.name)
            .unwrap_or(TOP_LEVEL.len())
    });
    all
}

/// How far a failed decoding got: its offset, and on a tie an error about
/// trailing bytes (the type decoded a whole value) wins.
fn reach(error: &DecodeError) -> (usize, bool) {
    (
        error.offset,
        matches!(error.kind, DecodeErrorKind::TrailingBytes(_)),
    )
}

fn inspect_any(body: &[u8], limits: &Limits) -> Result<Report, InspectError> {
    let candidates = candidates();
    let mut matches = Vec::new();
    let mut failures: Vec<(&'static str, DecodeError)> = Vec::new();
    for entry in &candidates {
        match decode_as(entry, body, limits) {
            Ok(decoded) => matches.push(decoded),
            Err(error) => failures.push((entry.name, error)),
        }
    }
    if !matches.is_empty() {
        return Ok(Report::Matches(matches));
    }
    // The first (in candidate order) of those that got furthest.
    let mut best: Option<usize> = None;
    for (i, (_, error)) in failures.iter().enumerate() {
        if best.is_none_or(|b| reach(error) > reach(&failures[b].1)) {
            best = Some(i);
        }
    }
    let best = best.ok_or(InspectError::EmptyRegistry)?;
    let key = reach(&failures[best].1);
    let tied = failures
        .iter()
        .enumerate()
        .filter(|(i, (_, error))| *i != best && reach(error) == key)
        .map(|(_, (name, _))| *name)
        .collect();
    let (type_name, error) = failures.swap_remove(best);
    Err(InspectError::NoType {
        type_name,
        error: Box::new(error),
        tried: candidates.len(),
        tied,
    })
}

impl Report {
    /// Pretty JSON, values in full. A chosen type (`--type`, `--endpoint`)
    /// gives the bare value; trying every type gives an array of
    /// `{"type": NAME, "value": VALUE}`.
    pub fn to_json(&self) -> Result<String, InspectError> {
        let out = match self {
            Report::Type(d) | Report::Endpoint { decoded: d, .. } => {
                serde_json::to_string_pretty(&d.value)
            }
            Report::Matches(all) => {
                let list: Vec<Value> = all
                    .iter()
                    .map(|d| serde_json::json!({ "type": d.type_name, "value": d.value }))
                    .collect();
                serde_json::to_string_pretty(&list)
            }
        };
        out.map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(InspectError::Json)
    }

    /// A line saying which type was picked, for when the JSON output cannot
    /// say it (an endpoint whose side was found by trying).
    pub fn note(&self) -> Option<String> {
        match self {
            Report::Endpoint {
                guessed: true,
                decoded,
                ..
            } => Some(format!("decoded as {}", self.describe(decoded))),
            _ => None,
        }
    }

    fn describe(&self, decoded: &Decoded) -> String {
        match self {
            Report::Endpoint {
                path,
                side,
                guessed,
                also,
                ..
            } => {
                let mut s = format!("{} ({} of {path}", decoded.type_name, side.as_str());
                if *guessed && *side == Side::Response {
                    s.push_str("; it is not a request");
                }
                if let Some(other) = also {
                    let _ = write!(s, "; it also decodes as the response type {other}");
                }
                s.push(')');
                s
            }
            _ => decoded.type_name.to_owned(),
        }
    }

    /// The indented `field: value` tree.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match self {
            Report::Type(d) | Report::Endpoint { decoded: d, .. } => {
                render_root(&self.describe(d), &d.value, &mut out);
            }
            Report::Matches(all) => {
                if let [only] = all.as_slice() {
                    let title = format!(
                        "{} (the only type that decodes the whole input)",
                        only.type_name
                    );
                    render_root(&title, &only.value, &mut out);
                } else {
                    let _ = writeln!(
                        out,
                        "{} types decode the whole input (top-level body types first):",
                        all.len()
                    );
                    for d in all {
                        out.push('\n');
                        let title = if TOP_LEVEL.contains(&d.type_name) {
                            format!("{} (top-level body)", d.type_name)
                        } else {
                            d.type_name.to_owned()
                        };
                        render_root(&title, &d.value, &mut out);
                    }
                }
            }
        }
        out
    }
}

/// Renders `value` under a title line.
fn render_root(title: &str, value: &Value, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let _ = writeln!(out, "{title}");
            render_object(map, 1, out);
        }
        Value::Array(items) if !items.is_empty() => {
            let _ = writeln!(out, "{title}: {}", count(items.len()));
            render_array(items, 1, out);
        }
        scalar => {
            let _ = writeln!(out, "{title}: {}", scalar_text(scalar));
        }
    }
}

fn render_object(map: &serde_json::Map<String, Value>, depth: usize, out: &mut String) {
    // A DSError: name the code next to its number.
    let is_error = map.contains_key("detail");
    for (key, value) in map {
        match (key.as_str(), value) {
            ("code", Value::Number(n)) if is_error => {
                let name =
                    n.as_u64().and_then(|c| u16::try_from(c).ok()).map(
                        |c| match ErrorCode::from_u16(c) {
                            ErrorCode::Unknown(_) => "unregistered",
                            known => known.name(),
                        },
                    );
                let line = match name {
                    Some(name) => format!("{n} ({name})"),
                    None => n.to_string(),
                };
                let _ = writeln!(out, "{}{key}: {line}", pad(depth));
            }
            _ => render_entry(key, value, depth, out),
        }
    }
}

fn render_array(items: &[Value], depth: usize, out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        render_entry(&format!("[{i}]"), item, depth, out);
    }
}

fn render_entry(label: &str, value: &Value, depth: usize, out: &mut String) {
    let pad = pad(depth);
    match value {
        Value::Object(map) if !map.is_empty() => {
            let _ = writeln!(out, "{pad}{label}:");
            render_object(map, depth + 1, out);
        }
        Value::Array(items) if !items.is_empty() => {
            let _ = writeln!(out, "{pad}{label}: {}", count(items.len()));
            render_array(items, depth + 1, out);
        }
        scalar => {
            let _ = writeln!(out, "{pad}{label}: {}", scalar_text(scalar));
        }
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "(1 item)".into()
    } else {
        format!("({n} items)")
    }
}

fn pad(depth: usize) -> String {
    "  ".repeat(depth)
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "none".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_text(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Hex byte strings as they are, shortened with their length when long;
/// other text as it is unless it would be ambiguous or unprintable.
fn string_text(s: &str) -> String {
    let is_hex = !s.is_empty()
        && s.len().is_multiple_of(2)
        && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if is_hex && s.len() / 2 > SHORTEN_ABOVE_BYTES {
        return format!(
            "{}…({} bytes)",
            &s[..2 * SHORTENED_PREFIX_BYTES],
            s.len() / 2
        );
    }
    let plain =
        !s.is_empty() && s.trim() == s && !s.chars().any(|c| c.is_control()) && !s.starts_with('"');
    if plain {
        s.to_owned()
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mimid_wire::Wire as _;

    #[test]
    fn top_level_types_are_the_endpoint_types_and_registered() {
        let mut from_endpoints: Vec<&str> = Endpoint::ALL
            .iter()
            .flat_map(|e| [e.request, e.response])
            .collect();
        from_endpoints.sort_unstable();
        from_endpoints.dedup();
        let mut top: Vec<&str> = TOP_LEVEL.to_vec();
        top.sort_unstable();
        assert_eq!(top, from_endpoints);
        for name in TOP_LEVEL {
            assert!(registered(name).is_ok(), "{name} not registered");
        }
        let order: Vec<&str> = candidates()
            .iter()
            .take(TOP_LEVEL.len())
            .map(|t| t.name)
            .collect();
        assert_eq!(order, TOP_LEVEL);
    }

    #[test]
    fn long_hex_is_shortened_with_its_length() {
        let long = "ab".repeat(4096);
        assert_eq!(
            string_text(&long),
            format!("{}…(4096 bytes)", "ab".repeat(16))
        );
        let key = "cd".repeat(32);
        assert_eq!(string_text(&key), key);
        assert_eq!(string_text("a.example"), "a.example");
        assert_eq!(string_text(""), "\"\"");
        assert_eq!(string_text("two\nlines"), "\"two\\nlines\"");
    }

    #[test]
    fn tree_nests_objects_and_arrays() {
        let value = serde_json::json!({
            "a": 1,
            "b": { "c": [true, { "d": null }] },
            "e": [],
        });
        let mut out = String::new();
        render_root("T", &value, &mut out);
        assert_eq!(
            out,
            "T\n  a: 1\n  b:\n    c: (2 items)\n      [0]: true\n      [1]:\n        d: none\n  e: []\n"
        );
    }

    #[test]
    fn error_code_is_named() {
        let body = mimid_wire::DSError::wrong_epoch(7).to_bytes().unwrap();
        let report = inspect(&body, Selector::Type("dserror"), &Limits::default()).unwrap();
        assert_eq!(
            report.to_text(),
            "DSError\n  code: 22 (wrong_epoch)\n  detail:\n    wrong_epoch:\n      current_epoch: 7\n"
        );
    }

    #[test]
    fn hex_ignores_whitespace_and_rejects_odd_digits() {
        assert_eq!(decode_hex(b" 00 16\n08\t").unwrap(), vec![0x00, 0x16, 0x08]);
        assert!(matches!(decode_hex(b"001"), Err(InspectError::Hex(_))));
        assert!(matches!(decode_hex(b"zz"), Err(InspectError::Hex(_))));
    }

    #[test]
    fn endpoint_without_side_falls_back_to_the_response() {
        let body = mimid_wire::DSResponse {
            protocol_version: 1,
            response_body: mimid_wire::DSResponseBody::Ok,
        }
        .to_bytes()
        .unwrap();
        let report = inspect(
            &body,
            Selector::Endpoint {
                path: "group_operation",
                side: None,
            },
            &Limits::default(),
        )
        .unwrap();
        match report {
            Report::Endpoint {
                side,
                guessed,
                decoded,
                ..
            } => {
                assert_eq!(side, Side::Response);
                assert!(guessed);
                assert_eq!(decoded.type_name, "DSResponse");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn nothing_matches_reports_the_furthest_error() {
        // A VerificationKeyRequest with a trailing byte: it decodes a whole
        // value and stops at offset 12, where other types stop too.
        let mut body = mimid_wire::VerificationKeyRequest {
            version: 1,
            provider: "a.example".parse().unwrap(),
        }
        .to_bytes()
        .unwrap();
        body.push(0);
        let err = inspect(&body, Selector::Any, &Limits::default()).unwrap_err();
        match &err {
            InspectError::NoType {
                type_name, error, ..
            } => {
                assert_eq!(*type_name, "VerificationKeyRequest", "{err}");
                assert_eq!(error.offset, 12);
                assert_eq!(error.kind, DecodeErrorKind::TrailingBytes(1));
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(err.exit_code(), 2);
    }
}
