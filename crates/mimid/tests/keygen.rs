//! `mimid keygen`: the key file it writes loads as a provider key with the
//! asked validity, and an existing file is never overwritten.

use std::process::Command;

#[test]
fn keygen_writes_a_loadable_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("provider.key");
    let run = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_mimid"))
            .args(["keygen", "--out"])
            .arg(path)
            .args(["--not-before", "1795000000", "--not-after", "1826536000"])
            .output()
            .unwrap()
    };
    let first = run(&out);
    assert!(first.status.success(), "{first:?}");
    let key = mimid_transport::ProviderKey::load(&out).unwrap();
    let vk = key.verification_key();
    assert_eq!(
        (vk.not_before, vk.not_after),
        (1_795_000_000, 1_826_536_000)
    );
    let stdout = String::from_utf8(first.stdout).unwrap();
    assert!(
        stdout.contains(&mimid_wire::hex_string(&key.key_id())),
        "{stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key file is readable by others");
    }
    let before = std::fs::read(&out).unwrap();
    assert!(!run(&out).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), before);
}
