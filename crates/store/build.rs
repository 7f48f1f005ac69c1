//! Rebuild when a migration changes: `sqlx::migrate!` embeds
//! `migrations/` at compile time but cannot tell Cargo to watch it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations_pg");
}
