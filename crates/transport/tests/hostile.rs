//! Hostile input over real HTTPS (issue 12, item 4): a federation of real
//! hubs on SQLite files, each on its own 127.0.0.x address, with real
//! OpenMLS clients, takes random bodies and bodies mutated from the golden
//! vectors (and from live requests), validly signed so that they reach the
//! decoders; wrong methods, paths and content types; truncated, oversized
//! and slowly sent bodies; bad headers; and bodies that decode but lie
//! (wrong group, wrong epoch, someone else's signature, replays).
//!
//! Every answer must carry the documented status (`docs/protocol.md` 3.1,
//! 4, 6.2, 7, 9, 10) in the endpoint's response struct, an undecodable
//! signed body exactly the decoder's 400 error, and the server must keep
//! answering with nothing of any provider's state, queues or outbox
//! changed.
//!
//! The random and mutated cases come from a seeded generator: the default
//! run is bounded (a few seconds of cases); `MIMID_HOSTILE_CASES=N` sets the
//! number of cases per endpoint and category for a longer run, and
//! `MIMID_HOSTILE_SEED=S` another seed (README, "Hostile input").

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mimid_core::DsEndpoint;
use mimid_store::Store as _;
use mimid_transport::auth::AuthMode;
use mimid_transport::ratelimit::RateLimits;
use mimid_transport::server::Endpoint;
use mimid_transport::signature::{PROVIDER_SIGNATURE_HEADER, SENDER_HEADER, decode_header};
use mimid_transport::{Clock as _, ProviderKey, tls};
use mimid_wire::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const OCTET: &str = "application/octet-stream";

/// Requests in flight at once (the machine has two cores).
const IN_FLIGHT: usize = 6;

/// Cases made and sent at once.
const CHUNK: usize = 1_000;

/// Between chunks: the federation's clock moves past the replay window,
/// so that a long run's spent nonces expire instead of filling the
/// bounded replay caches (which would answer 503).
fn next_chunk(w: &World) {
    w.f.clock.advance(601);
}

// ---------------------------------------------------------------------------
// The generator.

/// SplitMix64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Cases per endpoint and category (`MIMID_HOSTILE_CASES`, default 40).
fn cases() -> usize {
    std::env::var("MIMID_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn seed() -> u64 {
    std::env::var("MIMID_HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// A random body: short or long, often starting with version 1 so that
/// decoding goes past the version check.
fn random_body(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(4) {
        0 => rng.below(8),
        1 => rng.below(64),
        2 => rng.below(600),
        _ => rng.below(4096),
    };
    let mut body = rng.bytes(len);
    if body.len() >= 2 && rng.below(3) != 0 {
        body[0] = 0;
        body[1] = 1;
    }
    if body.len() >= 3 && rng.below(2) == 0 {
        // A small tag or length next, as real bodies have.
        body[2] = rng.below(20) as u8;
    }
    body
}

/// The ways a valid body is mutated.
const MUTATIONS: [&str; 6] = [
    "bit flips",
    "truncation",
    "extension",
    "length field",
    "splice",
    "byte overwrite",
];

/// `base` mutated one way; never equal to `base`.
fn mutate(rng: &mut Rng, base: &[u8], how: &str) -> Vec<u8> {
    let mut body = base.to_vec();
    match how {
        "bit flips" => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(body.len());
                body[i] ^= 1 << rng.below(8);
            }
        }
        "truncation" => body.truncate(rng.below(body.len())),
        "extension" => {
            let extra = match rng.below(3) {
                0 => {
                    let n = 1 + rng.below(64);
                    rng.bytes(n)
                }
                1 => vec![0; 1 + rng.below(8)],
                _ => base[rng.below(base.len())..].to_vec(),
            };
            body.extend_from_slice(&extra);
        }
        "length field" => {
            // A byte that can be a one-byte vector length (RFC 9420
            // varint, < 64): made longer, shorter, zero, the largest, a
            // non-minimal or reserved encoding, or a huge one.
            let candidates: Vec<usize> = (0..body.len()).filter(|&i| body[i] < 0x40).collect();
            let i = if candidates.is_empty() {
                rng.below(body.len())
            } else {
                *rng.pick(&candidates)
            };
            let b = body[i];
            let replacement: Vec<u8> = match rng.below(7) {
                0 => vec![b.wrapping_add(1 + rng.below(4) as u8) & 0x3f],
                1 => vec![b.wrapping_sub(1 + rng.below(4) as u8) & 0x3f],
                2 => vec![0],
                3 => vec![0x3f],
                4 => vec![0x40, b],
                5 => vec![0xc0 | (rng.below(64) as u8)],
                _ => vec![0xbf, 0xff, 0xff, 0xff],
            };
            body.splice(i..i + 1, replacement);
        }
        "splice" => {
            let at = rng.below(body.len() + 1);
            let n = 1 + rng.below(16);
            let insert = rng.bytes(n);
            body.splice(at..at, insert);
        }
        _ => {
            let i = rng.below(body.len());
            body[i] = rng.next() as u8;
        }
    }
    if body == base {
        // A mutation that changed nothing: make it change something.
        body.push(0);
    }
    body
}

// ---------------------------------------------------------------------------
// The federation.

/// a.example hosts a group of Alice's that Bob of b.example joined; c.example
/// is a third provider (the liar); d.example is known but unreachable.
struct World {
    f: Federation,
    g: Group,
    http: reqwest::Client,
    /// The golden vectors: (struct, name, bytes).
    golden: Vec<(String, String, Vec<u8>)>,
}

const A: &str = "a.example";
const B: &str = "b.example";
const C: &str = "c.example";
const D: &str = "d.example";

/// Quiets one known panic: tls_codec 0.5's `debug_assert` on a vector
/// longer than its input, which `mimid_wire`'s MLS decoding catches and
/// answers as a decoding failure (only debug builds assert). Every other
/// panic is reported as usual.
fn quiet_caught_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let caught = info.location().is_some_and(|l| {
                l.file().contains("tls_codec") && l.file().ends_with("quic_vec.rs")
            });
            if !caught {
                default(info);
            }
        }));
    });
}

async fn world(first_ip: u8) -> World {
    quiet_caught_decoder_panics();
    let off = RateLimits {
        per_ip: None,
        per_provider: None,
        per_group: None,
        per_member: None,
        per_target_user: None,
        max_keys: 1_000,
    };
    let mut setups = [
        Setup::new(A, [127, 0, 0, first_ip], AuthMode::Signature),
        Setup::new(B, [127, 0, 0, first_ip + 1], AuthMode::Signature),
        Setup::new(C, [127, 0, 0, first_ip + 2], AuthMode::Signature),
    ];
    for s in &mut setups {
        s.rate_limits = Some(off.clone());
    }
    // Nothing listens on port 1: d.example's keys cannot be fetched.
    let dead = format!("127.0.0.{}:1", first_ip + 3);
    let f = Federation::with_overrides(&setups, &[(D, &dead)]).await;
    let g = group(&f).await;
    let b = f.p(B).service.store();
    b.add_user("mimi://b.example/u/bob".into(), now())
        .await
        .unwrap();
    b.add_client(BOB.into(), "mimi://b.example/u/bob".into(), now())
        .await
        .unwrap();
    let http = f.raw_client(None);
    World {
        f,
        g,
        http,
        golden: golden(),
    }
}

fn golden() -> Vec<(String, String, Vec<u8>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wire/vectors/golden.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["struct"].as_str().unwrap().to_owned(),
                v["name"].as_str().unwrap().to_owned(),
                hex::decode(v["hex"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

impl World {
    fn addr(&self, provider: &str) -> SocketAddr {
        self.f.p(provider).addr
    }

    fn key(&self, provider: &str) -> ProviderKey {
        self.f.p(provider).keys.current().clone()
    }

    /// The golden vectors of `name`d structs.
    fn vectors(&self, structs: &[&str]) -> Vec<Vec<u8>> {
        self.golden
            .iter()
            .filter(|(s, _, _)| structs.contains(&s.as_str()))
            .map(|(_, _, hex)| hex.clone())
            .collect()
    }
}

/// Where the hostile cases of an endpoint go and who signs them: the DS
/// endpoints go to the hub a.example, signed by b.example (the golden DS
/// vectors are for a.example's groups); the queueing and KeyPackage
/// endpoints to b.example, signed by c.example, which may not send what
/// their golden vectors say (they name a.example as the sender or
/// requester), so that a body that still decodes is refused; the
/// unsigned ones to a.example.
fn route(endpoint: Endpoint) -> (&'static str, Option<&'static str>) {
    match endpoint {
        Endpoint::GroupOperation
        | Endpoint::WelcomeInformation
        | Endpoint::ExternalCommitInformation => (A, Some(B)),
        Endpoint::DeliverMessage
        | Endpoint::ConnectionRequest
        | Endpoint::ConnectionKeyPackages
        | Endpoint::GroupKeyPackages => (B, Some(C)),
        Endpoint::VerificationKey | Endpoint::WellKnown => (A, None),
    }
}

/// The methods an endpoint takes.
fn methods(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::WelcomeInformation
        | Endpoint::ExternalCommitInformation
        | Endpoint::VerificationKey => &["POST", "GET"],
        Endpoint::WellKnown => &["GET"],
        _ => &["POST"],
    }
}

fn is_qs(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::DeliverMessage | Endpoint::ConnectionRequest
    )
}

// ---------------------------------------------------------------------------
// What is observed.

/// Everything a refused request must leave as it was, on every provider.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    providers: BTreeMap<String, ProviderState>,
}

#[derive(Debug, PartialEq, Eq)]
struct ProviderState {
    groups: u64,
    messages: u64,
    inbox: u64,
    /// Pending jobs by destination (ids and attempts).
    jobs: BTreeMap<String, Vec<(i64, u32)>>,
    /// The group's stored version and epoch (a.example's group).
    version: Option<u64>,
    epoch: Option<u64>,
    users: usize,
    /// Connection requests waiting for Bob (b.example).
    connection_requests: usize,
}

async fn observe(w: &World) -> Observed {
    let mut providers = BTreeMap::new();
    for name in [A, B, C] {
        let p = w.f.p(name);
        let store = p.service.store();
        let mut jobs = BTreeMap::new();
        for destination in store.job_destinations().await.unwrap() {
            let pending = store.pending_jobs(&destination, 100_000).await.unwrap();
            jobs.insert(
                destination,
                pending.iter().map(|j| (j.id, j.attempts)).collect(),
            );
        }
        let gid = w.g.id.to_mls_bytes();
        providers.insert(
            name.to_owned(),
            ProviderState {
                groups: store.group_count().await.unwrap(),
                messages: store.message_count().await.unwrap(),
                inbox: store.inbox_count().await.unwrap(),
                jobs,
                version: store.group_version(&gid).await.unwrap(),
                epoch: p.service.group_epoch(&w.g.id).await.unwrap().map(|e| e.0),
                users: store.users().await.unwrap().len(),
                connection_requests: store
                    .connection_requests("mimi://b.example/u/bob")
                    .await
                    .unwrap()
                    .len(),
            },
        );
    }
    Observed { providers }
}

/// Every provider still answers: the well-known path and its keys.
async fn healthy(w: &World) {
    for name in [A, B, C] {
        let addr = w.addr(name);
        let res = w
            .http
            .get(format!("https://{addr}/.well-known/mimi/ds-domain"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name} stopped answering: {e}"));
        assert_eq!(res.status(), 200, "{name}");
        let text = res.text().await.unwrap();
        assert_eq!(text, format!("ds.{name}:{}\n", addr.port()));
        let res = w
            .http
            .get(format!("https://{addr}/verification_key"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{name}");
    }
}

/// After a batch: every provider answers and nothing changed.
async fn unchanged(w: &World, before: &Observed, batch: &str) {
    healthy(w).await;
    assert_eq!(
        &observe(w).await,
        before,
        "{batch}: a refused request changed the state"
    );
}

// ---------------------------------------------------------------------------
// Requests, answers and what is expected of them.

/// What an answer must be.
#[derive(Clone, Debug)]
enum Expect {
    /// Exactly this error (a decoding failure: its code, its detail).
    Exactly(DSError),
    /// An error with this code.
    Code(ErrorCode),
    /// A refusal after decoding: a registered 4xx code other than those of
    /// the checks before decoding (404 path, 405, 413, 415, 429).
    Refused,
    /// 200 with the endpoint's ok arm.
    Ok,
    /// A refusal or 200, for a request that changes nothing either way
    /// (the information endpoints, a repeated delivery).
    RefusedOrOk,
    /// The HTTP layer's refusal (hyper's, before any handler: 400, or 431
    /// for a `Content-Length` of 2^64 - 2 or more, which hyper keeps for
    /// its own markers), with any body, or no answer at all before the connection
    /// closes.
    HttpRefusal { status: u16, or_silence: bool },
    /// The well-known answer.
    WellKnown,
    /// 405 to a HEAD (no body).
    HeadNotAllowed,
    /// A refusal of the client API: a 4xx JSON error naming a registered
    /// code whose status it carries.
    ClientApiRefused,
}

/// One hostile request.
#[derive(Clone, Debug)]
struct Case {
    category: &'static str,
    provider: &'static str,
    endpoint: Option<Endpoint>,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expect: Expect,
    /// Whether the body was authenticated: a refusal of a queueing
    /// endpoint echoes its `message_id` only then (3.1).
    authenticated: bool,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// What each category tried.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, usize>>);

impl Tally {
    fn add(&self, category: &str, n: usize) {
        *self
            .0
            .lock()
            .unwrap()
            .entry(category.to_owned())
            .or_default() += n;
    }

    fn print(&self, test: &str, started: Instant) {
        let counts = self.0.lock().unwrap();
        let total: usize = counts.values().sum();
        for (category, n) in counts.iter() {
            println!("hostile [{test}] {category}: {n} cases");
        }
        println!(
            "hostile [{test}] total: {total} cases in {:.1} s (seed {}, MIMID_HOSTILE_CASES={})",
            started.elapsed().as_secs_f64(),
            seed(),
            cases()
        );
    }
}

async fn send(w: &World, case: &Case) -> Answer {
    let url = format!("https://{}{}", w.addr(case.provider), case.path);
    let mut request = w
        .http
        .request(case.method.parse().unwrap(), url)
        .timeout(Duration::from_secs(30))
        .body(case.body.clone());
    for (k, v) in &case.headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let res = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer to {}: {e}", describe(case)));
    Answer {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: res.bytes().await.unwrap().to_vec(),
    }
}

fn describe(case: &Case) -> String {
    let shown = &case.body[..case.body.len().min(48)];
    format!(
        "[{}] {} {} on {} headers {:?} body ({} bytes) {}…",
        case.category,
        case.method,
        case.path,
        case.provider,
        case.headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", &v[..v.len().min(24)]))
            .collect::<Vec<_>>(),
        case.body.len(),
        hex::encode(shown)
    )
}

/// The error of an answer, read as the endpoint's response struct, and
/// the `message_id` a queueing answer echoes; `None` for an ok arm.
fn refusal(endpoint: Option<Endpoint>, body: &[u8]) -> Option<(DSError, Option<MessageId>)> {
    let limits = Limits::default();
    match endpoint {
        Some(Endpoint::DeliverMessage | Endpoint::ConnectionRequest) => {
            let r = QueueingServiceResponse::decode_exact(body, &limits)
                .unwrap_or_else(|e| panic!("not a QueueingServiceResponse: {e}"));
            match r.result {
                QueueingServiceResult::Error(e) => Some((e, Some(r.message_id))),
                QueueingServiceResult::Ok(_) => None,
            }
        }
        Some(Endpoint::VerificationKey) => {
            match VerificationKeyResponse::decode_exact(body, &limits)
                .unwrap_or_else(|e| panic!("not a VerificationKeyResponse: {e}"))
                .result
            {
                VerificationKeyResult::Error(e) => Some((e, None)),
                VerificationKeyResult::Ok(_) => None,
            }
        }
        Some(Endpoint::ConnectionKeyPackages) => {
            match ConnectionKeyPackageResponse::decode_exact(body, &limits)
                .unwrap_or_else(|e| panic!("not a ConnectionKeyPackageResponse: {e}"))
                .result
            {
                KeyPackagesResult::Error(e) => Some((e, None)),
                KeyPackagesResult::Ok(_) => None,
            }
        }
        Some(Endpoint::GroupKeyPackages) => {
            match GroupKeyPackageResponse::decode_exact(body, &limits)
                .unwrap_or_else(|e| panic!("not a GroupKeyPackageResponse: {e}"))
                .result
            {
                KeyPackagesResult::Error(e) => Some((e, None)),
                KeyPackagesResult::Ok(_) => None,
            }
        }
        _ => match DSResponse::decode_exact(body, &limits)
            .unwrap_or_else(|e| panic!("not a DSResponse: {e}"))
            .response_body
        {
            DSResponseBody::Error(e) => Some((e, None)),
            _ => None,
        },
    }
}

/// The `message_id` of a queueing body, if it is long enough to hold one
/// at its place (3.1).
fn message_id_of(body: &[u8]) -> Option<MessageId> {
    let limits = Limits::default();
    let mut reader = Reader::new(body, &limits);
    u16::decode(&mut reader).ok()?;
    ProviderDomain::decode(&mut reader).ok()?;
    ProviderDomain::decode(&mut reader).ok()?;
    MessageId::decode(&mut reader).ok()
}

/// Checks an answer against its case; returns what it was (status and
/// error code).
fn check(case: &Case, answer: &Answer) -> String {
    let what = || {
        format!(
            "{} answered {} {}",
            describe(case),
            answer.status,
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
        )
    };
    match &case.expect {
        Expect::WellKnown => {
            assert_eq!(answer.status, 200, "{}", what());
            let text = String::from_utf8(answer.body.clone()).unwrap();
            assert!(
                text.starts_with(&format!("ds.{}:", case.provider)),
                "{}",
                what()
            );
            return "200 well-known answer".into();
        }
        Expect::ClientApiRefused => {
            #[derive(serde::Deserialize)]
            struct ErrorBody {
                code: String,
                #[allow(dead_code)]
                message: String,
            }
            let e: ErrorBody = serde_json::from_slice(&answer.body)
                .unwrap_or_else(|e| panic!("not a client API error ({e}): {}", what()));
            let known = (1..=30u16)
                .map(ErrorCode::from_u16)
                .find(|c| c.name() == e.code)
                .unwrap_or_else(|| panic!("an unregistered code: {}", what()));
            assert_eq!(answer.status, known.http_status(), "{}", what());
            assert!((400..500).contains(&answer.status), "{}", what());
            return format!("{} {} (client API)", answer.status, e.code);
        }
        Expect::HeadNotAllowed => {
            assert_eq!(answer.status, 405, "{}", what());
            return "405 (HEAD, no body)".into();
        }
        Expect::HttpRefusal { status, .. } => {
            assert_eq!(answer.status, *status, "{}", what());
            // The server's own answer (a body that could not be read) is
            // the endpoint's struct with `malformed_message`.
            let ours = answer
                .headers
                .get("content-type")
                .is_some_and(|t| t == OCTET);
            if !ours {
                return format!("{status} from the HTTP layer");
            }
            let (error, _) = refusal(case.endpoint, &answer.body).expect("an error arm");
            assert_eq!(error.code, ErrorCode::MalformedMessage, "{}", what());
            return format!("{status} {} (body not read)", error.code.name());
        }
        _ => {}
    }
    let content_type = answer
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some(OCTET), "{}", what());
    let Some((error, echoed)) = refusal(case.endpoint, &answer.body) else {
        assert_eq!(
            answer.status,
            200,
            "an ok arm with another status: {}",
            what()
        );
        assert!(
            matches!(case.expect, Expect::Ok | Expect::RefusedOrOk),
            "accepted: {}",
            what()
        );
        return "200 ok".into();
    };
    assert_eq!(
        answer.status,
        error.code.http_status(),
        "the status is not the code's: {} ({error})",
        what()
    );
    assert!(
        !matches!(error.code, ErrorCode::Unknown(_)),
        "an unregistered code: {}",
        what()
    );
    if let ErrorDetail::RetryAfter(seconds) = error.detail {
        let retry = answer
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap());
        assert_eq!(retry, Some(seconds.to_string().as_str()), "{}", what());
    }
    if is_qs_endpoint(case.endpoint) {
        let expected = if case.authenticated {
            message_id_of(&case.body).unwrap_or(MessageId([0; 16]))
        } else {
            MessageId([0; 16])
        };
        assert_eq!(echoed, Some(expected), "the echoed message_id: {}", what());
    }
    match &case.expect {
        Expect::Exactly(expected) => assert_eq!(&error, expected, "{}", what()),
        Expect::Code(code) => assert_eq!(error.code, *code, "{error}: {}", what()),
        Expect::Refused | Expect::RefusedOrOk => {
            assert!(
                (400..500).contains(&answer.status)
                    && !matches!(
                        error.code,
                        ErrorCode::NotFound
                            | ErrorCode::MethodNotAllowed
                            | ErrorCode::PayloadTooLarge
                            | ErrorCode::UnsupportedMediaType
                            | ErrorCode::RateLimited
                    ),
                "not a refusal after decoding ({error}): {}",
                what()
            );
        }
        Expect::Ok => panic!("refused ({error}): {}", what()),
        _ => unreachable!(),
    }
    format!("{} {}", answer.status, error.code.name())
}

fn is_qs_endpoint(endpoint: Option<Endpoint>) -> bool {
    endpoint.is_some_and(is_qs)
}

/// Sends the cases, `IN_FLIGHT` at a time, and checks every answer.
async fn run(w: &Arc<World>, tally: &Arc<Tally>, cases: Vec<Case>) -> BTreeMap<String, usize> {
    let codes = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let cases = Arc::new(Mutex::new(cases.into_iter()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (w, tally, codes, cases) = (w.clone(), tally.clone(), codes.clone(), cases.clone());
        workers.spawn(async move {
            loop {
                let Some(case) = cases.lock().unwrap().next() else {
                    break;
                };
                let answer = send(&w, &case).await;
                let name = check(&case, &answer);
                tally.add(case.category, 1);
                *codes.lock().unwrap().entry(name).or_default() += 1;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    Arc::try_unwrap(codes).unwrap().into_inner().unwrap()
}

/// A case for `endpoint` with `body`, signed as its route says, and what
/// its answer must be: an undecodable body exactly the decoder's error, a
/// decodable one a refusal (or, on the endpoints that change nothing,
/// possibly 200).
fn body_case(
    w: &World,
    category: &'static str,
    endpoint: Endpoint,
    method: &str,
    body: Vec<u8>,
) -> Case {
    let (provider, signer) = route(endpoint);
    let limits = Limits::default();
    let decoded = |r: Result<(), DecodeError>, refused: Expect| match r {
        Err(e) => Expect::Exactly(e.to_ds_error()),
        Ok(()) => refused,
    };
    let expect = match endpoint {
        Endpoint::GroupOperation => decoded(
            DSRequest::decode_exact(&body, &limits).map(drop),
            Expect::Refused,
        ),
        Endpoint::WelcomeInformation | Endpoint::ExternalCommitInformation => decoded(
            DSRequest::decode_exact(&body, &limits).map(drop),
            Expect::RefusedOrOk,
        ),
        Endpoint::DeliverMessage | Endpoint::ConnectionRequest => decoded(
            QueueingServiceRequest::decode_exact(&body, &limits).map(drop),
            Expect::Refused,
        ),
        Endpoint::ConnectionKeyPackages => decoded(
            ConnectionKeyPackageRequest::decode_exact(&body, &limits).map(drop),
            Expect::Refused,
        ),
        Endpoint::GroupKeyPackages => decoded(
            GroupKeyPackageRequest::decode_exact(&body, &limits).map(drop),
            Expect::Refused,
        ),
        Endpoint::VerificationKey if method == "GET" && body.is_empty() => Expect::Ok,
        Endpoint::VerificationKey => match VerificationKeyRequest::decode_exact(&body, &limits) {
            Err(e) => Expect::Exactly(e.to_ds_error()),
            Ok(r) if r.provider == domain(provider) => Expect::Ok,
            Ok(_) => Expect::Code(ErrorCode::WrongRecipient),
        },
        Endpoint::WellKnown => Expect::WellKnown,
    };
    let mut headers = vec![("content-type".to_owned(), OCTET.to_owned())];
    if let Some(signer) = signer {
        headers.push((
            PROVIDER_SIGNATURE_HEADER.to_owned(),
            sign(
                &w.key(signer),
                signer,
                provider,
                method,
                endpoint.path(),
                &body,
                w.f.clock.now(),
            ),
        ));
    }
    Case {
        category,
        provider,
        endpoint: Some(endpoint),
        method: method.to_owned(),
        path: endpoint.path().to_owned(),
        headers,
        body,
        expect,
        authenticated: true,
    }
}

/// The valid bodies an endpoint's mutations start from: its golden vectors
/// (the DS endpoints take every DSRequest, so that a request of another
/// endpoint is tried too) and, for the DS endpoints, live requests of the
/// group's members.
fn bases(w: &World, endpoint: Endpoint, live: &[Vec<u8>]) -> Vec<Vec<u8>> {
    match endpoint {
        Endpoint::GroupOperation
        | Endpoint::WelcomeInformation
        | Endpoint::ExternalCommitInformation => {
            let mut v = w.vectors(&["DSRequest"]);
            v.extend_from_slice(live);
            v
        }
        Endpoint::DeliverMessage | Endpoint::ConnectionRequest => {
            w.vectors(&["QueueingServiceRequest"])
        }
        Endpoint::ConnectionKeyPackages => w.vectors(&["ConnectionKeyPackageRequest"]),
        Endpoint::GroupKeyPackages => w.vectors(&["GroupKeyPackageRequest"]),
        Endpoint::VerificationKey => w.vectors(&["VerificationKeyRequest"]),
        Endpoint::WellKnown => w.vectors(&["ProviderDomain", "VerificationKeyRequest"]),
    }
}

fn print_codes(test: &str, batch: &str, codes: &BTreeMap<String, usize>) {
    let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
    println!("hostile [{test}] {batch} answers: {}", list.join(", "));
}

// ---------------------------------------------------------------------------
// The tests.

/// Random and mutated bodies, validly signed, on every endpoint: each
/// undecodable one gets exactly its decoding error (400), each decodable
/// one a documented refusal; nothing changes and every provider answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_bodies_reach_the_decoders_and_change_nothing() {
    let started = Instant::now();
    let mut w = world(10).await;
    // Live requests of the group's members, never sent: Bob's message and
    // commit, and his information requests (read-only).
    let live = vec![
        w.g.bob
            .send_message(&w.g.id, b"live")
            .unwrap()
            .to_bytes()
            .unwrap(),
        w.g.bob.update(&w.g.id).unwrap().to_bytes().unwrap(),
        DSRequest {
            version: 1,
            request_body: DSRequestBody::ExternalCommitInformation(
                ExternalCommitInformationRequest {
                    group_id: GroupIdField(w.g.id.clone()),
                    requester: BOB.parse().unwrap(),
                },
            ),
            authentication_data: DSAuthData::Anonymous,
        }
        .to_bytes()
        .unwrap(),
    ];
    w.g.bob.clear_pending_commit(&w.g.id).unwrap();
    let w = Arc::new(w);
    let tally = Arc::new(Tally::default());
    let before = observe(&w).await;
    let mut rng = Rng(seed());
    let n = cases();
    for endpoint in Endpoint::ALL {
        let bases = bases(&w, endpoint, &live);
        // What to try: random bodies, then each mutation in turn; made and
        // sent in chunks, so that a long run stays small in memory.
        let mut todo: Vec<&str> = vec!["random"; n];
        for how in MUTATIONS {
            todo.extend(std::iter::repeat_n(
                how,
                n.div_ceil(MUTATIONS.len()).max(1) * 2,
            ));
        }
        let mut codes = BTreeMap::new();
        for chunk in todo.chunks(CHUNK) {
            let batch = chunk
                .iter()
                .map(|&how| {
                    let method = *rng.pick(methods(endpoint));
                    if how == "random" {
                        let body = random_body(&mut rng);
                        return body_case(&w, "random body", endpoint, method, body);
                    }
                    let base = rng.pick(&bases).clone();
                    let category = match how {
                        "bit flips" => "mutated: bit flips",
                        "truncation" => "mutated: truncation",
                        "extension" => "mutated: extension",
                        "length field" => "mutated: length field",
                        "splice" => "mutated: splice",
                        _ => "mutated: byte overwrite",
                    };
                    let body = mutate(&mut rng, &base, how);
                    body_case(&w, category, endpoint, method, body)
                })
                .collect();
            for (k, v) in run(&w, &tally, batch).await {
                *codes.entry(k).or_default() += v;
            }
            next_chunk(&w);
        }
        print_codes("bodies", endpoint.path(), &codes);
        unchanged(&w, &before, endpoint.path()).await;
    }
    // The client API (JSON, signed by the provider's own clients): random
    // bodies and random or missing client headers on every route; each is
    // refused with a documented JSON error.
    let routes = [
        ("POST", "/client/v1/enrol"),
        ("POST", "/client/v1/key_packages"),
        ("GET", "/client/v1/queue?after=0&wait=0"),
        ("POST", "/client/v1/ack"),
        ("POST", "/client/v1/key_packages/fetch"),
        ("POST", "/client/v1/connect"),
        ("GET", "/client/v1/connection_requests"),
        ("POST", "/client/v1/connection_requests/settle"),
        ("POST", "/client/v1/ds/group_operation"),
        ("POST", "/client/v1/ds/nope"),
    ];
    let mut codes = BTreeMap::new();
    let todo: Vec<(&str, &str)> = routes
        .iter()
        .flat_map(|&r| std::iter::repeat_n(r, n.div_ceil(2)))
        .collect();
    for chunk in todo.chunks(CHUNK) {
        let mut batch = Vec::new();
        for &(method, path) in chunk {
            let mut body = random_body(&mut rng);
            if rng.below(2) == 0 {
                // Something like JSON.
                let key_len = rng.below(40);
                body = format!(
                    "{{\"secret\":\"{}\",\"client\":\"{ALICE}\",\"key\":\"{}\"}}",
                    hex::encode(rng.bytes(8)),
                    hex::encode(rng.bytes(key_len))
                )
                .into_bytes();
                let cut = rng.below(body.len() + 1);
                if rng.below(2) == 0 {
                    body.truncate(cut);
                }
            }
            let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
            if rng.below(2) == 0 {
                use mimid_wire::client_api::*;
                headers.push((CLIENT_HEADER.into(), ALICE.into()));
                headers.push((TIMESTAMP_HEADER.into(), w.f.clock.now().to_string()));
                headers.push((NONCE_HEADER.into(), hex::encode(rng.bytes(16))));
                let n = if rng.below(2) == 0 { 64 } else { rng.below(80) };
                headers.push((
                    SIGNATURE_HEADER.into(),
                    base64::Engine::encode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        rng.bytes(n),
                    ),
                ));
            }
            batch.push(Case {
                category: "client API: random body and headers",
                provider: A,
                endpoint: None,
                method: method.into(),
                path: path.into(),
                headers,
                body,
                expect: Expect::ClientApiRefused,
                authenticated: false,
            });
        }
        for (k, v) in run(&w, &tally, batch).await {
            *codes.entry(k).or_default() += v;
        }
        next_chunk(&w);
    }
    print_codes("bodies", "client API", &codes);
    unchanged(&w, &before, "client API").await;
    tally.print("bodies", started);
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 over TLS, for what an HTTP library will not send.

/// A TLS 1.3 connection to `addr`, speaking HTTP/1.1.
async fn tls_connect(
    w: &World,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut config = tls::client_config(w.f.roots.clone(), None).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    connector.connect(name, tcp).await.unwrap()
}

/// How a raw request's body is written.
enum Pace {
    /// All at once.
    Whole,
    /// In `n` pieces with `gap` between them.
    Slow { pieces: usize, gap: Duration },
    /// Only the first `n` bytes, then the connection is closed for writing.
    CutAfter(usize),
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` on a new connection, then reads the answer: `None` if the
/// server closed the connection without one.
async fn raw_request(
    w: &World,
    provider: &str,
    head: &str,
    body: &[u8],
    pace: Pace,
) -> Option<(u16, reqwest::header::HeaderMap, Vec<u8>)> {
    let mut stream = tls_connect(w, w.addr(provider)).await;
    let head = format!(
        "{head}\r\nhost: {}\r\nconnection: close\r\n\r\n",
        w.addr(provider)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before the body is written: write
    // errors are not the test's concern, the answer is.
    let _ = async {
        match pace {
            Pace::Whole => stream.write_all(body).await?,
            Pace::Slow { pieces, gap } => {
                let size = body.len().div_ceil(pieces).max(1);
                for piece in body.chunks(size) {
                    stream.write_all(piece).await?;
                    stream.flush().await?;
                    tokio::time::sleep(gap).await;
                }
            }
            Pace::CutAfter(n) => {
                stream.write_all(&body[..n]).await?;
                stream.flush().await?;
                stream.shutdown().await?;
            }
        }
        stream.flush().await
    }
    .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the server neither answered nor closed the connection");
    // A reset after the answer was read still leaves the answer.
    if read.is_err() && answer.is_empty() {
        return None;
    }
    parse_answer(&answer)
}

/// Status, headers and body of an HTTP/1.1 answer.
fn parse_answer(raw: &[u8]) -> Option<(u16, reqwest::header::HeaderMap, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        headers.append(
            reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            v.trim().parse().unwrap(),
        );
    }
    let mut body = raw[end + 4..].to_vec();
    if let Some(length) = headers.get("content-length") {
        body.truncate(length.to_str().unwrap().parse().unwrap());
    }
    Some((status, headers, body))
}

/// Runs raw cases (each on its own connection, `IN_FLIGHT` at a time).
async fn run_raw(
    w: &Arc<World>,
    tally: &Arc<Tally>,
    cases: Vec<(Case, String, Pace)>,
) -> BTreeMap<String, usize> {
    let codes = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let cases = Arc::new(Mutex::new(cases.into_iter()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (w, tally, codes, cases) = (w.clone(), tally.clone(), codes.clone(), cases.clone());
        workers.spawn(async move {
            loop {
                let Some((case, head, pace)) = cases.lock().unwrap().next() else {
                    break;
                };
                let answer = raw_request(&w, case.provider, &head, &case.body, pace).await;
                let name = match answer {
                    None => {
                        assert!(
                            matches!(
                                case.expect,
                                Expect::HttpRefusal {
                                    or_silence: true,
                                    ..
                                }
                            ),
                            "no answer: {}",
                            describe(&case)
                        );
                        "closed without an answer".to_owned()
                    }
                    Some((status, headers, body)) => check(
                        &case,
                        &Answer {
                            status,
                            headers,
                            body,
                        },
                    ),
                };
                tally.add(case.category, 1);
                *codes.lock().unwrap().entry(name).or_default() += 1;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    Arc::try_unwrap(codes).unwrap().into_inner().unwrap()
}

/// The request line and headers of a case, for a raw request, with a
/// `content-length` of `length` (none if `None`).
fn head_of(case: &Case, length: Option<&str>) -> String {
    let mut head = format!("{} {} HTTP/1.1", case.method, case.path);
    for (k, v) in &case.headers {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    if let Some(length) = length {
        head.push_str(&format!("\r\ncontent-length: {length}"));
    }
    head
}

/// A validly signed body for each endpoint that decodes and is refused
/// after decoding (or, unsigned, answered): the golden vector its
/// hostile cases start from.
fn lying_body(w: &World, endpoint: Endpoint) -> Vec<u8> {
    bases(w, endpoint, &[]).swap_remove(0)
}

/// Signature headers, other headers, and the code they are answered with.
type BadHeaders = (Vec<String>, Vec<(String, String)>, ErrorCode);

/// Wrong methods and paths, wrong content types, oversized, truncated and
/// slowly sent bodies, a bad `Content-Length` and bad signature headers,
/// on every endpoint: each gets the answer of the first check it fails
/// (3.1: path 404, method 405, content type 415, size 413, authentication
/// 401/400/503), nothing changes and every provider answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_first_failed_checks_answer_and_change_nothing() {
    let started = Instant::now();
    let w = Arc::new(world(20).await);
    let tally = Arc::new(Tally::default());
    let before = observe(&w).await;
    let mut rng = Rng(seed() ^ 0x4854_5450);
    let refused_before = |case: &mut Case, code: ErrorCode| {
        case.expect = Expect::Code(code);
        case.authenticated = false;
    };

    // Wrong methods (405), on each endpoint, signed or not.
    let mut batch = Vec::new();
    for endpoint in Endpoint::ALL {
        let body = lying_body(&w, endpoint);
        for method in [
            "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO", "GET", "POST", "HEAD",
        ] {
            if methods(endpoint).contains(&method) {
                continue;
            }
            let mut case = body_case(&w, "wrong method", endpoint, method, body.clone());
            refused_before(&mut case, ErrorCode::MethodNotAllowed);
            if method == "HEAD" {
                case.expect = Expect::HeadNotAllowed;
            }
            batch.push(case);
        }
    }
    // Unknown paths (404 `not_found`, a DSResponse).
    for path in [
        "/nope",
        "/group_operation/",
        "/GROUP_OPERATION",
        "//group_operation",
        "/group_operation/x",
        "/.well-known/mimi/",
        "/.well-known/mimi/ds-domain/x",
        "/client/v1/nope",
        "/%00",
    ] {
        for method in ["POST", "GET"] {
            let mut case = body_case(
                &w,
                "unknown path",
                Endpoint::GroupOperation,
                method,
                lying_body(&w, Endpoint::GroupOperation),
            );
            case.endpoint = None;
            case.path = path.to_owned();
            refused_before(&mut case, ErrorCode::NotFound);
            batch.push(case);
        }
    }
    // Wrong content types (415), before authentication: with a valid
    // signature, and with none.
    for endpoint in Endpoint::ALL {
        if endpoint == Endpoint::WellKnown {
            continue;
        }
        let body = lying_body(&w, endpoint);
        for (i, types) in [
            vec!["text/plain"],
            vec!["application/json"],
            vec!["application/octet-streamx"],
            vec!["application/octet"],
            vec!["application/x-www-form-urlencoded"],
            vec!["multipart/form-data; boundary=x"],
            vec![""],
            vec!["octet-stream"],
            vec![],
            vec![OCTET, OCTET],
            vec![OCTET, "text/plain"],
        ]
        .into_iter()
        .enumerate()
        {
            for method in methods(endpoint) {
                let mut case = body_case(&w, "wrong content type", endpoint, method, body.clone());
                case.headers.retain(|(k, _)| k != "content-type");
                if i % 2 == 0 {
                    case.headers.retain(|(k, _)| k != PROVIDER_SIGNATURE_HEADER);
                }
                for t in &types {
                    case.headers.push(("content-type".into(), (*t).into()));
                }
                refused_before(&mut case, ErrorCode::UnsupportedMediaType);
                batch.push(case);
            }
        }
        // The media type is compared case-insensitively and its
        // parameters are ignored: these go on to the body's own answer.
        for t in [
            "APPLICATION/OCTET-STREAM",
            "application/octet-stream; charset=binary",
            " application/octet-stream ;x=y",
        ] {
            let method = *rng.pick(methods(endpoint));
            let mut case = body_case(
                &w,
                "content type with parameters",
                endpoint,
                method,
                body.clone(),
            );
            case.headers.retain(|(k, _)| k != "content-type");
            case.headers.push(("content-type".into(), t.into()));
            batch.push(case);
        }
    }
    // A GET of the information endpoints and of the keys without a
    // content type: only an empty body is acceptable.
    for endpoint in [
        Endpoint::WelcomeInformation,
        Endpoint::ExternalCommitInformation,
        Endpoint::VerificationKey,
    ] {
        let mut case = body_case(
            &w,
            "wrong content type",
            endpoint,
            "GET",
            lying_body(&w, endpoint),
        );
        case.headers.retain(|(k, _)| k != "content-type");
        refused_before(&mut case, ErrorCode::UnsupportedMediaType);
        batch.push(case);
    }
    // Bad signature headers (4.: 401 missing or failing, 400 malformed or
    // twice, 503 when the sender's keys cannot be fetched), with a body
    // that would otherwise be answered after decoding.
    for endpoint in Endpoint::ALL {
        let (provider, Some(signer)) = route(endpoint) else {
            continue;
        };
        let body = lying_body(&w, endpoint);
        let method = methods(endpoint)[0];
        let path = endpoint.path();
        let now = w.f.clock.now();
        let good = || sign(&w.key(signer), signer, provider, method, path, &body, now);
        let mut bad: Vec<BadHeaders> = vec![
            (vec![], vec![], ErrorCode::ProviderAuthenticationFailed),
            (vec![good(), good()], vec![], ErrorCode::MalformedMessage),
            (
                vec![good(), "!!".into()],
                vec![],
                ErrorCode::MalformedMessage,
            ),
            (vec!["".into()], vec![], ErrorCode::MalformedMessage),
            (
                vec!["not base64!".into()],
                vec![],
                ErrorCode::MalformedMessage,
            ),
            (
                vec![format!("{}=", good())],
                vec![],
                ErrorCode::MalformedMessage,
            ),
            // Another provider's key under this sender's name; the
            // sender's name on another's key.
            (
                vec![sign(&w.key(A), signer, provider, method, path, &body, now)],
                vec![],
                ErrorCode::ProviderAuthenticationFailed,
            ),
            (
                vec![sign(&w.key(signer), A, provider, method, path, &body, now)],
                vec![],
                ErrorCode::ProviderAuthenticationFailed,
            ),
            // A fresh key nobody publishes.
            (
                vec![sign(
                    &ProviderKey::generate(now - 10, now + 1000).unwrap(),
                    signer,
                    provider,
                    method,
                    path,
                    &body,
                    now,
                )],
                vec![],
                ErrorCode::ProviderAuthenticationFailed,
            ),
            // Signed for another recipient, path, method, body, time.
            (
                vec![sign(&w.key(signer), signer, C, method, path, &body, now)],
                vec![],
                ErrorCode::ProviderAuthenticationFailed,
            ),
            (
                vec![sign(
                    &w.key(signer),
                    signer,
                    provider,
                    method,
                    "/x",
                    &body,
                    now,
                )],
                vec![],
                ErrorCode::ProviderAuthenticationFailed,
            ),
            (
                vec![sign(
                    &w.key(signer),
                    signer,
                    provider,
                    "PUT",
                    path,
                    &body,
                    now,
                )],
                vec![],
                ErrorCode::ProviderAuthenticationFailed,
            ),
            (
                vec![sign(
                    &w.key(signer),
                    signer,
                    provider,
                    method,
                    path,
                    b"",
                    now,
                )],
                vec![],
                ErrorCode::ProviderAuthenticationFailed,
            ),
            (
                vec![sign(
                    &w.key(signer),
                    signer,
                    provider,
                    method,
                    path,
                    &body,
                    now - 301,
                )],
                vec![],
                ErrorCode::ProviderAuthenticationFailed,
            ),
            (
                vec![sign(
                    &w.key(signer),
                    signer,
                    provider,
                    method,
                    path,
                    &body,
                    now + 301,
                )],
                vec![],
                ErrorCode::ProviderAuthenticationFailed,
            ),
            // A `MIMI-Sender` that is not the signature's sender, that is
            // no domain, or twice.
            (
                vec![good()],
                vec![(SENDER_HEADER.into(), if signer == C { B } else { C }.into())],
                ErrorCode::ProviderAuthenticationFailed,
            ),
            (
                vec![good()],
                vec![(SENDER_HEADER.into(), "not a domain".into())],
                ErrorCode::MalformedMessage,
            ),
            (
                vec![good()],
                vec![
                    (SENDER_HEADER.into(), signer.into()),
                    (SENDER_HEADER.into(), signer.into()),
                ],
                ErrorCode::MalformedMessage,
            ),
            // A sender whose keys cannot be fetched: 503, never 401.
            (
                vec![sign(&w.key(signer), D, provider, method, path, &body, now)],
                vec![],
                ErrorCode::Unavailable,
            ),
        ];
        // Garbled headers: random bytes in base64url, and a valid header
        // with a character changed; the header's own decoding decides
        // between 400 and 401.
        for _ in 0..cases().div_ceil(4) {
            let garbled = if rng.below(2) == 0 {
                let n = rng.below(200);
                base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    rng.bytes(n),
                )
            } else {
                let mut h = good().into_bytes();
                // Past the sender's name: a name changed is a sender
                // whose keys are looked up (by discovery, on the network).
                let i = 16 + rng.below(h.len() - 16);
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let was = h[i];
                while h[i] == was {
                    h[i] = *rng.pick(alphabet);
                }
                String::from_utf8(h).unwrap()
            };
            let code = match decode_header(garbled.as_bytes(), &Limits::default()) {
                Ok(s) if [A, B, C].contains(&s.sender.as_str()) => {
                    ErrorCode::ProviderAuthenticationFailed
                }
                Ok(_) => ErrorCode::Unavailable,
                Err(_) => ErrorCode::MalformedMessage,
            };
            bad.push((vec![garbled], vec![], code));
        }
        for (signatures, extra, code) in bad {
            let mut case = body_case(&w, "bad signature header", endpoint, method, body.clone());
            case.headers.retain(|(k, _)| k != PROVIDER_SIGNATURE_HEADER);
            for s in signatures {
                case.headers.push((PROVIDER_SIGNATURE_HEADER.into(), s));
            }
            case.headers.extend(extra);
            refused_before(&mut case, code);
            batch.push(case);
        }
    }
    let codes = run(&w, &tally, batch).await;
    print_codes("http", "methods, paths, content types, signatures", &codes);
    unchanged(&w, &before, "methods, paths, content types, signatures").await;

    // Over the body limit (413): a declared length, refused before the
    // body is read (none is sent), and a chunked body that streams past
    // the limit.
    let limit = DEFAULT_BODY_LIMIT;
    let mut raw = Vec::new();
    for endpoint in Endpoint::ALL {
        if endpoint == Endpoint::WellKnown {
            continue;
        }
        for method in methods(endpoint) {
            let mut case = body_case(&w, "oversized: declared", endpoint, method, Vec::new());
            let head = head_of(&case, Some(&(limit + 1).to_string()));
            case.expect = Expect::Exactly(DSError {
                code: ErrorCode::PayloadTooLarge,
                detail: ErrorDetail::LimitBytes(limit as u32),
            });
            case.authenticated = false;
            raw.push((case, head, Pace::Whole));
            for length in [u64::MAX - 2, 1 << 63, u32::MAX as u64 + 1] {
                let mut case = body_case(&w, "oversized: declared", endpoint, method, Vec::new());
                let head = head_of(&case, Some(&length.to_string()));
                case.expect = Expect::Exactly(DSError {
                    code: ErrorCode::PayloadTooLarge,
                    detail: ErrorDetail::LimitBytes(limit as u32),
                });
                case.authenticated = false;
                raw.push((case, head, Pace::Whole));
            }
            // hyper keeps the two largest lengths for itself and refuses
            // them in the head (431), before any handler.
            for length in [u64::MAX - 1, u64::MAX] {
                let mut case = body_case(&w, "oversized: declared", endpoint, method, Vec::new());
                let head = head_of(&case, Some(&length.to_string()));
                case.expect = Expect::HttpRefusal {
                    status: 431,
                    or_silence: false,
                };
                raw.push((case, head, Pace::Whole));
            }
        }
    }
    let codes = run_raw(&w, &tally, raw).await;
    print_codes("http", "oversized (declared)", &codes);
    for endpoint in Endpoint::ALL {
        if endpoint == Endpoint::WellKnown {
            continue;
        }
        let (provider, _) = route(endpoint);
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..5).map(|_| Ok(vec![0u8; 1024 * 1024])).collect();
        let res = w
            .http
            .post(format!("https://{}{}", w.addr(provider), endpoint.path()))
            .header("content-type", OCTET)
            .body(reqwest::Body::wrap_stream(tokio_stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        let case = Case {
            category: "oversized: streamed",
            provider,
            endpoint: Some(endpoint),
            method: "POST".into(),
            path: endpoint.path().into(),
            headers: vec![],
            body: vec![],
            expect: Expect::Exactly(DSError {
                code: ErrorCode::PayloadTooLarge,
                detail: ErrorDetail::LimitBytes(limit as u32),
            }),
            authenticated: false,
        };
        let answer = Answer {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: res.bytes().await.unwrap().to_vec(),
        };
        check(&case, &answer);
        tally.add(case.category, 1);
    }
    unchanged(&w, &before, "oversized").await;

    // Truncated bodies: a declared length the body never reaches, the
    // connection closed for writing after part of it: 400, or the
    // connection closed without an answer; never a decoded request.
    // A bad `Content-Length` (not a number, negative, two that differ, a
    // list): the HTTP layer's 400. One shorter than the body: the body is
    // cut there (and fails authentication) and the rest is no request.
    let mut raw = Vec::new();
    for endpoint in Endpoint::ALL {
        if endpoint == Endpoint::WellKnown {
            continue;
        }
        let body = lying_body(&w, endpoint);
        let method = methods(endpoint)[0];
        for _ in 0..cases().div_ceil(10).max(2) {
            let mut case = body_case(&w, "truncated body", endpoint, method, body.clone());
            let cut = rng.below(body.len());
            let head = head_of(&case, Some(&body.len().to_string()));
            case.expect = Expect::HttpRefusal {
                status: 400,
                or_silence: true,
            };
            raw.push((case, head, Pace::CutAfter(cut)));
        }
        for length in [
            "abc",
            "-1",
            "1.5",
            "0x10",
            " ",
            "1, 2",
            "99999999999999999999999",
        ] {
            let mut case = body_case(&w, "bad content-length", endpoint, method, body.clone());
            let head = head_of(&case, Some(length));
            case.expect = Expect::HttpRefusal {
                status: 400,
                or_silence: false,
            };
            raw.push((case, head, Pace::Whole));
        }
        let mut case = body_case(&w, "bad content-length", endpoint, method, body.clone());
        let head = format!(
            "{}\r\ncontent-length: {}",
            head_of(&case, Some(&body.len().to_string())),
            body.len() + 1
        );
        case.expect = Expect::HttpRefusal {
            status: 400,
            or_silence: false,
        };
        raw.push((case, head, Pace::Whole));
        // Shorter than the body: what was read is not what was signed
        // (and, unsigned, what is read is decoded).
        let mut case = if route(endpoint).1.is_some() {
            let mut case = body_case(&w, "bad content-length", endpoint, method, body.clone());
            refused_before(&mut case, ErrorCode::ProviderAuthenticationFailed);
            case
        } else {
            let cut = body[..body.len() - 1].to_vec();
            body_case(&w, "bad content-length", endpoint, method, cut)
        };
        let head = head_of(&case, Some(&(body.len() - 1).to_string()));
        case.body = body.clone();
        raw.push((case, head, Pace::Whole));
    }
    let codes = run_raw(&w, &tally, raw).await;
    print_codes("http", "truncated, bad content-length", &codes);
    unchanged(&w, &before, "truncated, bad content-length").await;

    // Slowly sent bodies, all at once: each gets the answer it would get
    // sent whole, and the providers keep answering others meanwhile.
    let mut raw = Vec::new();
    for endpoint in Endpoint::ALL {
        for _ in 0..2 {
            let method = *rng.pick(methods(endpoint));
            let body = if rng.below(2) == 0 {
                lying_body(&w, endpoint)
            } else {
                random_body(&mut rng)
            };
            let case = body_case(&w, "slowly sent body", endpoint, method, body.clone());
            let head = head_of(&case, Some(&body.len().to_string()));
            raw.push((
                case,
                head,
                Pace::Slow {
                    pieces: 20,
                    gap: Duration::from_millis(50),
                },
            ));
        }
    }
    let slow = {
        let (w, tally) = (w.clone(), tally.clone());
        tokio::spawn(async move {
            let n = raw.len();
            let mut set = tokio::task::JoinSet::new();
            // Every slow request at once, each on its own connection.
            for one in raw {
                let (w, tally) = (w.clone(), tally.clone());
                set.spawn(async move { run_raw(&w, &tally, vec![one]).await });
            }
            let mut codes = BTreeMap::new();
            while let Some(done) = set.join_next().await {
                for (k, v) in done.unwrap() {
                    *codes.entry(k).or_default() += v;
                }
            }
            (n, codes)
        })
    };
    let during = Instant::now();
    let mut served = 0;
    while !slow.is_finished() {
        let t = Instant::now();
        healthy(&w).await;
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the providers answered slowly while slow bodies came in"
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (n, codes) = slow.await.unwrap();
    print_codes("http", "slowly sent bodies", &codes);
    println!(
        "hostile [http] {n} slow bodies over {:.1} s; {served} health checks answered meanwhile",
        during.elapsed().as_secs_f64()
    );
    unchanged(&w, &before, "slowly sent bodies").await;
    tally.print("http", started);
}

// ---------------------------------------------------------------------------
// Bodies that decode but lie.

/// A DSRequest as bytes.
fn ds(request: &DSRequest) -> Vec<u8> {
    request.to_bytes().unwrap()
}

/// A case signed by `signer` for `provider`'s `endpoint` (POST).
fn signed_case(
    w: &World,
    category: &'static str,
    signer: &str,
    provider: &'static str,
    endpoint: Endpoint,
    body: Vec<u8>,
    expect: Expect,
) -> Case {
    Case {
        category,
        provider,
        endpoint: Some(endpoint),
        method: "POST".into(),
        path: endpoint.path().into(),
        headers: vec![
            ("content-type".into(), OCTET.into()),
            (
                PROVIDER_SIGNATURE_HEADER.into(),
                sign(
                    &w.key(signer),
                    signer,
                    provider,
                    "POST",
                    endpoint.path(),
                    &body,
                    w.f.clock.now(),
                ),
            ),
        ],
        body,
        expect,
        authenticated: true,
    }
}

/// Bodies that decode but lie: the wrong group, epoch or hub, someone
/// else's client or provider signature, another provider's users, a
/// replay of an accepted request (exact: 401; the body again under a new
/// signature: 409 for a commit, or for an application message and a
/// delivery the first answer again with nothing fanned out or queued
/// twice). Each gets its documented answer, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_decode_but_lie_are_refused_and_change_nothing() {
    let started = Instant::now();
    let mut w = world(30).await;
    let id = w.g.id.clone();
    let a = domain(A);
    let bob_http = w.f.p(B).client.clone();

    // Accepted first (these change the state; the snapshot is taken
    // after): Bob's commit (epoch 1 -> 2), sent by b.example; a message of
    // his, sent raw so that its exact header can be replayed; a stale
    // commit of his, made at epoch 2 and dropped for another commit
    // (epoch 2 -> 3).
    let commit = w.g.bob.update(&id).unwrap();
    let (status, response) = bob_http
        .ds_request(&a, DsEndpoint::GroupOperation, &commit)
        .await
        .unwrap();
    assert_eq!(status, 200, "{response:?}");
    w.g.bob.merge_pending_commit(&id).unwrap();
    let stale = w.g.bob.update(&id).unwrap();
    w.g.bob.clear_pending_commit(&id).unwrap();
    let second = w.g.bob.update(&id).unwrap();
    let (status, response) = bob_http
        .ds_request(&a, DsEndpoint::GroupOperation, &second)
        .await
        .unwrap();
    assert_eq!(status, 200, "{response:?}");
    w.g.bob.merge_pending_commit(&id).unwrap();
    let message = ds(&w.g.bob.send_message(&id, b"once").unwrap());
    let accepted = signed_case(
        &w,
        "replay",
        B,
        A,
        Endpoint::GroupOperation,
        message.clone(),
        Expect::Ok,
    );
    let answer = send(&w, &accepted).await;
    check(&accepted, &answer);
    // A delivery from the hub a.example to b.example for Bob, accepted.
    let limits = Limits::default();
    let golden_qs = |w: &World, name: &str| {
        let (_, _, hex) = w
            .golden
            .iter()
            .find(|(s, n, _)| s == "QueueingServiceRequest" && n == name)
            .unwrap();
        QueueingServiceRequest::decode_exact(hex, &limits).unwrap()
    };
    let mut delivery = golden_qs(&w, "deliver_message");
    let QueueingServicePayload::DeliverMessage(d) = &mut delivery.payload else {
        panic!()
    };
    d.recipients = vec![BOB.parse().unwrap()];
    let delivered = signed_case(
        &w,
        "replay",
        A,
        B,
        Endpoint::DeliverMessage,
        delivery.to_bytes().unwrap(),
        Expect::Ok,
    );
    let answer = send(&w, &delivered).await;
    check(&delivered, &answer);

    // Messages of the members, never sent as they are.
    let misplaced = [
        ds(&w.g.bob.send_message(&id, b"x").unwrap()),
        ds(&w.g.bob.send_message(&id, b"y").unwrap()),
    ];
    let fresh = ds(&w.g.bob.send_message(&id, b"relayed").unwrap());
    let alice_says = ds(&w.g.alice.send_message(&id, b"not via b").unwrap());

    let w = Arc::new(w);
    let tally = Arc::new(Tally::default());
    let before = observe(&w).await;
    let (epoch, _) = w.f.p(A).service.group_epoch(&id).await.unwrap().unwrap();
    assert_eq!(epoch, 3);
    let mut batch = Vec::new();
    let code = Expect::Code;
    let go = Endpoint::GroupOperation;

    // Replays: the exact request (its nonce is spent: 401), and its body
    // under a fresh signature. Commits already applied or of an old epoch
    // get 409 `wrong_epoch` with the current epoch.
    for (case, _) in [(&accepted, ()), (&delivered, ())] {
        let mut again = case.clone();
        again.expect = code(ErrorCode::ProviderAuthenticationFailed);
        again.authenticated = false;
        batch.push(again);
    }
    for body in [ds(&commit), ds(&second), ds(&stale)] {
        batch.push(signed_case(
            &w,
            "replay",
            B,
            A,
            go,
            body,
            Expect::Exactly(DSError::wrong_epoch(epoch)),
        ));
    }
    // The application message again under a new signature (its relay
    // retrying after a lost answer, or a replay): answered as the first
    // time, fanned out once (`docs/protocol.md` 6.3).
    batch.push(signed_case(
        &w,
        "replay",
        B,
        A,
        go,
        message.clone(),
        Expect::Ok,
    ));
    // The delivery again under a new signature: answered as the first
    // time, nothing queued twice (7, idempotence); the same message id
    // with another message: 409.
    batch.push(signed_case(
        &w,
        "replay",
        A,
        B,
        Endpoint::DeliverMessage,
        delivered.body.clone(),
        Expect::Ok,
    ));
    let mut reuse = delivery.clone();
    let QueueingServicePayload::DeliverMessage(d) = &mut reuse.payload else {
        panic!()
    };
    d.epoch += 1;
    batch.push(signed_case(
        &w,
        "replay",
        A,
        B,
        Endpoint::DeliverMessage,
        reuse.to_bytes().unwrap(),
        code(ErrorCode::MessageIdReuse),
    ));

    // Wrong groups: unknown on this hub (404), of another hub (421), on
    // the three DS endpoints; a welcome for an epoch that added nobody.
    for (hub, expected) in [(A, ErrorCode::UnknownGroup), (C, ErrorCode::WrongRecipient)] {
        let other = GroupIdField(GroupId {
            hub_domain: domain(hub),
            local_id: [7; 16],
        });
        let ask = DSRequest {
            version: 1,
            request_body: DSRequestBody::ExternalCommitInformation(
                ExternalCommitInformationRequest {
                    group_id: other.clone(),
                    requester: BOB.parse().unwrap(),
                },
            ),
            authentication_data: DSAuthData::Anonymous,
        };
        batch.push(signed_case(
            &w,
            "wrong group",
            B,
            A,
            Endpoint::ExternalCommitInformation,
            ds(&ask),
            code(expected),
        ));
        let welcome =
            w.g.bob
                .sign_request(
                    DSRequestBody::WelcomeInformation(WelcomeInformationRequest {
                        group_id: other,
                        epoch: 1,
                        key_package_ref: Bytes(vec![1; 32]),
                    }),
                    u32::MAX,
                )
                .unwrap();
        batch.push(signed_case(
            &w,
            "wrong group",
            B,
            A,
            Endpoint::WelcomeInformation,
            ds(&welcome),
            code(expected),
        ));
    }
    for e in [0, 2, 3, 99, u64::MAX] {
        let welcome =
            w.g.bob
                .sign_request(
                    DSRequestBody::WelcomeInformation(WelcomeInformationRequest {
                        group_id: GroupIdField(id.clone()),
                        epoch: e,
                        key_package_ref: Bytes(vec![1; 32]),
                    }),
                    u32::MAX,
                )
                .unwrap();
        batch.push(signed_case(
            &w,
            "wrong epoch",
            B,
            A,
            Endpoint::WelcomeInformation,
            ds(&welcome),
            code(ErrorCode::NoWelcomeInformation),
        ));
    }
    // A request on the wrong endpoint (400 `wrong_endpoint`).
    for (endpoint, body) in [
        Endpoint::WelcomeInformation,
        Endpoint::ExternalCommitInformation,
    ]
    .into_iter()
    .zip(misplaced)
    {
        batch.push(signed_case(
            &w,
            "wrong endpoint",
            B,
            A,
            endpoint,
            body,
            code(ErrorCode::WrongEndpoint),
        ));
    }

    // Someone else's signature: Bob's message relayed by c.example; Alice's
    // (a client of a.example) relayed by b.example; Mallory's signature at
    // Bob's leaf and at Alice's; Bob's signature at Alice's leaf; Bob's
    // provider signature under b.example's name by c.example's key.
    batch.push(signed_case(
        &w,
        "someone else's signature",
        C,
        A,
        go,
        fresh.clone(),
        code(ErrorCode::OperationNotAllowed),
    ));
    batch.push(signed_case(
        &w,
        "someone else's signature",
        B,
        A,
        go,
        alice_says,
        Expect::Refused,
    ));
    let DSRequestBody::SendMessage(body) = DSRequest::decode_exact(&fresh, &limits)
        .unwrap()
        .request_body
    else {
        panic!()
    };
    let mallory = client("mimi://b.example/d/mallory/x");
    let bob_leaf = w.g.bob.leaf_index(&id).unwrap();
    let alice_leaf = w.g.alice.leaf_index(&id).unwrap();
    for (signer, leaf) in [
        (&mallory, bob_leaf),
        (&mallory, alice_leaf),
        (&w.g.bob, alice_leaf),
        (&mallory, 77),
    ] {
        let forged = signer
            .sign_request(DSRequestBody::SendMessage(body.clone()), leaf)
            .unwrap();
        batch.push(signed_case(
            &w,
            "someone else's signature",
            B,
            A,
            go,
            ds(&forged),
            code(ErrorCode::ClientSignatureInvalid),
        ));
    }
    let mut forged = signed_case(
        &w,
        "someone else's signature",
        B,
        A,
        go,
        fresh.clone(),
        code(ErrorCode::ProviderAuthenticationFailed),
    );
    forged.headers[1].1 = sign(&w.key(C), B, A, "POST", go.path(), &fresh, w.f.clock.now());
    forged.authenticated = false;
    batch.push(forged);

    // Deliveries and connection requests that lie: a sender that is not
    // the signer (401), a recipient that is not this provider (421), a
    // group of another hub (403), a recipient client of another provider
    // (421), on the wrong endpoint (400); a connection request for a user
    // who does not exist (404), from a provider that is not its sender.
    let lie = |f: &dyn Fn(&mut QueueingServiceRequest)| {
        let mut r = delivery.clone();
        r.message_id = MessageId([0x55; 16]);
        f(&mut r);
        r.to_bytes().unwrap()
    };
    let qs = Endpoint::DeliverMessage;
    for (body, expected) in [
        (
            lie(&|r| r.sender = domain(C)),
            ErrorCode::ProviderAuthenticationFailed,
        ),
        (lie(&|r| r.recipient = domain(C)), ErrorCode::WrongRecipient),
        (
            lie(&|r| {
                if let QueueingServicePayload::DeliverMessage(d) = &mut r.payload {
                    d.group_id.0.hub_domain = domain(C);
                }
            }),
            ErrorCode::OperationNotAllowed,
        ),
        (
            lie(&|r| {
                if let QueueingServicePayload::DeliverMessage(d) = &mut r.payload {
                    d.recipients = vec![ALICE.parse().unwrap()];
                }
            }),
            ErrorCode::WrongRecipient,
        ),
    ] {
        batch.push(signed_case(
            &w,
            "lying delivery",
            A,
            B,
            qs,
            body,
            code(expected),
        ));
    }
    batch.push(signed_case(
        &w,
        "lying delivery",
        A,
        B,
        Endpoint::ConnectionRequest,
        lie(&|_| {}),
        code(ErrorCode::WrongEndpoint),
    ));
    let connection = golden_qs(&w, "connection_request");
    let mut unknown = connection.clone();
    unknown.message_id = MessageId([0x66; 16]);
    let QueueingServicePayload::ConnectionRequest(c) = &mut unknown.payload else {
        panic!()
    };
    c.recipient_user = "mimi://b.example/u/nobody".parse().unwrap();
    batch.push(signed_case(
        &w,
        "lying delivery",
        A,
        B,
        Endpoint::ConnectionRequest,
        unknown.to_bytes().unwrap(),
        code(ErrorCode::UnknownUser),
    ));
    batch.push(signed_case(
        &w,
        "lying delivery",
        C,
        B,
        Endpoint::ConnectionRequest,
        connection.to_bytes().unwrap(),
        code(ErrorCode::ProviderAuthenticationFailed),
    ));
    batch.push(signed_case(
        &w,
        "lying delivery",
        A,
        B,
        Endpoint::DeliverMessage,
        connection.to_bytes().unwrap(),
        code(ErrorCode::WrongEndpoint),
    ));

    // KeyPackage requests that lie: a requester of another provider (403),
    // a target of another provider (421), a target nobody knows (404),
    // group KeyPackages without a connection (403 `not_connected`).
    let user = |u: &str| -> UserId { u.parse().unwrap() };
    let bob_user = user("mimi://b.example/u/bob");
    for (requester, target, expected) in [
        (
            user("mimi://c.example/u/carol"),
            bob_user.clone(),
            ErrorCode::OperationNotAllowed,
        ),
        (
            user("mimi://a.example/u/alice"),
            user("mimi://c.example/u/carol"),
            ErrorCode::WrongRecipient,
        ),
        (
            user("mimi://a.example/u/alice"),
            user("mimi://b.example/u/nobody"),
            ErrorCode::UnknownUser,
        ),
    ] {
        let connection = ConnectionKeyPackageRequest {
            version: 1,
            requester: requester.clone(),
            target: target.clone(),
        };
        batch.push(signed_case(
            &w,
            "lying key package request",
            A,
            B,
            Endpoint::ConnectionKeyPackages,
            connection.to_bytes().unwrap(),
            code(expected),
        ));
        let group = GroupKeyPackageRequest {
            version: 1,
            requester,
            target,
            clients: vec![],
        };
        batch.push(signed_case(
            &w,
            "lying key package request",
            A,
            B,
            Endpoint::GroupKeyPackages,
            group.to_bytes().unwrap(),
            code(expected),
        ));
    }
    let group = GroupKeyPackageRequest {
        version: 1,
        requester: user("mimi://a.example/u/alice"),
        target: bob_user.clone(),
        clients: vec![],
    };
    batch.push(signed_case(
        &w,
        "lying key package request",
        A,
        B,
        Endpoint::GroupKeyPackages,
        group.to_bytes().unwrap(),
        code(ErrorCode::NotConnected),
    ));
    // The verification key of another provider (421).
    let ask = VerificationKeyRequest {
        version: 1,
        provider: domain(B),
    };
    let mut case = body_case(
        &w,
        "lying key request",
        Endpoint::VerificationKey,
        "POST",
        ask.to_bytes().unwrap(),
    );
    case.expect = code(ErrorCode::WrongRecipient);
    batch.push(case);

    let n = batch.len();
    let codes = run(&w, &tally, batch).await;
    print_codes("lies", &format!("{n} cases"), &codes);
    unchanged(&w, &before, "bodies that lie").await;
    tally.print("lies", started);
}
