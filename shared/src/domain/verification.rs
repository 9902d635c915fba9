//! What Bitbucket told us about working credentials.

use serde::{Deserialize, Serialize};

use super::{Account, Provider};
use crate::credential::{Capabilities, CredentialType};

/// Something the connection works without, and what would change that.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub detail: String,
}

/// What Bitbucket told us about working credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub provider: Provider,
    pub credential_type: CredentialType,
    pub account: Option<Account>,
    pub scopes: Vec<String>,
    pub capabilities: Capabilities,
    pub warnings: Vec<Warning>,
    pub git_username: Option<String>,
}

impl Verification {
    /// A verified API token with every scope, for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub fn for_tests() -> Self {
        Self {
            provider: Provider::BitbucketCloud,
            credential_type: CredentialType::ApiToken,
            account: Account::new(Some("{1}"), None, Some("J"), Some("j")),
            scopes: Vec::new(),
            capabilities: Capabilities::default(),
            warnings: Vec::new(),
            git_username: None,
        }
    }
}
