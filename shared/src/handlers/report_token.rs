//! The token a `get` answer carries and a `report` must bring back, so that only a
//! worker that really obtained the credentials can change the connection's status.
//!
//! `v1.<expiry>.<tag>`: the tag is HMAC-SHA-256 over the owner, connection id,
//! version and expiry, keyed with the connection's own secret. No key to provision
//! or rotate, nothing written per `get`; a guess needs the secret itself, and a
//! token dies with its expiry or with the next change to the connection.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::domain::{ConnectionId, Owner};
use crate::secret::Secret;

/// How long a worker may report on credentials it obtained.
pub const LIFETIME: time::Duration = time::Duration::hours(1);

/// What a token is about.
pub struct Subject<'a> {
    pub owner: &'a Owner,
    pub connection: &'a ConnectionId,
    pub version: u64,
}

fn tag(secret: &Secret, subject: &Subject<'_>, expiry: i64) -> hmac::Hmac<Sha256> {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    let message = format!("report\0{}\0{}\0{}\0{expiry}", subject.owner.as_str(), subject.connection, subject.version);
    mac.update(message.as_bytes());
    mac
}

pub fn issue(secret: &Secret, subject: &Subject<'_>, expires_at: OffsetDateTime) -> String {
    let expiry = expires_at.unix_timestamp();
    let tag = tag(secret, subject, expiry).finalize().into_bytes();
    format!("v1.{expiry}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Whether `token` was issued for this subject by a `get` and has not expired.
pub fn holds(token: &str, secret: &Secret, subject: &Subject<'_>, now: OffsetDateTime) -> bool {
    let mut parts = token.split('.');
    let (Some("v1"), Some(expiry), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(expiry), Ok(tag)) = (expiry.parse::<i64>(), URL_SAFE_NO_PAD.decode(tag)) else { return false };
    expiry > now.unix_timestamp() && self::tag(secret, subject, expiry).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_holds_for_its_subject_until_it_expires() {
        let (owner, other_owner) = (Owner::parse("alice").unwrap(), Owner::parse("bob").unwrap());
        let id = ConnectionId::new();
        let secret = Secret::new("ATATT-secret".into());
        let subject = Subject { owner: &owner, connection: &id, version: 3 };
        let now = OffsetDateTime::now_utc();
        let token = issue(&secret, &subject, now + LIFETIME);
        assert!(holds(&token, &secret, &subject, now));
        assert!(!holds(&token, &secret, &subject, now + LIFETIME), "expired");
        assert!(!holds(&token, &secret, &Subject { version: 4, ..subject }, now), "another version");
        assert!(!holds(&token, &secret, &Subject { owner: &other_owner, ..subject }, now), "another owner");
        assert!(!holds(&token, &Secret::new("other".into()), &subject, now), "another secret");
        let later = token.replacen(&(now + LIFETIME).unix_timestamp().to_string(), "99999999999", 1);
        assert!(!holds(&later, &secret, &subject, now), "an expiry moved by the bearer");
        for forged in ["", "v1", "v1.1.x", "v2.99999999999.AAAA", "1"] {
            assert!(!holds(forged, &secret, &subject, now), "{forged}");
        }
        assert!(!token.contains("ATATT-secret"));
    }
}
