//! KMS `Encrypt`/`Decrypt` under one key, with the owner and connection id as
//! encryption context.

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;

use super::{SealContext, SealError, Sealed, Sealer};
use crate::aws::LazyClient;
use crate::secret::Secret;

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
}

fn unavailable<E: std::error::Error>(error: E) -> SealError {
    // The SDK's display names the operation and service code; it never holds plaintext.
    SealError::Unavailable(aws_sdk_kms::error::DisplayErrorContext(error).to_string())
}

#[async_trait]
impl Sealer for KmsSealer {
    async fn seal(&self, secret: &Secret, context: SealContext<'_>) -> Result<Sealed, SealError> {
        let mut request = self.client().encrypt().key_id(&self.key_id).plaintext(Blob::new(secret.expose().as_bytes()));
        for (key, value) in context.pairs() {
            request = request.encryption_context(key, value);
        }
        let output = request.send().await.map_err(unavailable)?;
        let blob = output.ciphertext_blob.ok_or_else(|| SealError::Unavailable("KMS returned no ciphertext".into()))?;
        Ok(Sealed(blob.into_inner()))
    }

    async fn open(&self, sealed: &Sealed, context: SealContext<'_>) -> Result<Secret, SealError> {
        // Pinning the key id stops a ciphertext of another key from being accepted.
        let mut request = self.client().decrypt().key_id(&self.key_id).ciphertext_blob(Blob::new(sealed.0.clone()));
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
        let plaintext = output.plaintext.ok_or_else(|| SealError::Unavailable("KMS returned no plaintext".into()))?;
        let text = String::from_utf8(plaintext.into_inner()).map_err(|_| SealError::Rejected)?;
        Ok(Secret::new(text))
    }
}
