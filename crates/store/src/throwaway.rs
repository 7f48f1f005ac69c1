//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` in a
//! temporary directory, `pg_ctl` on a free loopback port, removed when
//! dropped. When the server binaries are missing it fails with what to
//! install; it never lets a test pass without a database.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster of its own.
pub struct ThrowawayCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the server's commands as this user (PostgreSQL refuses to run
    /// as root).
    run_as: Option<&'static str>,
    options: String,
}

/// How the cluster's server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// `fsync=off`: fast, for tests; a committed transaction still
    /// survives a crash of the server process (not of the machine).
    Off,
    /// PostgreSQL's defaults: for benchmarks.
    On,
}

impl ThrowawayCluster {
    /// Creates and starts a cluster; the database `postgres`, user
    /// `mimid`, trust authentication on 127.0.0.1.
    pub fn start(sync: Sync) -> Result<Self, String> {
        let bin = server_binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("mimid-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let run_as = if running_as_root() {
            Some("postgres")
        } else {
            None
        };
        if run_as.is_some() {
            run(Command::new("chown").arg("postgres:").arg(dir.path()))?;
        }
        let port = free_port()?;
        let options = match sync {
            Sync::Off => format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
                 -c max_connections=200 -k {}",
                dir.path().display()
            ),
            Sync::On => format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c max_connections=200 -k {}",
                dir.path().display()
            ),
        };
        let cluster = ThrowawayCluster {
            dir,
            bin,
            port,
            run_as,
            options,
        };
        cluster.server_command("initdb", |c| {
            c.arg("-D").arg(cluster.data()).args([
                "-A",
                "trust",
                "-U",
                "mimid",
                "-E",
                "UTF8",
                "--no-sync",
            ])
        })?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://` URL of the cluster's database.
    pub fn url(&self) -> String {
        format!("postgres://mimid@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server again after [`ThrowawayCluster::stop`].
    pub fn start_server(&self) -> Result<(), String> {
        let log = self.dir.path().join("server.log");
        self.server_command("pg_ctl", |c| {
            c.arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(&self.options)
                .args(["-w", "-t", "60", "start"])
        })
    }

    /// Stops the server (`-m fast`: clients are disconnected, committed
    /// transactions kept).
    pub fn stop(&self) -> Result<(), String> {
        self.server_command("pg_ctl", |c| {
            c.arg("-D")
                .arg(self.data())
                .args(["-w", "-m", "fast", "stop"])
        })
    }

    fn server_command(
        &self,
        program: &str,
        args: impl FnOnce(&mut Command) -> &mut Command,
    ) -> Result<(), String> {
        let path = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        args(&mut command);
        run(&mut command)
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        let _ = self.server_command("pg_ctl", |c| {
            c.arg("-D")
                .arg(self.data())
                .args(["-w", "-m", "immediate", "stop"])
        });
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The directory with `initdb` and `pg_ctl`: from `PATH`, else Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest first).
fn server_binaries() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    debian.reverse();
    on_path
        .into_iter()
        .chain(debian)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .map(|dir| std::fs::canonicalize(&dir).unwrap_or(dir))
        .ok_or_else(|| {
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in \
             /usr/lib/postgresql/*/bin: install them (Debian: `apt-get install postgresql`) \
             to run the PostgreSQL tests"
                .to_string()
        })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}
