//! AES-256-GCM with a key file on disk, for local runs. The associated data is
//! the same context KMS binds, so a moved ciphertext fails here too.

use std::io::Write;
use std::path::Path;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::aead::{Cipher, KEY_LEN};
use super::{SealContext, SealError, Sealed, Sealer};
use crate::secret::Secret;

/// Version 2 binds the origin too; version 1 ciphertexts (owner and id only) no
/// longer open, and the user is asked for the secret again.
const FORMAT: u8 = 2;

pub struct LocalSealer {
    cipher: Cipher,
}

impl LocalSealer {
    /// Opens the key file, creating it (mode 0600) with a fresh random key on first use.
    pub fn open_or_create(path: &Path) -> Result<Self, String> {
        let key: Zeroizing<Vec<u8>> = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => create_key_file(path)?,
            Err(error) => return Err(format!("cannot read key file {}: {error}", path.display())),
        };
        let cipher = Cipher::new(&key)
            .ok_or_else(|| format!("key file {} must hold exactly {KEY_LEN} bytes", path.display()))?;
        Ok(Self { cipher })
    }
}

fn create_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let key = Cipher::generate_key();
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

#[async_trait]
impl Sealer for LocalSealer {
    async fn seal(&self, secret: &Secret, context: SealContext<'_>) -> Result<Sealed, SealError> {
        let mut out = vec![FORMAT];
        self.cipher.seal_into(secret, context, &mut out)?;
        Ok(Sealed(out))
    }

    async fn open(&self, sealed: &Sealed, context: SealContext<'_>) -> Result<Secret, SealError> {
        match sealed.0.split_first() {
            Some((&FORMAT, rest)) => self.cipher.open(rest, context),
            _ => Err(SealError::Rejected),
        }
    }
}
