//! Sealing secrets: the port and its adapters (KMS envelope encryption deployed,
//! AES-GCM under a key file locally). Both bind a ciphertext to the same context.

mod aead;
mod kms;
#[cfg(feature = "embedded")]
mod local;

pub use kms::KmsSealer;
#[cfg(feature = "embedded")]
pub use local::LocalSealer;

use async_trait::async_trait;

use crate::domain::{ConnectionId, Owner};
use crate::origin::Origin;
use crate::secret::Secret;

/// Ciphertext of a secret. Opaque; never the secret itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(pub Vec<u8>);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// What a ciphertext is bound to: it opens only for the same owner and connection,
/// and only for the origin of the server it is about to be sent to. KMS records the
/// context of every `Decrypt` in CloudTrail, origin included.
#[derive(Clone, Copy, Debug)]
pub struct SealContext<'a> {
    pub owner: &'a Owner,
    pub connection: &'a ConnectionId,
    pub origin: &'a Origin,
}

impl SealContext<'_> {
    pub const OWNER_KEY: &'static str = "owner";
    pub const CONNECTION_KEY: &'static str = "connection_id";
    pub const ORIGIN_KEY: &'static str = "origin";

    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (Self::OWNER_KEY, self.owner.as_str().to_owned()),
            (Self::CONNECTION_KEY, self.connection.to_string()),
            (Self::ORIGIN_KEY, self.origin.as_str().to_owned()),
        ]
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The ciphertext does not open under this context and key (or was sealed in a
    /// format this version no longer reads).
    #[error("ciphertext does not open under this context")]
    Rejected,
    #[error("sealer unavailable: {0}")]
    Unavailable(String),
}

impl SealError {
    /// What the user hears: try again, or only a new secret repairs the connection.
    pub fn into_api(self) -> crate::problem::ApiError {
        tracing::error!(error = %self, "sealing failed");
        match self {
            Self::Unavailable(_) => crate::problem::ApiError::ServiceUnavailable {
                detail: "The encryption service is unavailable. Try again shortly; nothing was changed.",
            },
            Self::Rejected => crate::problem::ApiError::SecretUnreadable,
        }
    }
}

#[async_trait]
pub trait Sealer: Send + Sync {
    async fn seal(&self, secret: &Secret, context: SealContext<'_>) -> Result<Sealed, SealError>;
    async fn open(&self, sealed: &Sealed, context: SealContext<'_>) -> Result<Secret, SealError>;
}
