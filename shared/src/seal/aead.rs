//! AES-256-GCM under a given key, with the seal context as associated data: the
//! local part of both sealers (KMS hands out the key, the local sealer reads it).

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use zeroize::Zeroizing;

use super::{SealContext, SealError};
use crate::secret::Secret;

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

pub struct Cipher(Aes256Gcm);

impl Cipher {
    /// `None` unless the key is exactly 256 bits.
    pub fn new(key: &[u8]) -> Option<Self> {
        (key.len() == KEY_LEN).then(|| Self(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))))
    }

    // Only the embedded backend's key file needs a new key.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub fn generate_key() -> Zeroizing<Vec<u8>> {
        Zeroizing::new(Aes256Gcm::generate_key(OsRng).to_vec())
    }

    /// `nonce ‖ ciphertext ‖ tag`, appended to `out`.
    pub fn seal_into(&self, secret: &Secret, context: SealContext<'_>, out: &mut Vec<u8>) -> Result<(), SealError> {
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let aad = associated_data(context);
        let ciphertext = self
            .0
            .encrypt(&nonce, Payload { msg: secret.expose().as_bytes(), aad: &aad })
            .map_err(|_| SealError::Unavailable("encryption failed".into()))?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(())
    }

    /// Opens what [`Cipher::seal_into`] wrote, under the same context only.
    pub fn open(&self, bytes: &[u8], context: SealContext<'_>) -> Result<Secret, SealError> {
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Rejected);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let aad = associated_data(context);
        let plaintext = Zeroizing::new(
            self.0
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
                .map_err(|_| SealError::Rejected)?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| SealError::Rejected)?;
        Ok(Secret::new(text.to_owned()))
    }
}

fn associated_data(context: SealContext<'_>) -> Vec<u8> {
    // Length-prefixed, so no two different contexts encode alike.
    let mut aad = Vec::new();
    for (key, value) in context.pairs() {
        for part in [key.as_bytes(), value.as_bytes()] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
    }
    aad
}
