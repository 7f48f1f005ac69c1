//! Push through the client API (`docs/performance.md`, "Push"): two
//! providers on loopback over real HTTPS.
//!
//! 1. Latency: Alice on a.example sends to a group hosted there; Bob on
//!    b.example waits in a long poll. Each message is timed from Alice's
//!    send to Bob holding the decrypted plaintext, one at a time, next to
//!    the raw floor of the same machine in the same run: a bare HTTPS
//!    round trip on a kept connection (the well-known path), and a signed
//!    client API read that finds nothing.
//! 2. Capacity: a second process (this program, `clients` mode) enrols
//!    `clients` devices at b.example, each on its own TLS connection, and
//!    keeps a long poll open for each. This process (both providers) reports
//!    its resident memory as the waiting reads park at b.example (counted by
//!    the store's bell), then stores one message for the last device and
//!    times its arrival.
//!
//! `cargo run --release -p mimid-bench --example push -- [messages] [clients]`

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use mimid_bench::memory_kib;
use mimid_client::MimiClient;
use mimid_client::api::{ProviderApi, SigningKey};
use mimid_store::{Inbound, Store};
use mimid_transport::auth::AuthMode;
use mimid_transport::loopback::Loopback;
use mimid_transport::server::client_api::invite;
use mimid_transport::{Clock as _, SystemClock, tls};
use mimid_wire::{
    DSAuthData, DSRequest, DSRequestBody, DSResponseBody, DeliverableMessage, GroupIdField,
    GroupKind, UserId, WelcomeMessage,
};
use tokio::io::AsyncBufReadExt as _;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("clients") {
        return rt.block_on(clients(&args[1..]));
    }
    let messages: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(300);
    let crowd: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    rt.block_on(run(messages, crowd))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn enrol(f: &Loopback, user: &str, device: &str) -> anyhow::Result<ProviderApi> {
    let user: UserId = user.parse()?;
    let domain = user.domain();
    let store = f
        .node(domain.as_str())
        .ok_or_else(|| anyhow!("no {domain}"))?
        .service
        .store();
    let now = SystemClock.now();
    store.add_user(user.to_string(), now).await?;
    let secret = invite(store, &user, 3600, now).await?;
    Ok(ProviderApi::enrol(
        f.client_api_http()?,
        &f.client_api_base(domain.as_str()),
        domain.as_str(),
        &secret,
        &user,
        device,
        SigningKey::generate()?,
    )
    .await?)
}

async fn run(messages: usize, crowd: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let f = Loopback::start(dir.path(), &["a.example", "b.example"], AuthMode::Signature).await?;

    // Alice's group on a.example, with Bob of b.example in it.
    let alice_api = enrol(&f, "mimi://a.example/u/alice", "laptop").await?;
    let bob_api = enrol(&f, "mimi://b.example/u/bob", "phone").await?;
    let mut alice = MimiClient::new(alice_api.client_id().clone())?;
    let mut bob = MimiClient::new(bob_api.client_id().clone())?;
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(group)) = alice_api.submit(&ask).await? else {
        bail!("no group id")
    };
    alice_api
        .submit(&alice.create_group(&group, GroupKind::Regular)?)
        .await?;
    let kp = bob.key_package(false, false)?;
    alice_api
        .submit(&alice.add(&group, std::slice::from_ref(&kp), false)?)
        .await?;
    alice.merge_pending_commit(&group)?;
    let read = bob_api.queue(0, 10).await?;
    let first = read.messages.first().ok_or_else(|| anyhow!("no Welcome"))?;
    let welcome = WelcomeMessage::from_bytes(&first.message)?;
    let info = bob.welcome_information_request(&group, 1, &kp)?;
    let DSResponseBody::WelcomeInfo(tree) = bob_api.submit(&info).await? else {
        bail!("no welcome information")
    };
    bob.join(&welcome, &tree)?;
    bob_api.acknowledge(first.seq).await?;
    let mut after = first.seq;

    // The raw floor: a bare HTTPS round trip on a kept connection, and a
    // signed read of an empty queue.
    let http = f.client_api_http()?;
    let well_known = format!(
        "{}/.well-known/mimi/ds-domain",
        f.client_api_base("b.example")
    );
    let mut bare = Vec::with_capacity(messages);
    let mut empty = Vec::with_capacity(messages);
    for _ in 0..messages {
        let t = Instant::now();
        http.get(&well_known).send().await?.bytes().await?;
        bare.push(t.elapsed());
        let t = Instant::now();
        bob_api.queue(u64::MAX / 2, 0).await?;
        empty.push(t.elapsed());
    }

    // Send to pushed, one message at a time: Bob's read waits at b.example
    // (wait = 25 s) when the send starts.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(1);
    let receiver = tokio::spawn(async move {
        loop {
            let read = bob_api.queue(after, 25).await?;
            for m in &read.messages {
                let message = DeliverableMessage::from_bytes(&m.message)?;
                if let Some(plain) = bob.process(&message)? {
                    tx.send((Instant::now(), plain)).await?;
                }
                after = m.seq;
            }
            if let Some(last) = read.messages.last() {
                bob_api.acknowledge(last.seq).await?;
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    });
    let mut latency = Vec::with_capacity(messages);
    for i in 0..messages {
        // Let Bob's next read reach the server and wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let text = format!("message {i}");
        let request = alice.send_message(&group, text.as_bytes())?;
        let sent = Instant::now();
        alice_api.submit(&request).await?;
        let (at, plain) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .context("Bob heard nothing within 30 s")?
            .ok_or_else(|| anyhow!("Bob's reader stopped"))?;
        if plain != text.as_bytes() {
            bail!("Bob decrypted something else");
        }
        latency.push(at.duration_since(sent));
    }
    receiver.abort();
    for v in [&mut bare, &mut empty, &mut latency] {
        v.sort();
    }
    println!("push latency, {messages} messages (a.example -> b.example, one at a time):");
    println!(
        "  bare HTTPS round trip (kept connection):  p50 {}  p99 {}",
        ms(percentile(&bare, 0.5)),
        ms(percentile(&bare, 0.99))
    );
    println!(
        "  signed client API read, nothing queued:  p50 {}  p99 {}",
        ms(percentile(&empty, 0.5)),
        ms(percentile(&empty, 0.99))
    );
    println!(
        "  send -> decrypted at the remote client:  p50 {}  p99 {}  (p50 = {:.1} bare round trips)",
        ms(percentile(&latency, 0.5)),
        ms(percentile(&latency, 0.99)),
        percentile(&latency, 0.5).as_secs_f64() / percentile(&bare, 0.5).as_secs_f64()
    );
    if crowd > 0 {
        capacity(&f, dir.path(), crowd).await?;
    }
    Ok(())
}

/// Devices of b.example waiting in long polls, from another process.
async fn capacity(f: &Loopback, dir: &Path, crowd: usize) -> anyhow::Result<()> {
    let b = f.node("b.example").ok_or_else(|| anyhow!("no b.example"))?;
    let store = b.service.store();
    let now = SystemClock.now();
    let secrets = dir.join("secrets");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&secrets)?);
    for i in 0..crowd {
        let user: UserId = format!("mimi://b.example/u/user{i}").parse()?;
        store.add_user(user.to_string(), now).await?;
        writeln!(file, "{user} {}", invite(store, &user, 3600, now).await?)?;
    }
    file.flush()?;
    drop(file);
    let (_, rss_before) = memory_kib();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("clients")
        .arg(f.ca_path())
        .arg(b.local_addr().to_string())
        .arg(&secrets)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    println!("long polls parked at b.example (another process, one TLS connection each):");
    println!("  before: resident {} MiB", rss_before / 1024);
    let marks: Vec<usize> = [1_000, 2_500, 5_000, 10_000, 15_000, 20_000]
        .into_iter()
        .filter(|&m| m < crowd)
        .chain([crowd])
        .collect();
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while next < marks.len() {
        if Instant::now() > deadline {
            bail!(
                "only {} reads parked after 600 s",
                store.queue_bell().listening()
            );
        }
        let parked = store.queue_bell().listening();
        if parked >= marks[next] {
            let (_, rss) = memory_kib();
            println!(
                "  {parked:>6} waiting after {:>5.1} s: resident {} MiB ({:.1} KiB per waiting client)",
                started.elapsed().as_secs_f64(),
                rss / 1024,
                rss.saturating_sub(rss_before) as f64 / parked as f64
            );
            next += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // One message for the last device, stored as a delivery would store it.
    let last = format!("mimi://b.example/d/user{}/d", crowd - 1);
    let stored = Instant::now();
    let pending = store
        .deliver(vec![Inbound {
            sender: "a.example".into(),
            message_id: [7; 16],
            body_sha256: [7; 32],
            answer: Vec::new(),
            group_id: b"bench".to_vec(),
            epoch: 1,
            message: b"ping".to_vec(),
            recipients: vec![last.clone()],
            now: SystemClock.now(),
        }])
        .await?;
    pending.await?;
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), line_rx.recv())
            .await
            .context("the message did not arrive within 30 s")?
            .ok_or_else(|| anyhow!("the clients stopped"))?;
        if line == format!("got {last}") {
            break;
        }
    }
    println!(
        "  a message stored for the last of {crowd} waiting clients reached it in {}",
        ms(stored.elapsed())
    );
    let (peak, _) = memory_kib();
    println!("  peak resident {} MiB", peak / 1024);
    child.kill().await?;
    Ok(())
}

/// `clients CA ADDR SECRETS`: enrols a device per line of SECRETS (`user
/// secret`), each with its own HTTPS client, and keeps a long poll open
/// for each; prints `got CLIENT` when a read returns a message.
async fn clients(args: &[String]) -> anyhow::Result<()> {
    let [ca, addr, secrets] = args else {
        bail!("usage: push clients CA ADDR SECRETS");
    };
    let roots = tls::root_store(&tls::load_certs(Path::new(ca))?, false)?;
    let config = tls::client_config(roots, None)?;
    let addr: std::net::SocketAddr = addr.parse()?;
    let base = format!("https://b.example:{}", addr.port());
    let lines = std::fs::read_to_string(secrets)?;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for line in lines.lines() {
        let (user, secret) = line.split_once(' ').ok_or_else(|| anyhow!("bad line"))?;
        let user: UserId = user.parse()?;
        let secret = secret.to_owned();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(config.clone())
            .resolve("b.example", addr)
            .build()?;
        let base = base.clone();
        let permit = gate.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let api = ProviderApi::enrol(
                http,
                &base,
                "b.example",
                &secret,
                &user,
                "d",
                SigningKey::generate()?,
            )
            .await?;
            drop(permit);
            let mut after = 0;
            loop {
                match api.queue(after, 25).await {
                    Ok(read) => {
                        if let Some(last) = read.messages.last() {
                            after = last.seq;
                            println!("got {}", api.client_id());
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
