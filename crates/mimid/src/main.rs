//! `mimid`: a MIMI transport server (profile 1, `docs/protocol.md`).
//!
//! For now the binary has two tools: `mimid inspect`, which decodes a
//! captured request or response body, and `mimid keygen`, which makes a
//! provider key file (`docs/operations.md`, "Provider keys").

mod config;
mod demo;
mod inspect;
mod ops;
mod serve;

/// mimalloc: a request allocates many small buffers (decoded MLS structs,
/// recipient lists), which the system allocator serves markedly slower
/// (`docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::inspect::{Input, InspectError, Selector, Side};

#[derive(Parser)]
#[command(name = "mimid", version, about = "MIMI transport server (profile 1)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode a captured request or response body and print it.
    ///
    /// With neither --type nor --endpoint, every known type is tried and
    /// each one that decodes the whole body is shown. Exit code 2 when the
    /// body does not decode, 1 for input or usage errors.
    Inspect(InspectArgs),
    /// Make a new Ed25519 provider key file (never overwrites a file).
    ///
    /// Prints the key id and validity. Configure it after the current key
    /// to publish it before a rotation.
    Keygen(KeygenArgs),
    /// Three providers on loopback and a conversation across them, every
    /// step checked (exit code 1 on any failed check).
    Demo(DemoArgs),
    /// Serve as a provider, configured by a TOML file
    /// (docs/operations.md, "Configuration"); SIGTERM or SIGINT stops it
    /// gracefully, SIGHUP reloads its certificate and provider keys.
    Serve(ServeArgs),
    /// List the outbox jobs that could not be delivered.
    DeadLetters(ConfigArgs),
    /// Add, remove or list the provider's users.
    User(UserArgs),
    /// Privacy Pass tools (docs/operations.md, "Privacy Pass").
    #[command(subcommand)]
    PrivacyPass(PrivacyPassCommand),
}

#[derive(Subcommand)]
enum PrivacyPassCommand {
    /// Make a new issuer key file (RSA 2048, PEM; never overwrites a file)
    /// and print its token_key, which other providers configure to accept
    /// this issuer's tokens.
    Keygen {
        /// Where to write the key file (readable by its owner only).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Args)]
struct UserArgs {
    /// The configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user: a name (on the configured domain) or a whole UserID.
    Add { name: String },
    /// Remove a user, its clients, their KeyPackages and its connections.
    Remove { name: String },
    /// List the users and their clients.
    List,
    /// Print a one-time secret with which one new client of the user
    /// enrols through the client API (docs/client-api.md).
    Invite {
        name: String,
        /// Hours the secret is good for.
        #[arg(long, default_value_t = 168)]
        valid_hours: u64,
    },
}

#[derive(Args)]
struct ConfigArgs {
    /// The configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Args)]
struct ServeArgs {
    /// The configuration file (settings may be overridden by
    /// MIMID_<SECTION>_<KEY> environment variables).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Log lines as text or JSON (instead of the configured log.format).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<config::LogFormat>,
}

#[derive(Args)]
struct DemoArgs {
    /// Keep the providers running afterwards, and print their addresses,
    /// domains and CA file, then `ready`.
    #[arg(long)]
    hold: bool,
    /// Provider authentication: signature, mtls or both.
    #[arg(long, default_value = "signature")]
    auth: String,
}

#[derive(Args)]
struct KeygenArgs {
    /// Where to write the key file (TOML, readable by its owner only).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Start of validity, seconds since the Unix epoch (default: now).
    #[arg(long, value_name = "UNIX")]
    not_before: Option<u64>,
    /// End of validity, seconds since the Unix epoch (default: one year
    /// after not_before).
    #[arg(long, value_name = "UNIX")]
    not_after: Option<u64>,
}

#[derive(Args)]
struct InspectArgs {
    /// Decode as the request type of this endpoint path (e.g.
    /// /verification_key); without --response, the response type is tried
    /// when the request type does not fit.
    #[arg(long, value_name = "PATH", conflicts_with = "type_name")]
    endpoint: Option<String>,
    /// Decode as this type, named as in docs/protocol.md (e.g. DSResponse).
    #[arg(long = "type", value_name = "NAME")]
    type_name: Option<String>,
    /// With --endpoint: decode as the endpoint's response type.
    #[arg(long, requires = "endpoint")]
    response: bool,
    /// Print pretty JSON (full values) instead of the tree.
    #[arg(long)]
    json: bool,
    /// The input is hex text (whitespace ignored), not raw bytes.
    #[arg(long)]
    hex: bool,
    /// The body: a file, or - for standard input.
    #[arg(value_name = "FILE|-")]
    input: PathBuf,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with success; usage errors exit 1.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let code = e
                .downcast_ref::<InspectError>()
                .map_or(1, InspectError::exit_code);
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => run_inspect(&args),
        Command::Keygen(args) => run_keygen(&args),
        Command::Demo(args) => run_demo(&args),
        Command::Serve(args) => {
            let config = config::Config::load(&args.config)?;
            init_logs(
                args.log_format.unwrap_or(config.log.format),
                &config.log.level,
            )?;
            tokio::runtime::Runtime::new()?.block_on(serve::serve(config))
        }
        Command::DeadLetters(args) => {
            let config = config::Config::load(&args.config)?;
            tokio::runtime::Runtime::new()?.block_on(serve::dead_letters(config))
        }
        Command::PrivacyPass(PrivacyPassCommand::Keygen { out }) => {
            let key = mimid_transport::privacy_pass::IssuerKey::generate()?;
            key.save(&out)?;
            println!(
                "token_key {} token_key_id {} written to {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    key.token_key()
                ),
                mimid_wire::hex_string(&key.token_key_id()),
                out.display()
            );
            Ok(())
        }
        Command::User(args) => {
            let config = config::Config::load(&args.config)?;
            let action = match args.action {
                UserAction::Add { name } => serve::UserAction::Add(name),
                UserAction::Remove { name } => serve::UserAction::Remove(name),
                UserAction::List => serve::UserAction::List,
                UserAction::Invite { name, valid_hours } => {
                    serve::UserAction::Invite(name, valid_hours)
                }
            };
            tokio::runtime::Runtime::new()?.block_on(serve::users(config, action))
        }
    }
}

/// Log lines to standard error: `format`, filtered by `RUST_LOG` if set,
/// else by `level` (both checked: a bad filter fails the start).
fn init_logs(format: config::LogFormat, level: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) => EnvFilter::try_new(&value).with_context(|| format!("RUST_LOG={value}"))?,
        Err(_) => EnvFilter::try_new(level).context("log.level")?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        config::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

fn run_demo(args: &DemoArgs) -> anyhow::Result<()> {
    let mode = match args.auth.as_str() {
        "signature" => mimid_transport::AuthMode::Signature,
        "mtls" => mimid_transport::AuthMode::Mtls,
        "both" => mimid_transport::AuthMode::Both,
        other => anyhow::bail!("--auth: {other:?} is not signature, mtls or both"),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    runtime.block_on(demo::run(dir.path(), mode, args.hold))
}

fn run_keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    use mimid_transport::Clock as _;
    let not_before = args
        .not_before
        .unwrap_or_else(|| mimid_transport::SystemClock.now());
    let not_after = args
        .not_after
        .unwrap_or(not_before.saturating_add(365 * 86_400));
    let key = mimid_transport::ProviderKey::generate(not_before, not_after)
        .map_err(|e| anyhow::anyhow!("cannot make a key: {e}"))?;
    key.save(&args.out)?;
    println!(
        "key_id {} valid {not_before}..{not_after} written to {}",
        mimid_wire::hex_string(&key.key_id()),
        args.out.display()
    );
    Ok(())
}

fn run_inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let selector = match (&args.type_name, &args.endpoint) {
        (Some(name), _) => Selector::Type(name),
        (None, Some(path)) => Selector::Endpoint {
            path,
            side: args.response.then_some(Side::Response),
        },
        (None, None) => Selector::Any,
    };
    let body = inspect::read_input(&Input::from_arg(&args.input), args.hex)?;
    let report = inspect::inspect(&body, selector, &mimid_wire::Limits::default())?;
    let text = if args.json {
        if let Some(note) = report.note() {
            eprintln!("note: {note}");
        }
        report.to_json()?
    } else {
        report.to_text()
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`mimid inspect ... | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}
