//! The kinds of Bitbucket credentials people hold, what each one's scopes let
//! the product do, and how git authenticates with it.

use serde::{Deserialize, Serialize};

/// The kinds are an open set: OAuth connections come next, so nothing outside
/// this module matches on them exhaustively for behaviour it could ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialType {
    /// Cloud, legacy: Bitbucket username + app password (retired 2026-07-28).
    AppPassword,
    /// Cloud: Atlassian account email + API token with scopes.
    ApiToken,
    /// Cloud: Bearer tokens bound to one repository, project or workspace.
    RepositoryAccessToken,
    ProjectAccessToken,
    WorkspaceAccessToken,
    /// Data Center: a user's HTTP access token (username + token).
    HttpAccessToken,
    /// Data Center: project and repository HTTP access tokens (Bearer only).
    ProjectHttpAccessToken,
    RepositoryHttpAccessToken,
    /// Cloud or Data Center: "Connect with Bitbucket" (OAuth 2.0). Never entered by
    /// hand: made by the authorization round trip, its secret an access and refresh
    /// token sealed together.
    Oauth,
}

/// What an access token is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Repository,
    Project,
    Workspace,
}

impl CredentialType {
    pub const ALL: [&'static str; 8] = [
        "app_password",
        "api_token",
        "repository_access_token",
        "project_access_token",
        "workspace_access_token",
        "http_access_token",
        "project_http_access_token",
        "repository_http_access_token",
    ];

    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppPassword => "app_password",
            Self::ApiToken => "api_token",
            Self::RepositoryAccessToken => "repository_access_token",
            Self::ProjectAccessToken => "project_access_token",
            Self::WorkspaceAccessToken => "workspace_access_token",
            Self::HttpAccessToken => "http_access_token",
            Self::ProjectHttpAccessToken => "project_http_access_token",
            Self::RepositoryHttpAccessToken => "repository_http_access_token",
            Self::Oauth => "oauth",
        }
    }

    /// Whether the kind exists only on Cloud (`Oauth` exists on both: its URL tells).
    pub fn is_cloud(self) -> bool {
        !matches!(
            self,
            Self::HttpAccessToken | Self::ProjectHttpAccessToken | Self::RepositoryHttpAccessToken | Self::Oauth
        )
    }

    /// Whether the credential goes with a login (Basic auth) or alone (Bearer).
    pub fn has_username(self) -> bool {
        matches!(self, Self::AppPassword | Self::ApiToken | Self::HttpAccessToken)
    }

    /// The resource a token is bound to, for the kinds that are bound.
    pub fn bound_to(self) -> Option<Bound> {
        match self {
            Self::RepositoryAccessToken | Self::RepositoryHttpAccessToken => Some(Bound::Repository),
            Self::ProjectAccessToken | Self::ProjectHttpAccessToken => Some(Bound::Project),
            Self::WorkspaceAccessToken => Some(Bound::Workspace),
            _ => None,
        }
    }

    /// The kind Bitbucket Cloud names in `x-credential-type`.
    pub fn from_cloud_header(value: &str) -> Option<Self> {
        match value {
            "api_token" => Some(Self::ApiToken),
            "app_password" => Some(Self::AppPassword),
            "repo_access_token" | "repository_access_token" => Some(Self::RepositoryAccessToken),
            "project_access_token" => Some(Self::ProjectAccessToken),
            "workspace_access_token" => Some(Self::WorkspaceAccessToken),
            _ => None,
        }
    }

    /// The kind a user most likely holds when they did not say: an email means
    /// an Atlassian API token, a plain login an app password (Cloud) or a
    /// personal token (Data Center), and no login at all a token bound to the
    /// resource they named (two segments: a repository, one: a workspace on
    /// Cloud or a project on Data Center).
    pub fn infer(cloud: bool, username: Option<&crate::username::Username>, resource: Option<&Resource>) -> Self {
        match (cloud, username, resource) {
            (true, Some(user), _) if user.is_email() => Self::ApiToken,
            (true, Some(_), _) => Self::AppPassword,
            (false, Some(_), _) => Self::HttpAccessToken,
            (true, None, Some(r)) if r.hint == Some(Bound::Project) => Self::ProjectAccessToken,
            (true, None, Some(r)) if r.parts.len() == 1 => Self::WorkspaceAccessToken,
            (true, None, _) => Self::RepositoryAccessToken,
            (false, None, Some(r)) if r.parts.len() == 1 => Self::ProjectHttpAccessToken,
            (false, None, _) => Self::RepositoryHttpAccessToken,
        }
    }

    /// The git user for HTTPS. `None`: git sends `Authorization: Bearer` instead.
    pub fn git_username(self, username: Option<&str>) -> Option<String> {
        match self {
            // Bitbucket's static user for API tokens (the email is never a git user).
            Self::ApiToken => Some("x-bitbucket-api-token-auth".into()),
            Self::RepositoryAccessToken | Self::ProjectAccessToken | Self::WorkspaceAccessToken => {
                Some("x-token-auth".into())
            }
            Self::AppPassword | Self::HttpAccessToken => username.map(str::to_owned),
            // OAuth: Cloud's git user (`x-token-auth`) is recorded when verified; Data Center takes a Bearer header.
            Self::ProjectHttpAccessToken | Self::RepositoryHttpAccessToken | Self::Oauth => None,
        }
    }
}

/// A repository, project or workspace slug or key as Bitbucket allows them.
fn is_slug(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part.len() <= 128
        && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
}

/// A token's resource as the user gave it: a slug path (`ws/repo`) or the
/// address of its page, which is what people copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub parts: Vec<String>,
    /// What the pasted address showed the resource to be.
    pub hint: Option<Bound>,
}

impl Resource {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        let (path, is_url) = match url::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "https" | "http") => (url.path().to_owned(), true),
            _ => (text.to_owned(), false),
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (parts, hint): (Vec<&str>, Option<Bound>) = match segments.as_slice() {
            // Cloud project page: /{ws}/workspace/projects/{KEY}
            [ws, "workspace", "projects", key, ..] => (vec![ws, key], Some(Bound::Project)),
            // Data Center: /projects/{KEY}/repos/{slug}/…, /projects/{KEY}, /scm/{key}/{slug}.git
            ["projects", key, "repos", slug, ..] => (vec![key, slug], Some(Bound::Repository)),
            ["projects", key, ..] => (vec![key], Some(Bound::Project)),
            ["scm", key, slug, ..] => (vec![key, slug], Some(Bound::Repository)),
            // Cloud repository page or clone URL: /{ws}/{repo}/…
            [ws, repo, ..] if is_url => (vec![ws, repo], Some(Bound::Repository)),
            [ws] => (vec![ws], None),
            [a, b] => (vec![a, b], None),
            _ => {
                return Err("must be a repository, project or workspace: 'workspace/repo', or the address of its page");
            }
        };
        let parts: Vec<String> = parts.iter().map(|p| p.trim_end_matches(".git").to_owned()).collect();
        if !parts.iter().all(|p| is_slug(p)) {
            return Err(
                "must name a repository, project or workspace by its slug or key (letters, digits, '-', '_', '.')",
            );
        }
        Ok(Self { parts, hint })
    }

    /// The stored form: `a/b` or `a`.
    pub fn as_path(&self) -> String {
        self.parts.join("/")
    }

    /// The stored form read back (`as_path`): slugs and keys only, never read as an
    /// address, so a workspace named `projects` or `scm` stays what it was.
    pub fn from_stored(text: &str) -> Result<Self, &'static str> {
        let parts: Vec<String> = text.split('/').map(str::to_owned).collect();
        if parts.is_empty() || parts.len() > 2 || !parts.iter().all(|p| is_slug(p)) {
            return Err("must be a stored slug path");
        }
        Ok(Self { parts, hint: None })
    }

    /// What a connection keeps: the parts, without what the pasted address hinted.
    pub fn as_stored(&self) -> Self {
        Self { parts: self.parts.clone(), hint: None }
    }
}

/// One thing the product can do with a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub enabled: bool,
    /// When disabled: the scope or permission that would enable it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<String>,
}

/// What the connection can do, derived from what Bitbucket granted, so a page
/// can say "Import works; pull requests need write:pullrequest:bitbucket".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub read_code: Capability,
    pub push: Capability,
    pub pull_requests: Capability,
    pub list_workspaces: Capability,
    pub identity: Capability,
}

impl Capabilities {
    /// The product's core job: import code and open pull requests.
    pub fn core_missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for capability in [&self.read_code, &self.push, &self.pull_requests] {
            if let Some(needs) = capability.needs.as_ref().filter(|_| !capability.enabled) {
                for scope in needs.split(" and ") {
                    if !missing.iter().any(|m| m == scope) {
                        missing.push(scope.to_owned());
                    }
                }
            }
        }
        missing
    }

    /// Judged from Bitbucket Cloud scopes in the vocabulary of `kind`.
    pub fn from_cloud_scopes(kind: CredentialType, granted: &[String]) -> Self {
        let has = |any: &[&str]| any.iter().any(|s| granted.iter().any(|g| g == s));
        let need = |ok: bool, scope: &str| Capability { enabled: ok, needs: (!ok).then(|| scope.to_owned()) };
        if kind == CredentialType::ApiToken {
            // API tokens: each scope stands alone; write does not imply read.
            let read = has(&["read:repository:bitbucket"]);
            let write = has(&["write:repository:bitbucket"]);
            let pr_read = has(&["read:pullrequest:bitbucket"]);
            let pr_write = has(&["write:pullrequest:bitbucket"]);
            let pr_needs = match (pr_read, pr_write) {
                (false, false) => "read:pullrequest:bitbucket and write:pullrequest:bitbucket",
                (false, true) => "read:pullrequest:bitbucket",
                _ => "write:pullrequest:bitbucket",
            };
            return Self {
                read_code: need(read, "read:repository:bitbucket"),
                push: need(write, "write:repository:bitbucket"),
                pull_requests: need(pr_read && pr_write, pr_needs),
                list_workspaces: need(has(&["read:workspace:bitbucket"]), "read:workspace:bitbucket"),
                identity: need(has(&["read:user:bitbucket"]), "read:user:bitbucket"),
            };
        }
        // App passwords and access tokens: classic names, write implies read, admin implies write.
        let write = has(&["repository:write", "repository:admin"]);
        let bound = kind.bound_to().is_some();
        Self {
            read_code: need(write || has(&["repository"]), "repository"),
            push: need(write, "repository:write"),
            pull_requests: need(has(&["pullrequest:write"]), "pullrequest:write"),
            // Access tokens see one workspace and no account: nothing would enable these.
            list_workspaces: if bound { Capability::default() } else { need(has(&["account"]), "account") },
            identity: if bound { Capability::default() } else { need(has(&["account"]), "account") },
        }
    }

    /// Data Center OAuth scopes (`REPO_READ` … `SYSTEM_ADMIN`, each including the ones
    /// below it): pull requests need `REPO_READ`, pushing `REPO_WRITE`.
    pub fn from_data_center_scopes(granted: &[String]) -> Self {
        let has = |any: &[&str]| any.iter().any(|s| granted.iter().any(|g| g == s));
        let write = has(&["REPO_WRITE", "REPO_ADMIN", "PROJECT_ADMIN", "ADMIN_WRITE", "SYSTEM_ADMIN"]);
        let read = write || has(&["REPO_READ"]);
        let need = |ok: bool, scope: &str| Capability { enabled: ok, needs: (!ok).then(|| scope.to_owned()) };
        Self {
            read_code: need(read, "REPO_READ"),
            push: need(write, "REPO_WRITE"),
            pull_requests: need(read, "REPO_READ"),
            list_workspaces: need(read, "REPO_READ"),
            identity: Capability { enabled: true, needs: None },
        }
    }

    /// Data Center grants permissions, not scopes: write on repositories is what was checked.
    pub fn data_center(kind: CredentialType) -> Self {
        let yes = || Capability { enabled: true, needs: None };
        let personal = kind == CredentialType::HttpAccessToken;
        Self {
            read_code: yes(),
            push: yes(),
            pull_requests: yes(),
            list_workspaces: if personal || kind == CredentialType::ProjectHttpAccessToken {
                yes()
            } else {
                Capability::default()
            },
            identity: if personal { yes() } else { Capability::default() },
        }
    }
}

/// Stored and answered as its path (`as_path`); read back through `parse`, so a stored value
/// that no longer parses is refused where the item is read.
impl serde::Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_path())
    }
}

impl<'de> serde::Deserialize<'de> for Resource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_stored(&text).map_err(|why| serde::de::Error::custom(format!("resource {why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_product_pages_four_scope_token_does_the_core_job() {
        let four = owned(&[
            "read:repository:bitbucket",
            "write:repository:bitbucket",
            "read:pullrequest:bitbucket",
            "write:pullrequest:bitbucket",
        ]);
        let capabilities = Capabilities::from_cloud_scopes(CredentialType::ApiToken, &four);
        assert!(capabilities.core_missing().is_empty());
        assert_eq!(capabilities.identity.needs.as_deref(), Some("read:user:bitbucket"));
        assert_eq!(capabilities.list_workspaces.needs.as_deref(), Some("read:workspace:bitbucket"));
    }

    #[test]
    fn api_token_write_does_not_imply_read() {
        let granted = owned(&["write:repository:bitbucket", "write:pullrequest:bitbucket"]);
        let capabilities = Capabilities::from_cloud_scopes(CredentialType::ApiToken, &granted);
        assert_eq!(capabilities.core_missing(), owned(&["read:repository:bitbucket", "read:pullrequest:bitbucket"]));
    }

    #[test]
    fn classic_write_implies_read_and_admin_implies_write() {
        let granted = owned(&["repository:admin", "pullrequest:write"]);
        let capabilities = Capabilities::from_cloud_scopes(CredentialType::AppPassword, &granted);
        assert!(capabilities.core_missing().is_empty());
        let read_only = owned(&["repository", "pullrequest"]);
        let capabilities = Capabilities::from_cloud_scopes(CredentialType::RepositoryAccessToken, &read_only);
        assert_eq!(capabilities.core_missing(), owned(&["repository:write", "pullrequest:write"]));
    }

    #[test]
    fn a_stored_resource_reads_back_as_it_was_stored() {
        for stored in ["projects/infra", "scm/api", "acme/api", "OPS", "projects"] {
            let resource: Resource = serde_json::from_value(serde_json::json!(stored)).unwrap();
            assert_eq!(resource.as_path(), stored, "a workspace named like a page's path segment stays itself");
        }
        for bad in ["", "a/b/c", "https://bitbucket.org/acme/api", "a b", "../x"] {
            assert!(serde_json::from_value::<Resource>(serde_json::json!(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn resources_are_read_from_slugs_and_pasted_addresses() {
        let parse = |t: &str| Resource::parse(t).unwrap();
        assert_eq!(parse("acme/api").as_path(), "acme/api");
        assert_eq!(parse("https://bitbucket.org/acme/api/src/main/").as_path(), "acme/api");
        assert_eq!(parse("https://bitbucket.org/acme/api.git").as_path(), "acme/api");
        let project = parse("https://bitbucket.org/acme/workspace/projects/OPS");
        assert_eq!((project.as_path().as_str(), project.hint), ("acme/OPS", Some(Bound::Project)));
        assert_eq!(parse("https://git.corp/projects/OPS/repos/infra/browse").as_path(), "OPS/infra");
        assert_eq!(parse("https://git.corp/scm/ops/infra.git").as_path(), "ops/infra");
        assert_eq!(parse("acme").as_path(), "acme");
        for bad in ["", "a/b/c", "../x", "a b/c", "acme/<script>"] {
            assert!(Resource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn git_users_per_kind() {
        assert_eq!(CredentialType::ApiToken.git_username(Some("a@b.c")).as_deref(), Some("x-bitbucket-api-token-auth"));
        assert_eq!(CredentialType::RepositoryAccessToken.git_username(None).as_deref(), Some("x-token-auth"));
        assert_eq!(CredentialType::AppPassword.git_username(Some("jdoe")).as_deref(), Some("jdoe"));
        assert_eq!(CredentialType::HttpAccessToken.git_username(Some("alice")).as_deref(), Some("alice"));
        assert_eq!(CredentialType::RepositoryHttpAccessToken.git_username(None), None);
    }

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for name in CredentialType::ALL.into_iter().chain(["oauth"]) {
            assert_eq!(CredentialType::parse(name).map(CredentialType::as_str), Some(name));
        }
    }
}
