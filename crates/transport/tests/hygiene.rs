//! Connection hygiene over real TLS on loopback (`docs/protocol.md` 3.5):
//! connections over a cap are closed at once; idle connections (HTTP/1.1
//! and h2) close after the idle timeout, busy ones do not; requests in
//! flight are capped per address and per provider; and a slow-loris attack
//! from several addresses (headers a byte at a time, bodies a byte at a
//! time, silent connections) is cut off by the timeouts and caps while a
//! well-behaved peer on its own address is served, with the server's
//! connections and the process's memory bounded.
//!
//! The tests of this file run one at a time: they time connections and read
//! the process's memory.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mimid_transport::auth::AuthMode;
use mimid_transport::connections::ConnectionLimits;
use mimid_transport::signature::PROVIDER_SIGNATURE_HEADER;
use mimid_transport::{Clock as _, tls};
use mimid_wire::{DSAuthData, DSRequest, DSRequestBody, Wire as _};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const OCTET: &str = "application/octet-stream";

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection from `from` to `to`.
async fn tcp_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// A TLS client of the federation's CA speaking `alpn`.
fn connector(f: &Federation, alpn: &[u8]) -> TlsConnector {
    let mut config = tls::client_config(f.roots.clone(), None).unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection from `from` to a.example, or `None` if the server
/// closed it before the handshake ended.
async fn tls_from(
    f: &Federation,
    connector: &TlsConnector,
    from: IpAddr,
) -> Option<TlsStream<TcpStream>> {
    let server = f.p("a.example").addr;
    let tcp = tcp_from(from, server).await.ok()?;
    let name = ServerName::IpAddress(server.ip().into());
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .ok()?
        .ok()
}

/// Reads until the server closes; `None` if it has not after `limit`.
async fn closed_within(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: Duration,
) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| got)
}

/// The status of the first HTTP/1.1 answer in `bytes`.
fn status(bytes: &[u8]) -> Option<u16> {
    let line = bytes.split(|&b| b == b'\r').next()?;
    std::str::from_utf8(line.get(9..12)?).ok()?.parse().ok()
}

/// Reads one HTTP/1.1 answer (headers and a `Content-Length` body) and
/// returns its status.
async fn answer(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<u16> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&got[..end]).ok()?.to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(Some(0), |v| v.trim().parse().ok())?;
            if got.len() >= end + 4 + length {
                return status(&got);
            }
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// An HTTPS client whose connections come from `from`.
fn client_from(f: &Federation, from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls::client_config(f.roots.clone(), None).unwrap())
        .local_address(from)
        .build()
        .unwrap()
}

fn url(f: &Federation, path: &str) -> String {
    format!("https://{}{path}", f.p("a.example").addr)
}

fn setups(limits: ConnectionLimits) -> [Setup; 2] {
    let mut setups = [
        Setup::new("a.example", [127, 0, 0, 2], AuthMode::Signature),
        Setup::new("b.example", [127, 0, 0, 3], AuthMode::Signature),
    ];
    setups[0].connections = Some(limits);
    // These tests are about connections: rate limits stay out of the way.
    setups[0].rate_limits = Some(mimid_transport::ratelimit::RateLimits {
        per_ip: None,
        per_provider: None,
        per_group: None,
        per_member: None,
        per_target_user: None,
        max_keys: 1_000,
    });
    setups
}

/// Waits until `condition` holds (at most 5 s).
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_a_cap_are_closed_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let f = Federation::new(&setups(ConnectionLimits {
        max_connections: 6,
        max_connections_per_ip: 4,
        ..ConnectionLimits::default()
    }))
    .await;
    let a = f.p("a.example");
    let h1 = connector(&f, b"http/1.1");
    // One address: four handshakes, then the fifth is closed unanswered.
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(tls_from(&f, &h1, ip(10)).await.expect("under the cap"));
    }
    assert!(
        tls_from(&f, &h1, ip(10)).await.is_none(),
        "over the per-IP cap"
    );
    // Another: two more, then the whole server is full.
    let mut second = Vec::new();
    for _ in 0..2 {
        second.push(tls_from(&f, &h1, ip(11)).await.expect("under the caps"));
    }
    assert!(tls_from(&f, &h1, ip(11)).await.is_none(), "over the cap");
    assert!(tls_from(&f, &h1, ip(12)).await.is_none(), "over the cap");
    assert_eq!(a.server.open_connections(), 6);
    assert_eq!(a.server.open_connections_from(ip(10)), 4);
    // A connection that goes makes room for one more.
    drop(first.pop());
    assert!(eventually(|| a.server.open_connections() == 5).await);
    let again = tls_from(&f, &h1, ip(12)).await;
    assert!(again.is_some(), "room was made");
    // The connections that got in are served.
    let mut stream = second.pop().unwrap();
    stream
        .write_all(b"GET /verification_key HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(answer.as_deref().and_then(status), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_idle_timeout_and_busy_ones_stay() {
    let _one = ONE_AT_A_TIME.lock().await;
    let idle = Duration::from_millis(1_500);
    let f = Federation::new(&setups(ConnectionLimits {
        idle,
        ..ConnectionLimits::default()
    }))
    .await;
    let request = b"GET /verification_key HTTP/1.1\r\nHost: a\r\n\r\n";

    // HTTP/1.1: a request every half idle time keeps the connection; once
    // they stop, it is closed after the idle time.
    let mut stream = tls_from(&f, &connector(&f, b"http/1.1"), ip(10))
        .await
        .unwrap();
    for _ in 0..4 {
        stream.write_all(request).await.unwrap();
        assert_eq!(answer(&mut stream).await, Some(200), "kept while in use");
        tokio::time::sleep(idle / 2).await;
    }
    let since = Instant::now();
    stream.write_all(request).await.unwrap();
    let answer = closed_within(&mut stream, idle * 3).await;
    let took = since.elapsed();
    assert_eq!(answer.as_deref().and_then(status), Some(200));
    assert!(
        took >= idle && took < idle + Duration::from_millis(1_500),
        "HTTP/1.1 idle connection closed after {took:?}"
    );

    // h2: the same, and the server says GOAWAY before it goes.
    let tls = tls_from(&f, &connector(&f, b"h2"), ip(11)).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(async move {
        let _ = connection.await;
        Instant::now()
    });
    let get = || {
        http::Request::get(url(&f, "/verification_key"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    for _ in 0..4 {
        let response = sender.send_request(get()).await.unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(idle / 2).await;
    }
    let since = Instant::now();
    assert_eq!(sender.send_request(get()).await.unwrap().status(), 200);
    let closed = tokio::time::timeout(idle * 3, connection)
        .await
        .expect("h2 connection still open")
        .unwrap();
    let took = closed - since;
    assert!(
        took >= idle && took < idle + Duration::from_millis(1_500),
        "h2 idle connection closed after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_capped_per_address() {
    let _one = ONE_AT_A_TIME.lock().await;
    let f = Federation::new(&setups(ConnectionLimits {
        in_flight_per_ip: 2,
        ..ConnectionLimits::default()
    }))
    .await;
    let h1 = connector(&f, b"http/1.1");
    // Two requests from one address wait for their bodies: a third from it
    // is refused at once, 429 with Retry-After, before its body is read.
    let head = b"POST /verification_key HTTP/1.1\r\nHost: a\r\n\
        Content-Type: application/octet-stream\r\nContent-Length: 16\r\n\r\n";
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let mut stream = tls_from(&f, &h1, ip(10)).await.unwrap();
        stream.write_all(head).await.unwrap();
        stream.write_all(b"01234567").await.unwrap();
        waiting.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let same = client_from(&f, ip(10));
    let refused = same.get(url(&f, "/verification_key")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = refused.bytes().await.unwrap();
    let refusal =
        mimid_wire::VerificationKeyResponse::decode_exact(&body, &mimid_wire::Limits::default())
            .unwrap();
    assert!(
        matches!(&refusal.result, mimid_wire::VerificationKeyResult::Error(e)
            if e.code == mimid_wire::ErrorCode::RateLimited),
        "{refusal:?}"
    );
    // Another address is served; so is the client API of the same one
    // (it answers for itself: 401 without a client signature).
    let other = client_from(&f, ip(11));
    let served = other.get(url(&f, "/verification_key")).send().await;
    assert_eq!(served.unwrap().status(), 200);
    let api = same
        .post(url(&f, "/client/v1/ack"))
        .header("content-type", OCTET)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    // One body ends: its answer frees the address's slot.
    let mut done = waiting.pop().unwrap();
    done.write_all(b"89abcdef").await.unwrap();
    assert_eq!(
        answer(&mut done).await,
        Some(400),
        "a body that does not decode"
    );
    let again = same.get(url(&f, "/verification_key")).send().await;
    assert_eq!(again.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_capped_per_provider() {
    let _one = ONE_AT_A_TIME.lock().await;
    let f = Federation::new(&setups(ConnectionLimits {
        in_flight_per_provider: 1,
        ..ConnectionLimits::default()
    }))
    .await;

    // A provider: one request in flight at a time (per provider, from any
    // address). Many at once: some reach the hub (which refuses another
    // provider a group id, 403), the others are refused with 429 and
    // Retry-After, none with anything else.
    let key = f.p("b.example").keys.current().clone();
    let body = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    }
    .to_bytes()
    .unwrap();
    let provider = f.raw_client(None);
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let signature = sign(
            &key,
            "b.example",
            "a.example",
            "POST",
            "/group_operation",
            &body,
            f.clock.now(),
        );
        let request = provider
            .post(url(&f, "/group_operation"))
            .header("content-type", OCTET)
            .header(PROVIDER_SIGNATURE_HEADER, signature)
            .body(body.clone());
        requests.spawn(async move {
            let response = request.send().await.unwrap();
            let retry = response.headers().get("retry-after").cloned();
            (response.status().as_u16(), retry)
        });
    }
    let (mut served, mut refused) = (0, 0);
    for (status, retry) in requests.join_all().await {
        match status {
            403 => served += 1,
            429 => {
                assert_eq!(retry.unwrap(), "1");
                refused += 1;
            }
            other => panic!("status {other}"),
        }
    }
    assert!(
        served >= 1 && refused >= 1,
        "{served} served, {refused} refused"
    );
    println!(
        "64 requests of one provider at once, 1 in flight allowed: {served} served, {refused} refused 429"
    );
}

/// What the attackers saw, per kind of connection.
#[derive(Default)]
struct Seen {
    /// Connections closed before or at the TLS handshake.
    refused: AtomicUsize,
    /// Headers a byte at a time: from the first byte to the close (`None`:
    /// still open after 10 s).
    slow_headers: Mutex<Vec<Option<Duration>>>,
    /// Headers at once, the body a byte at a time: from the headers to the
    /// close, and the answer's status.
    slow_bodies: Mutex<Vec<(Option<Duration>, Option<u16>)>>,
    /// TCP only, no handshake: from the connection to the close.
    silent: Mutex<Vec<Option<Duration>>>,
}

#[derive(Clone, Copy)]
enum Kind {
    SlowHeaders,
    SlowBody,
    Silent,
}

/// One attacker's connection slot: connects, misbehaves until the server
/// closes the connection, and again until `until`.
async fn attack(f: Arc<Federation>, kind: Kind, from: IpAddr, until: Instant, seen: Arc<Seen>) {
    let h1 = connector(&f, b"http/1.1");
    let patience = Duration::from_secs(10);
    while Instant::now() < until {
        if let Kind::Silent = kind {
            let Ok(mut tcp) = tcp_from(from, f.p("a.example").addr).await else {
                continue;
            };
            let since = Instant::now();
            let closed = closed_within(&mut tcp, patience)
                .await
                .map(|_| since.elapsed());
            if closed.is_some_and(|t| t < REFUSED_WITHIN) {
                seen.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            } else {
                seen.silent.lock().unwrap().push(closed);
            }
            continue;
        }
        let Some(tls) = tls_from(&f, &h1, from).await else {
            seen.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        let (mut read, mut write) = tokio::io::split(tls);
        let since = Instant::now();
        let (head, trickle): (Vec<u8>, Vec<u8>) = match kind {
            Kind::SlowHeaders => (
                Vec::new(),
                [
                    b"GET /verification_key HTTP/1.1\r\nHost: a\r\nX-Slow: ".as_slice(),
                    &[b'a'; 400],
                ]
                .concat(),
            ),
            _ => (
                b"POST /verification_key HTTP/1.1\r\nHost: a\r\n\
                  Content-Type: application/octet-stream\r\nContent-Length: 400\r\n\r\n"
                    .to_vec(),
                vec![0; 400],
            ),
        };
        let reader = tokio::spawn(async move {
            closed_within(&mut read, patience)
                .await
                .map(|got| (Instant::now(), got))
        });
        let _ = write.write_all(&head).await;
        let since = if head.is_empty() {
            since
        } else {
            Instant::now()
        };
        for byte in trickle {
            if reader.is_finished()
                || write.write_all(&[byte]).await.is_err()
                || write.flush().await.is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let closed = reader.await.unwrap();
        let took = closed.as_ref().map(|(at, _)| *at - since);
        match kind {
            Kind::SlowHeaders => seen.slow_headers.lock().unwrap().push(took),
            _ => {
                let answer = closed.as_ref().and_then(|(_, got)| status(got));
                seen.slow_bodies.lock().unwrap().push((took, answer));
            }
        }
    }
}

/// Half the slow-loris test's handshake timeout: a silent connection closed
/// sooner was refused over a cap.
const REFUSED_WITHIN: Duration = Duration::from_millis(500);

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The slow-loris test. Five attacking addresses each keep 24 connection
/// slots busy for four seconds: 12 send a request's headers a byte every
/// 50 ms (never ending), 8 send headers at once and the body a byte every
/// 50 ms, 4 connect and send nothing; each reconnects when closed. A sixth
/// keeps 6 slow bodies and 2 silent connections.
/// Meanwhile a well-behaved peer on its own address asks every 20 ms on
/// its connection, and every 250 ms on a new one. The server allows 10
/// connections an address, 64 in all, and one second for a handshake,
/// headers or a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_is_cut_off_and_others_are_served() {
    let _one = ONE_AT_A_TIME.lock().await;
    let second = Duration::from_secs(1);
    let limits = ConnectionLimits {
        handshake: second,
        headers: second,
        body: second,
        idle: 2 * second,
        max_connections: 64,
        max_connections_per_ip: 10,
        in_flight_per_ip: 4,
        in_flight_per_provider: 256,
    };
    // The longest a connection may outlive its timeout: timers, and a
    // loaded two-core machine running the attackers in the same process.
    let slack = Duration::from_millis(1_500);
    let f = Arc::new(Federation::new(&setups(limits.clone())).await);
    // Five addresses mix every kind of slow connection; a sixth, under its
    // cap, sends slow bodies, more at once than it may have requests in
    // flight, and keeps two silent connections, so that the in-flight cap
    // and the handshake timeout are both met whichever connections the
    // mixed ones win under their cap (a silent one of theirs is often
    // refused).
    let attackers: Vec<IpAddr> = (10..16).map(ip).collect();
    let good = client_from(&f, ip(30));
    let ask = |client: reqwest::Client, f: Arc<Federation>| async move {
        let since = Instant::now();
        let response = client.get(url(&f, "/verification_key")).send().await;
        let ok = matches!(response, Ok(r) if r.status() == 200);
        (ok, since.elapsed())
    };
    // Warm up (connection, first-use allocations), then the baseline.
    for _ in 0..20 {
        assert!(ask(good.clone(), f.clone()).await.0);
    }
    let mut baseline = Vec::new();
    for _ in 0..50 {
        baseline.push(ask(good.clone(), f.clone()).await.1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    baseline.sort();
    let rss_before = rss_kib();

    let seen = Arc::new(Seen::default());
    let started = Instant::now();
    let until = started + 4 * second;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, &from) in attackers.iter().enumerate() {
        let kinds: &[(Kind, usize)] = if index < 5 {
            &[
                (Kind::SlowHeaders, 12),
                (Kind::SlowBody, 8),
                (Kind::Silent, 4),
            ]
        } else {
            &[(Kind::SlowBody, 6), (Kind::Silent, 2)]
        };
        for &(kind, n) in kinds {
            for _ in 0..n {
                tasks.spawn(attack(f.clone(), kind, from, until, seen.clone()));
            }
        }
    }
    // The server's connections and the process's memory, as they go.
    let watcher = {
        let f = f.clone();
        let attackers = attackers.clone();
        tokio::spawn(async move {
            let a = &f.p("a.example").server;
            let (mut most, mut most_one, mut rss) = (0, 0, 0);
            while Instant::now() < until + 3 * second {
                most = most.max(a.open_connections());
                for &ip in &attackers {
                    most_one = most_one.max(a.open_connections_from(ip));
                }
                rss = rss.max(rss_kib());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (most, most_one, rss)
        })
    };
    // The well-behaved peer, on its connection and on new ones.
    let mut served = Vec::new();
    let mut fresh = Vec::new();
    let mut next_fresh = Instant::now();
    while Instant::now() < until {
        served.push(ask(good.clone(), f.clone()).await);
        if Instant::now() >= next_fresh {
            fresh.push(ask(client_from(&f, ip(31)), f.clone()).await);
            next_fresh += Duration::from_millis(250);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tasks.join_all().await;
    let a = &f.p("a.example").server;
    // Once the attack stops, its connections are gone (the good peer's may
    // stay).
    let drained = eventually(|| attackers.iter().all(|&ip| a.open_connections_from(ip) == 0)).await;
    let (most, most_one, rss_most) = watcher.await.unwrap();

    let seen = Arc::into_inner(seen).unwrap();
    let slow_headers = seen.slow_headers.into_inner().unwrap();
    let slow_bodies = seen.slow_bodies.into_inner().unwrap();
    let silent = seen.silent.into_inner().unwrap();
    let refused = seen.refused.into_inner();
    let mut latencies: Vec<Duration> = served.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    let mut fresh_latencies: Vec<Duration> = fresh.iter().map(|(_, d)| *d).collect();
    fresh_latencies.sort();
    let growth_kib = rss_most.saturating_sub(rss_before);
    let statuses = |s: u16| slow_bodies.iter().filter(|(_, a)| *a == Some(s)).count();
    println!(
        "slow loris, {} s: {} slow-header, {} slow-body and {} silent connections, {refused} \
         refused at the handshake; most open {most} (cap {}), most from one address \
         {most_one} (cap {}); slow bodies answered 503 {} times, 429 {} times",
        started.elapsed().as_secs_f64(),
        slow_headers.len(),
        slow_bodies.len(),
        silent.len(),
        limits.max_connections,
        limits.max_connections_per_ip,
        statuses(503),
        statuses(429),
    );
    println!(
        "well-behaved peer: {} requests on its connection, p50 {:?} p99 {:?} max {:?} \
         (quiet baseline p50 {:?} p99 {:?}); {} on new connections, max {:?}; \
         RSS {} MiB before, growth {} KiB",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
        percentile(&baseline, 0.50),
        percentile(&baseline, 0.99),
        fresh_latencies.len(),
        fresh_latencies.last().unwrap(),
        rss_before / 1024,
        growth_kib,
    );

    // The well-behaved peer is served, every time, promptly.
    assert!(
        served.iter().chain(&fresh).all(|(ok, _)| *ok),
        "a request of the good peer failed"
    );
    assert!(latencies.len() >= 50 && fresh.len() >= 10);
    assert!(
        *latencies.last().unwrap() < second && *fresh_latencies.last().unwrap() < second,
        "the good peer waited"
    );
    // The caps held, and were reached.
    assert!(most <= limits.max_connections, "{most} connections open");
    assert_eq!(most_one, limits.max_connections_per_ip, "per address");
    assert!(refused > 0);
    assert!(drained, "attackers' connections left open");
    // Every slow connection was closed by its timeout, not before it.
    let cut = |took: &Option<Duration>, timeout: Duration| {
        took.is_some_and(|t| t >= timeout.mul_f64(0.9) && t <= timeout + slack)
    };
    assert!(
        slow_headers.len() >= 5 * 10,
        "{} slow-header connections",
        slow_headers.len()
    );
    let late: Vec<_> = slow_headers
        .iter()
        .filter(|t| !cut(t, limits.headers))
        .collect();
    assert!(
        late.is_empty(),
        "slow headers not cut at the header timeout: {late:?}"
    );
    let late: Vec<_> = silent
        .iter()
        .filter(|t| !cut(t, limits.handshake))
        .collect();
    assert!(
        late.is_empty(),
        "silent connections not cut at the handshake timeout: {late:?}"
    );
    assert!(!slow_bodies.is_empty() && silent.len() >= 5);
    for (took, answer) in &slow_bodies {
        match answer {
            // The body timeout (sender: try again).
            Some(503) => assert!(cut(took, limits.body), "slow body cut after {took:?}"),
            // Over the address's requests in flight, refused before the
            // body is read; then cut when the rest of the body does not
            // make a request's headers in time.
            Some(429) => assert!(
                took.is_some_and(|t| t <= limits.headers + slack),
                "refused slow body closed after {took:?}"
            ),
            other => panic!("slow body answered {other:?} after {took:?}"),
        }
    }
    assert!(statuses(503) > 0 && statuses(429) > 0);
    // Memory: at most 64 connections of the server, and the attackers' own
    // side of them, live at once; a connection takes some tens of KiB on
    // each side (TLS buffers, hyper's read buffer, a task), so growth stays
    // far under 64 × 256 KiB = 16 MiB.
    assert!(growth_kib < 16 * 1024, "RSS grew by {growth_kib} KiB");
}
