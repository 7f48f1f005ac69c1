//! `mimid inspect`, run as the built binary.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use mimid_wire::{
    Bytes, DSError, DSResponse, DSResponseBody, ErrorCode, ErrorDetail, VerificationKeyRequest,
    VerificationKeyResponse, VerificationKeyResult, Wire as _,
};
use serde_json::json;

/// What one run of the binary gave.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `mimid ARGS` with `stdin` as standard input.
fn mimid(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mimid"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mimid starts");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.to_vec();
    // The binary may exit without reading (usage errors): ignore EPIPE.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("mimid runs");
    writer.join().expect("stdin writer");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn with(bytes: &[u8]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "mimid-inspect-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes).expect("temp file written");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn ds_response_ok() -> Vec<u8> {
    DSResponse {
        protocol_version: 1,
        response_body: DSResponseBody::Ok,
    }
    .to_bytes()
    .unwrap()
}

fn verification_key_request() -> Vec<u8> {
    VerificationKeyRequest {
        version: 1,
        provider: "a.example".parse().unwrap(),
    }
    .to_bytes()
    .unwrap()
}

#[test]
fn decodes_a_ds_response_ok_from_a_file() {
    let file = TempFile::with(&ds_response_ok());

    let run = mimid(&["inspect", "--type", "DSResponse", file.path()], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "DSResponse\n  protocol_version: 1\n  response_body: ok\n"
    );

    // Without a type, every type is tried; the top-level body comes first.
    let run = mimid(&["inspect", file.path()], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("response_body: ok"), "{run:?}");
    let first_type = run
        .stdout
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with(' ') && !l.contains("types decode"));
    assert_eq!(
        first_type,
        Some("DSResponse (top-level body)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("types decode the whole input"),
        "several types match this body and the output must say so: {}",
        run.stdout
    );
}

#[test]
fn json_output_is_the_decoded_value() {
    let file = TempFile::with(&ds_response_ok());
    let run = mimid(
        &["inspect", "--type", "DSResponse", "--json", file.path()],
        b"",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(
        value,
        json!({ "protocol_version": 1, "response_body": "ok" })
    );
    let expected = serde_json::to_value(DSResponse {
        protocol_version: 1,
        response_body: DSResponseBody::Ok,
    })
    .unwrap();
    assert_eq!(value, expected);

    // The example of docs/protocol.md section 11, as hex on stdin.
    let run = mimid(
        &["inspect", "--type", "DSError", "--hex", "--json", "-"],
        b"0016 0800000000 00000007\n",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(
        value,
        json!({ "code": 22, "detail": { "wrong_epoch": { "current_epoch": 7 } } })
    );
}

#[test]
fn tree_shortens_long_bytes_and_json_keeps_them() {
    let body = DSError {
        code: ErrorCode::Unknown(999),
        detail: ErrorDetail::Opaque(Bytes(vec![0xab; 100])),
    }
    .to_bytes()
    .unwrap();
    let file = TempFile::with(&body);

    let run = mimid(&["inspect", "--type", "DSError", file.path()], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("code: 999 (unregistered)"),
        "{}",
        run.stdout
    );
    let short = format!("opaque: {}…(100 bytes)", "ab".repeat(16));
    assert!(run.stdout.contains(&short), "{}", run.stdout);

    let run = mimid(
        &["inspect", "--type", "DSError", "--json", file.path()],
        b"",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(value["detail"]["opaque"], json!("ab".repeat(100)));
}

#[test]
fn truncated_body_names_offset_and_field() {
    let mut body = verification_key_request();
    body.pop();
    let file = TempFile::with(&body);
    let run = mimid(
        &["inspect", "--type", "VerificationKeyRequest", file.path()],
        b"",
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.starts_with(
            "error: cannot decode as VerificationKeyRequest: \
             VerificationKeyRequest.provider at offset 2: truncated"
        ),
        "{}",
        run.stderr
    );

    // The same through stdin, raw and as hex.
    let run = mimid(&["inspect", "--type", "VerificationKeyRequest", "-"], &body);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains("VerificationKeyRequest.provider at offset 2")
    );
    let hex = hex::encode(&body);
    let run = mimid(
        &["inspect", "--type", "VerificationKeyRequest", "--hex", "-"],
        hex.as_bytes(),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains("VerificationKeyRequest.provider at offset 2")
    );

    // Trying every type still reports an offset and a field path.
    let run = mimid(&["inspect", file.path()], b"");
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.starts_with("error: cannot decode as "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(" at offset "), "{}", run.stderr);
    assert!(run.stderr.contains("got furthest"), "{}", run.stderr);
}

#[test]
fn over_long_body_names_the_trailing_offset() {
    let mut body = verification_key_request();
    let len = body.len();
    body.push(0x00);
    let file = TempFile::with(&body);
    for args in [
        vec!["inspect", "--type", "VerificationKeyRequest", file.path()],
        vec!["inspect", "--endpoint", "/verification_key", file.path()],
        vec!["inspect", file.path()],
    ] {
        let run = mimid(&args, b"");
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(
            run.stderr.starts_with(&format!(
                "error: cannot decode as VerificationKeyRequest: \
                 VerificationKeyRequest at offset {len}: 1 trailing bytes"
            )),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn endpoint_picks_the_request_type() {
    let file = TempFile::with(&verification_key_request());
    let run = mimid(
        &["inspect", "--endpoint", "/verification_key", file.path()],
        b"",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "VerificationKeyRequest (request of /verification_key)\n  \
         version: 1\n  provider: a.example\n"
    );

    // Asking for the response type of a request body fails.
    let run = mimid(
        &[
            "inspect",
            "--endpoint",
            "/verification_key",
            "--response",
            file.path(),
        ],
        b"",
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: cannot decode as VerificationKeyResponse: "),
        "{}",
        run.stderr
    );
}

#[test]
fn endpoint_without_response_flag_finds_the_response() {
    let body = VerificationKeyResponse {
        version: 1,
        result: VerificationKeyResult::Error(DSError::rate_limited(30)),
    }
    .to_bytes()
    .unwrap();
    let file = TempFile::with(&body);
    let run = mimid(
        &["inspect", "--endpoint", "/verification_key", file.path()],
        b"",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .starts_with("VerificationKeyResponse (response of /verification_key"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("code: 28 (rate_limited)"),
        "{}",
        run.stdout
    );

    // With --json, stdout stays the bare value and the choice goes to stderr.
    let run = mimid(
        &[
            "inspect",
            "--endpoint",
            "/verification_key",
            "--json",
            file.path(),
        ],
        b"",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(
        value,
        serde_json::to_value(VerificationKeyResponse {
            version: 1,
            result: VerificationKeyResult::Error(DSError::rate_limited(30)),
        })
        .unwrap()
    );
    assert!(run.stderr.contains("VerificationKeyResponse"), "{run:?}");
}

#[test]
fn input_and_usage_errors_exit_1() {
    let missing =
        std::env::temp_dir().join(format!("mimid-inspect-test-missing-{}", std::process::id()));
    let cases: Vec<(Vec<&str>, &[u8], &str)> = vec![
        (
            vec!["inspect", missing.to_str().unwrap()],
            b"",
            "error: cannot read ",
        ),
        (vec!["inspect", "--hex", "-"], b"0g", "not valid hex"),
        (vec!["inspect", "--hex", "-"], b"001", "not valid hex"),
        (
            vec!["inspect", "--type", "NoSuchType", "-"],
            b"",
            "unknown type `NoSuchType`",
        ),
        (
            vec!["inspect", "--endpoint", "/nope", "-"],
            b"",
            "unknown endpoint `/nope`",
        ),
        (vec!["inspect", "--response", "-"], b"", "--endpoint"),
        (
            vec!["inspect", "--type", "DSError", "--endpoint", "/x", "-"],
            b"",
            "cannot be used with",
        ),
        (vec!["inspect"], b"", "FILE|-"),
    ];
    for (args, stdin, needle) in cases {
        let run = mimid(&args, stdin);
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
    assert!(!Path::new(&missing).exists());
}

#[test]
fn readme_example_shows_wrong_epoch_7() {
    let run = mimid(
        &["inspect", "--type", "DSError", "--hex", "-"],
        b"0016080000000000000007\n",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "DSError\n  code: 22 (wrong_epoch)\n  detail:\n    wrong_epoch:\n      current_epoch: 7\n"
    );
}

/// Every golden vector of `docs/protocol.md` section 11 decodes to its value,
/// and its truncated and over-long forms are rejected with an offset.
#[test]
fn golden_vectors_decode_and_their_mutations_fail() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wire/vectors/golden.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the golden vector file {} is missing or unreadable ({e}); \
             it is produced by the wire crate (docs/protocol.md section 11)",
            path.display()
        )
    });
    let vectors: Vec<serde_json::Value> =
        serde_json::from_str(&text).expect("golden.json is a JSON array");
    assert!(!vectors.is_empty(), "golden.json holds no vectors");

    let mut failures = Vec::new();
    for v in &vectors {
        let (Some(ty), Some(hex)) = (v["struct"].as_str(), v["hex"].as_str()) else {
            failures.push(format!("malformed entry {v}"));
            continue;
        };
        let label = format!("{ty}/{}", v["name"].as_str().unwrap_or("?"));
        let bytes = match hex::decode(hex) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{label}: bad hex in golden.json: {e}"));
                continue;
            }
        };

        let run = mimid(
            &["inspect", "--type", ty, "--hex", "--json", "-"],
            hex.as_bytes(),
        );
        if run.code != Some(0) {
            failures.push(format!("{label}: does not decode: {}", run.stderr.trim()));
        } else {
            match serde_json::from_str::<serde_json::Value>(&run.stdout) {
                Ok(value) if value == v["value"] => {}
                Ok(value) => failures.push(format!(
                    "{label}: decodes to {value}, golden value is {}",
                    v["value"]
                )),
                Err(e) => failures.push(format!("{label}: output is not JSON: {e}")),
            }
        }
        // The tree view works too.
        let run = mimid(&["inspect", "--type", ty, "--hex", "-"], hex.as_bytes());
        if run.code != Some(0) {
            failures.push(format!("{label}: tree view fails: {}", run.stderr.trim()));
        }

        if let Some((_, head)) = bytes.split_last() {
            let run = mimid(
                &["inspect", "--type", ty, "--hex", "-"],
                hex::encode(head).as_bytes(),
            );
            if run.code != Some(2) || !run.stderr.contains(" at offset ") {
                failures.push(format!(
                    "{label}: truncated form: exit {:?}, stderr {:?}",
                    run.code, run.stderr
                ));
            }
        } else {
            failures.push(format!("{label}: empty encoding, cannot truncate"));
        }

        let mut long = bytes.clone();
        long.push(0x00);
        let run = mimid(
            &["inspect", "--type", ty, "--hex", "-"],
            hex::encode(&long).as_bytes(),
        );
        let expected = format!(" at offset {}: 1 trailing bytes", bytes.len());
        if run.code != Some(2) || !run.stderr.contains(&expected) {
            failures.push(format!(
                "{label}: over-long form: exit {:?}, stderr {:?} (expected {expected:?})",
                run.code, run.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden vectors fail:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

/// Every negative vector of `docs/protocol.md` section 11 is refused by
/// `inspect` (exit 2) with its field path and offset, and the answer a
/// receiver gives (`400 malformed_message` or `400 unsupported_version`).
#[test]
fn negative_vectors_are_refused_with_their_path_and_offset() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wire/vectors/negative.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the negative vector file {} is missing or unreadable ({e})",
            path.display()
        )
    });
    let vectors: Vec<serde_json::Value> =
        serde_json::from_str(&text).expect("negative.json is a JSON array");
    assert!(!vectors.is_empty(), "negative.json holds no vectors");

    let mut failures = Vec::new();
    for v in &vectors {
        let (Some(ty), Some(hex), Some(field), Some(offset), Some(code), Some(status)) = (
            v["struct"].as_str(),
            v["hex"].as_str(),
            v["path"].as_str(),
            v["offset"].as_u64(),
            v["code"].as_str(),
            v["status"].as_u64(),
        ) else {
            failures.push(format!("malformed entry {v}"));
            continue;
        };
        let label = format!("{ty}/{}", v["name"].as_str().unwrap_or("?"));
        let run = mimid(&["inspect", "--type", ty, "--hex", "-"], hex.as_bytes());
        let located = format!("error: cannot decode as {ty}: {field} at offset {offset}: ");
        let answer = format!("note: a receiver refuses it with {status} {code}\n");
        if run.code != Some(2)
            || !run.stdout.is_empty()
            || !run.stderr.starts_with(&located)
            || !run.stderr.contains(&answer)
        {
            failures.push(format!(
                "{label}: exit {:?}, stderr {:?} (expected {located:?} and {answer:?})",
                run.code, run.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} negative vectors fail:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn a_body_of_another_version_is_unsupported_not_malformed() {
    // A DSRequest of version 2 whose rest is no DSRequest of version 1.
    let run = mimid(
        &["inspect", "--endpoint", "/group_operation", "--hex", "-"],
        b"0002ffffffff",
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.starts_with(
            "error: cannot decode as DSRequest: DSRequest.version at offset 0: \
             unsupported protocol version 2"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("note: a receiver refuses it with 400 unsupported_version"),
        "{}",
        run.stderr
    );
}
