//! The single-use values of one authorization round trip: `state`, which ties the
//! callback to the user who started it, and the PKCE S256 verifier (RFC 7636).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// 32 bytes from the operating system's random source, base64url (43 characters:
/// within PKCE's 43–128 and RFC 6749's unguessable `state`).
pub fn random_token() -> Result<Secret, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(Secret::new(URL_SAFE_NO_PAD.encode(bytes)))
}

/// `code_challenge` for `code_challenge_method=S256`.
pub fn challenge(verifier: &Secret) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()))
}

/// What the store keys a flow by: the state's hash, so a read of the table
/// yields no state that a callback would accept.
pub fn state_key(state: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(state.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_s256_base64url_without_padding() {
        // Computed apart, with Python's hashlib and base64.urlsafe_b64encode (padding stripped).
        let verifier = Secret::new("dBjftJeZ4CVP-mJ92K9jkQbMA6aXX8fRoIzsmFUOfVw".into());
        assert_eq!(challenge(&verifier), "n0qyT3S0U7U83SvkUw1lKokc0EbBs_qOmZToM889TCw");
    }

    #[test]
    fn tokens_are_fresh_and_url_safe() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
