//! Envelope encryption under one KMS key: `GenerateDataKey` for each seal, the
//! secret encrypted locally with AES-256-GCM under that data key, the encrypted
//! data key kept beside it. Opening is one `Decrypt` of the data key. KMS binds the
//! data key to the encryption context (owner, connection id, origin) and the local
//! cipher binds the secret to the same context, so a secret of any size fits
//! (KMS's own `Encrypt` stops at 4,096 bytes; OAuth token pairs pass 5 KB).
//!
//! Stored form: `2 ‖ u16 length of the encrypted data key ‖ encrypted data key ‖
//! nonce ‖ ciphertext ‖ tag`. A ciphertext from `Encrypt` (before envelopes, and
//! bound to owner and id only) does not start with 2 and is refused unopened.

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use super::aead::Cipher;
use super::{SealContext, SealError, Sealed, Sealer};
use crate::aws::LazyClient;
use crate::secret::Secret;

const FORMAT: u8 = 2;

#[derive(Debug)]
pub struct KmsSealer {
    client: LazyClient<Client>,
    key_id: String,
}

impl KmsSealer {
    pub fn new(client: Client, key_id: impl Into<String>) -> Self {
        Self { client: LazyClient::ready(client), key_id: key_id.into() }
    }

    /// A sealer whose KMS client is built on first use: a rename never needs KMS,
    /// and add builds it while Bitbucket is being asked, so neither pays for it
    /// before its first request.
    pub fn lazy(config: aws_config::SdkConfig, key_id: impl Into<String>) -> Self {
        Self { client: LazyClient::on_first_use(config), key_id: key_id.into() }
    }

    fn client(&self) -> &Client {
        self.client.get(Client::new)
    }

    /// Builds the client and opens its connection now (`aws::warm`), for functions
    /// whose usual request seals or opens a secret.
    pub async fn open_connection(&self) -> bool {
        crate::aws::warm::kms(self.client(), &self.key_id).await
    }
}

fn unavailable<E: std::error::Error>(error: E) -> SealError {
    // The SDK's display names the operation and service code; it never holds plaintext.
    SealError::Unavailable(aws_sdk_kms::error::DisplayErrorContext(error).to_string())
}

/// The encrypted data key and the locally sealed secret, split apart.
fn envelope(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&FORMAT, rest) = bytes.split_first()? else { return None };
    let (length, rest) = rest.split_first_chunk::<2>()?;
    let length = usize::from(u16::from_be_bytes(*length));
    (rest.len() > length).then(|| rest.split_at(length))
}

#[async_trait]
impl Sealer for KmsSealer {
    async fn seal(&self, secret: &Secret, context: SealContext<'_>) -> Result<Sealed, SealError> {
        let mut request = self.client().generate_data_key().key_id(&self.key_id).key_spec(DataKeySpec::Aes256);
        for (key, value) in context.pairs() {
            request = request.encryption_context(key, value);
        }
        let output = request.send().await.map_err(unavailable)?;
        let missing = || SealError::Unavailable("KMS returned no data key".into());
        let data_key = Zeroizing::new(output.plaintext.ok_or_else(missing)?.into_inner());
        let encrypted_key = output.ciphertext_blob.ok_or_else(missing)?.into_inner();
        let cipher =
            Cipher::new(&data_key).ok_or_else(|| SealError::Unavailable("KMS returned a short data key".into()))?;
        let length = u16::try_from(encrypted_key.len())
            .map_err(|_| SealError::Unavailable("KMS returned an oversized data key".into()))?;
        let mut out = Vec::with_capacity(3 + encrypted_key.len() + secret.expose().len() + 28);
        out.push(FORMAT);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&encrypted_key);
        cipher.seal_into(secret, context, &mut out)?;
        Ok(Sealed(out))
    }

    async fn open(&self, sealed: &Sealed, context: SealContext<'_>) -> Result<Secret, SealError> {
        let (encrypted_key, sealed_secret) = envelope(&sealed.0).ok_or(SealError::Rejected)?;
        // Pinning the key id stops a data key of another key from being accepted.
        let mut request = self.client().decrypt().key_id(&self.key_id).ciphertext_blob(Blob::new(encrypted_key));
        for (key, value) in context.pairs() {
            request = request.encryption_context(key, value);
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(error) => {
                let rejected = error
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_ciphertext_exception() || e.is_incorrect_key_exception());
                return Err(if rejected { SealError::Rejected } else { unavailable(error) });
            }
        };
        let data_key = Zeroizing::new(
            output.plaintext.ok_or_else(|| SealError::Unavailable("KMS returned no plaintext".into()))?.into_inner(),
        );
        Cipher::new(&data_key).ok_or(SealError::Rejected)?.open(sealed_secret, context)
    }
}

#[cfg(test)]
mod tests {
    use super::envelope;

    #[test]
    fn only_a_whole_envelope_splits() {
        assert_eq!(envelope(&[2, 0, 2, 9, 9, 7]), Some((&[9u8, 9][..], &[7u8][..])));
        assert_eq!(envelope(&[2, 0, 2, 9, 9]), None, "nothing after the data key");
        assert_eq!(envelope(&[1, 0, 1, 9, 7]), None, "another format");
        assert_eq!(envelope(&[2, 0]), None);
        assert_eq!(envelope(&[]), None);
    }
}
