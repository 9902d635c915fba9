//! AES-256-GCM with a key file on disk, for local runs. The associated data is
//! the same context KMS binds, so a moved ciphertext fails here too.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{SealContext, SealError, Sealed, Sealer};
use crate::secret::Secret;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

pub struct LocalSealer {
    cipher: Aes256Gcm,
}

impl LocalSealer {
    /// Opens the key file, creating it (mode 0600) with a fresh random key on first use.
    pub fn open_or_create(path: &Path) -> Result<Self, String> {
        let key: Zeroizing<Vec<u8>> = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => create_key_file(path)?,
            Err(error) => return Err(format!("cannot read key file {}: {error}", path.display())),
        };
        if key.len() != 32 {
            return Err(format!("key file {} must hold exactly 32 bytes", path.display()));
        }
        Ok(Self { cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)) })
    }
}

fn create_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let key = Zeroizing::new(Aes256Gcm::generate_key(OsRng).to_vec());
    // create_new: two processes starting together must not both write a key.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => {
            file.write_all(&key).map_err(|e| format!("cannot write key file: {e}"))?;
            file.sync_all().map_err(|e| format!("cannot write key file: {e}"))?;
            Ok(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map(Zeroizing::new).map_err(|e| format!("cannot read key file: {e}"))
        }
        Err(error) => Err(format!("cannot create key file {}: {error}", path.display())),
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

#[async_trait]
impl Sealer for LocalSealer {
    async fn seal(&self, secret: &Secret, context: SealContext<'_>) -> Result<Sealed, SealError> {
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let aad = associated_data(context);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, Payload { msg: secret.expose().as_bytes(), aad: &aad })
            .map_err(|_| SealError::Unavailable("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(Sealed(out))
    }

    async fn open(&self, sealed: &Sealed, context: SealContext<'_>) -> Result<Secret, SealError> {
        let bytes = &sealed.0;
        if bytes.len() < 1 + NONCE_LEN || bytes[0] != FORMAT_V1 {
            return Err(SealError::Rejected);
        }
        let nonce = Nonce::from_slice(&bytes[1..1 + NONCE_LEN]);
        let aad = associated_data(context);
        let plaintext = Zeroizing::new(
            self.cipher
                .decrypt(nonce, Payload { msg: &bytes[1 + NONCE_LEN..], aad: &aad })
                .map_err(|_| SealError::Rejected)?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| SealError::Rejected)?;
        Ok(Secret::new(text.to_owned()))
    }
}
