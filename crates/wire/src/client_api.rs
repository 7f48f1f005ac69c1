//! What a client of the client API signs (`docs/client-api.md`): the
//! provider-internal API, not MIMI, but its signatures have one encoding
//! for the server and the SDK.

/// `MIMI-Client`: the signing client's ClientID.
pub const CLIENT_HEADER: &str = "MIMI-Client";
/// `MIMI-Client-Timestamp`: seconds since the Unix epoch, decimal.
pub const TIMESTAMP_HEADER: &str = "MIMI-Client-Timestamp";
/// `MIMI-Client-Nonce`: 16 random bytes, lower-case hex.
pub const NONCE_HEADER: &str = "MIMI-Client-Nonce";
/// `MIMI-Client-Signature`: the Ed25519 signature, base64url without
/// padding.
pub const SIGNATURE_HEADER: &str = "MIMI-Client-Signature";

/// The bytes a client signs for one request: a label, then the provider's
/// domain, the ClientID, the method and the path with its query, each
/// followed by a zero byte (none of them can hold one), then the timestamp
/// (8 bytes, big-endian), the nonce and the SHA-256 of the body.
pub fn client_request_content(
    provider: &str,
    client: &str,
    method: &str,
    path_and_query: &str,
    timestamp: u64,
    nonce: &[u8; 16],
    body_sha256: &[u8; 32],
) -> Vec<u8> {
    let mut content = Vec::with_capacity(
        96 + provider.len() + client.len() + method.len() + path_and_query.len(),
    );
    for part in [
        "mimid client request v1",
        provider,
        client,
        method,
        path_and_query,
    ] {
        content.extend_from_slice(part.as_bytes());
        content.push(0);
    }
    content.extend_from_slice(&timestamp.to_be_bytes());
    content.extend_from_slice(nonce);
    content.extend_from_slice(body_sha256);
    content
}
