//! The OAuth clients an operator registered: Bitbucket Cloud's consumer and each
//! Data Center server's incoming application link. Configuration, not code: a JSON
//! list read from `OAUTH_CLIENTS` (locally) or from the Secrets Manager secret
//! `OAUTH_CLIENTS_SECRET_ARN` names (deployed), on first use.

use serde::Deserialize;
use url::Url;

use crate::domain::{Flavor, ServerUrl};
use crate::secret::Secret;

/// One registered client. Keys, secrets and tokens have no assumed length (2026
/// Cloud consumers have 32/76-character keys and secrets, earlier ones 18/32).
#[derive(Clone, Debug)]
pub struct OauthClient {
    /// The API base its connections use (`https://api.bitbucket.org/2.0`, or a Data
    /// Center server's base URL).
    pub server: ServerUrl,
    pub key: String,
    pub secret: Secret,
    pub authorize_url: Url,
    pub token_url: Url,
    /// Asked for on Data Center; Cloud grants what the consumer was given.
    pub scope: Option<String>,
}

/// What an operator writes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    server: String,
    key: String,
    secret: String,
    #[serde(default)]
    authorize_url: Option<String>,
    #[serde(default)]
    token_url: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Data Center: write on repositories (which includes reading them and pull requests).
pub const DATA_CENTER_SCOPE: &str = "PUBLIC_REPOS REPO_WRITE";

#[derive(Clone, Debug, Default)]
pub struct OauthClients(Vec<OauthClient>);

impl OauthClients {
    /// Parses the operator's list; the error names the entry, never a secret.
    pub fn parse(json: &str) -> Result<Self, String> {
        let entries: Vec<Entry> =
            serde_json::from_str(json).map_err(|e| format!("OAuth clients: not a JSON list of clients: {e}"))?;
        entries
            .into_iter()
            .enumerate()
            .map(|(n, entry)| client(entry).map_err(|e| format!("OAuth client {n}: {e}")))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The client registered for the server at `url` (compared as stored).
    pub fn for_server(&self, url: &ServerUrl) -> Option<&OauthClient> {
        self.0.iter().find(|client| client.server.as_str() == url.as_stored().as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The servers a user may connect to, for the page.
    pub fn servers(&self) -> impl Iterator<Item = &ServerUrl> {
        self.0.iter().map(|client| &client.server)
    }
}

fn client(entry: Entry) -> Result<OauthClient, String> {
    let server = ServerUrl::parse(&entry.server).map_err(|why| format!("server {why}"))?.as_stored();
    let endpoint = |given: Option<String>, cloud: &str, data_center: &[&str]| -> Result<Url, String> {
        match (given, server.flavor()) {
            (Some(text), _) => Url::parse(&text).map_err(|e| format!("endpoint {text:?}: {e}")),
            (None, Flavor::Cloud) => Url::parse(cloud).map_err(|e| e.to_string()),
            (None, Flavor::DataCenter) => Ok(server.join(data_center)),
        }
    };
    if entry.key.trim().is_empty() || entry.secret.is_empty() {
        return Err("key and secret are required".into());
    }
    Ok(OauthClient {
        authorize_url: endpoint(
            entry.authorize_url,
            "https://bitbucket.org/site/oauth2/authorize",
            &["rest", "oauth2", "latest", "authorize"],
        )?,
        token_url: endpoint(
            entry.token_url,
            "https://bitbucket.org/site/oauth2/access_token",
            &["rest", "oauth2", "latest", "token"],
        )?,
        scope: entry.scope.or_else(|| (server.flavor() == Flavor::DataCenter).then(|| DATA_CENTER_SCOPE.to_owned())),
        key: entry.key.trim().to_owned(),
        secret: Secret::new(entry.secret),
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_default_per_flavor_and_secrets_stay_out_of_errors() {
        let clients = OauthClients::parse(
            r#"[{"server": "https://bitbucket.org", "key": "k", "secret": "s3cr3t-value"},
                {"server": "https://git.corp.example/", "key": "dc", "secret": "x"}]"#,
        )
        .unwrap();
        let cloud = clients.for_server(&ServerUrl::parse("https://api.bitbucket.org/2.0").unwrap()).unwrap();
        assert_eq!(cloud.token_url.as_str(), "https://bitbucket.org/site/oauth2/access_token");
        assert_eq!(cloud.scope, None);
        let dc = clients.for_server(&ServerUrl::parse("https://git.corp.example").unwrap()).unwrap();
        assert_eq!(dc.authorize_url.as_str(), "https://git.corp.example/rest/oauth2/latest/authorize");
        assert_eq!(dc.scope.as_deref(), Some(DATA_CENTER_SCOPE));
        assert!(!format!("{clients:?}").contains("s3cr3t"));
        let error = OauthClients::parse(r#"[{"server": "ftp://x", "key": "k", "secret": "s3cr3t"}]"#).unwrap_err();
        assert!(error.contains("client 0") && !error.contains("s3cr3t"), "{error}");
    }
}

/// Where the operator's client list comes from.
#[derive(Clone, Default)]
pub enum OauthSource {
    /// "Connect with Bitbucket" is not offered.
    #[default]
    Off,
    /// The list itself (`OAUTH_CLIENTS`), for running locally.
    Inline(Secret),
    /// The Secrets Manager secret holding the list (`OAUTH_CLIENTS_SECRET_ARN`).
    SecretsManager(String),
}

impl std::fmt::Debug for OauthSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "Off",
            Self::Inline(_) => "Inline([redacted])",
            Self::SecretsManager(_) => "SecretsManager",
        })
    }
}

/// The client list, read on first use (never at start-up, which stays as fast with
/// OAuth as without) and kept for the life of the process.
#[derive(Default)]
pub struct ClientsLoader {
    source: OauthSource,
    loaded: tokio::sync::OnceCell<OauthClients>,
    /// Secrets Manager, given ready (tests) or built on first use.
    secrets: tokio::sync::OnceCell<aws_sdk_secretsmanager::Client>,
}

impl ClientsLoader {
    pub fn new(source: OauthSource) -> Self {
        Self { source, loaded: tokio::sync::OnceCell::new(), secrets: tokio::sync::OnceCell::new() }
    }

    /// With a Secrets Manager client of the caller's (an emulator's, a recording one).
    pub fn with_secrets_client(source: OauthSource, client: aws_sdk_secretsmanager::Client) -> Self {
        Self { source, loaded: tokio::sync::OnceCell::new(), secrets: tokio::sync::OnceCell::new_with(Some(client)) }
    }

    async fn read_secret(&self, id: &str) -> Result<OauthClients, String> {
        let client = self
            .secrets
            .get_or_try_init(|| async { crate::aws::sdk_config().map(|sdk| aws_sdk_secretsmanager::Client::new(&sdk)) })
            .await?;
        let value = client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| format!("Secrets Manager: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(&e)))?;
        OauthClients::parse(value.secret_string().ok_or("the secret holds no text")?)
    }

    /// The registered clients; none when OAuth is off. An unreadable list is the
    /// operator's to fix: logged, and the user told to use a token meanwhile.
    pub async fn clients(&self) -> Result<&OauthClients, crate::problem::ApiError> {
        self.loaded
            .get_or_try_init(|| async {
                match &self.source {
                    OauthSource::Off => Ok(OauthClients::default()),
                    OauthSource::Inline(json) => OauthClients::parse(json.expose()),
                    // Boxed: the SDK's future nested this deep outgrew the compiler's type-depth limit.
                    OauthSource::SecretsManager(id) => Box::pin(self.read_secret(id)).await,
                }
            })
            .await
            .map_err(|error| {
                tracing::error!(error = %error, "the OAuth client list is unreadable");
                crate::problem::ApiError::ServiceUnavailable {
                    detail: "Connect with Bitbucket is misconfigured. Tell your operator; meanwhile you can connect with a token.",
                }
            })
    }
}
