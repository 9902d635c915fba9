//! What an OAuth connection's sealed secret holds, and what a token endpoint
//! answers (RFC 6749 §5.1 and §5.2, as Bitbucket Cloud and Data Center speak it).

use serde_json::{Value, json};

use crate::secret::Secret;
use crate::verify::client::Reply;

/// Refresh when less than this is left of an access token, so a worker's clone or
/// push never starts with a token about to die.
pub const REFRESH_MARGIN_SECONDS: i64 = 5 * 60;

/// An access and refresh token, sealed together as one secret (with an access
/// token's expiry inside, since the expiry says when the secret must change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSet {
    pub access: Secret,
    /// Absent if the server issued none: the connection then lasts as long as the
    /// access token.
    pub refresh: Option<Secret>,
    /// Unix seconds.
    pub access_expires_at: i64,
}

impl TokenSet {
    pub fn is_fresh(&self, now: i64) -> bool {
        self.access_expires_at.saturating_sub(REFRESH_MARGIN_SECONDS) > now
    }

    pub fn to_secret(&self) -> Secret {
        Secret::new(
            json!({
                "access_token": self.access.expose(),
                "refresh_token": self.refresh.as_ref().map(Secret::expose),
                "access_expires_at": self.access_expires_at,
            })
            .to_string(),
        )
    }

    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let value: Value = serde_json::from_str(secret.expose()).ok()?;
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(|t| Secret::new(t.to_owned()));
        Some(Self {
            access: text("access_token")?,
            refresh: text("refresh_token"),
            access_expires_at: value.get("access_expires_at")?.as_i64()?,
        })
    }
}

/// A successful token answer.
#[derive(Debug)]
pub struct Granted {
    pub tokens: TokenSet,
    /// As granted: `scope` (RFC 6749, Data Center) or `scopes` (Bitbucket Cloud).
    pub scopes: Option<Vec<String>>,
}

/// Why a token endpoint said no.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `invalid_grant`: the code or refresh token is expired, used, revoked, or was
    /// issued for another redirect or verifier.
    InvalidGrant(String),
    /// `invalid_client` (or a 401): the operator's key or secret is wrong.
    InvalidClient,
    /// Any other `error`, or not an OAuth answer at all.
    Other(String),
}

/// Reads a token endpoint's answer at `now` (Unix seconds). Error descriptions are
/// the server's words: capped and quoted where they are shown.
pub fn read_reply(reply: &Reply, now: i64) -> Result<Granted, Refused> {
    let body = reply.json().unwrap_or(Value::Null);
    let text = |key: &str| body.get(key).and_then(Value::as_str);
    if !reply.status.is_success() {
        let description = text("error_description").unwrap_or_default().to_owned();
        return Err(match (text("error"), reply.status.as_u16()) {
            (Some("invalid_grant"), _) => Refused::InvalidGrant(description),
            (Some("invalid_client" | "unauthorized_client"), _) | (None, 401) => Refused::InvalidClient,
            (Some(error), status) => Refused::Other(format!("{error} (HTTP {status})")),
            (None, status) => Refused::Other(format!("HTTP {status}")),
        });
    }
    let access =
        text("access_token").filter(|t| !t.is_empty()).ok_or_else(|| Refused::Other("no access_token".into()))?;
    if text("token_type").is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(Refused::Other("a token type other than bearer".into()));
    }
    // Without `expires_in` the lifetime is unknown: assume Data Center's shorter hour. A
    // server's number is held between a minute and 30 days.
    let lifetime = body.get("expires_in").and_then(Value::as_i64).unwrap_or(3600).clamp(60, 30 * 24 * 3600);
    let scopes = text("scope").or(text("scopes")).map(scope_list);
    Ok(Granted {
        tokens: TokenSet {
            access: Secret::new(access.to_owned()),
            refresh: text("refresh_token").filter(|t| !t.is_empty()).map(|t| Secret::new(t.to_owned())),
            access_expires_at: now.saturating_add(lifetime),
        },
        scopes,
    })
}

/// Space-separated (RFC 6749) or comma-separated, as some Bitbucket answers are;
/// at most 64 plausible names.
fn scope_list(listed: &str) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in listed.split([' ', ',']).map(str::trim).filter(|s| !s.is_empty()) {
        let plausible =
            scope.len() <= 64 && scope.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'));
        if plausible && !scopes.iter().any(|s| s == scope) && scopes.len() < 64 {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use super::*;

    fn reply(status: u16, body: Value) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.to_string().into(),
        }
    }

    #[test]
    fn scopes_are_read_from_scope_or_the_older_scopes() {
        let cloud = read_reply(
            &reply(200, json!({"access_token": "a", "refresh_token": "r", "expires_in": 7200, "token_type": "bearer", "scopes": "repository:write pullrequest:write account"})),
            100,
        )
        .unwrap();
        assert_eq!(cloud.scopes.unwrap(), ["repository:write", "pullrequest:write", "account"]);
        assert_eq!(cloud.tokens.access_expires_at, 7300);
        let dc = read_reply(
            &reply(200, json!({"access_token": "a", "token_type": "Bearer", "scope": "PUBLIC_REPOS REPO_WRITE"})),
            0,
        )
        .unwrap();
        assert_eq!(dc.scopes.unwrap(), ["PUBLIC_REPOS", "REPO_WRITE"]);
        assert_eq!((dc.tokens.refresh, dc.tokens.access_expires_at), (None, 3600));
    }

    #[test]
    fn refusals_are_told_apart() {
        let grant = reply(400, json!({"error": "invalid_grant", "error_description": "Invalid refresh_token"}));
        assert_eq!(read_reply(&grant, 0).unwrap_err(), Refused::InvalidGrant("Invalid refresh_token".into()));
        assert_eq!(read_reply(&reply(401, json!({})), 0).unwrap_err(), Refused::InvalidClient);
        assert!(matches!(read_reply(&reply(500, json!("x")), 0), Err(Refused::Other(_))));
        let odd = |expires_in: Value| {
            let body = json!({"access_token": "a", "expires_in": expires_in});
            read_reply(&reply(200, body), 100).unwrap().tokens.access_expires_at
        };
        assert_eq!(odd(json!(i64::MAX)), 100 + 30 * 24 * 3600, "a server's lifetime is held to 30 days");
        assert_eq!(odd(json!(-5)), 160, "and to a minute at least");
    }

    #[test]
    fn a_sealed_token_set_round_trips_and_never_prints() {
        let long = "t".repeat(2600);
        let set = TokenSet {
            access: Secret::new(long.clone()),
            refresh: Some(Secret::new("r-secret".into())),
            access_expires_at: 9,
        };
        assert_eq!(TokenSet::from_secret(&set.to_secret()), Some(set.clone()));
        assert!(!format!("{set:?}").contains("r-secret") && !format!("{set:?}").contains(&long));
        assert!(set.is_fresh(9 - REFRESH_MARGIN_SECONDS - 1) && !set.is_fresh(9 - REFRESH_MARGIN_SECONDS));
    }
}
