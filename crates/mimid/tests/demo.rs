//! The README's run command, as a test: `mimid demo` (three providers on
//! loopback over real HTTPS, a conversation across them, every step
//! checked) passes in each provider-authentication mode.

use std::process::Command;

fn demo(auth: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_mimid"))
        .args(["demo", "--auth", auth])
        .output()
        .expect("mimid runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "mimid demo --auth {auth} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("c.example is back"), "{stdout}");
    assert!(stdout.ends_with("all checks passed\n"), "{stdout}");
}

#[test]
fn the_demo_passes_with_provider_signatures() {
    demo("signature");
}

#[test]
fn the_demo_passes_with_mutual_tls() {
    demo("mtls");
}

#[test]
fn the_demo_passes_with_both() {
    demo("both");
}
