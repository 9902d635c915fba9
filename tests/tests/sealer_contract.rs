//! One contract, every sealer: KMS envelopes (on moto) and the local AES-GCM sealer.

use std::sync::Arc;

use aws_sdk_kms::primitives::Blob;
use blackbox::emulator;
use connections::domain::{ConnectionId, Owner};
use connections::origin::Origin;
use connections::seal::{KmsSealer, LocalSealer, SealContext, SealError, Sealed, Sealer};
use connections::secret::Secret;

const PASSWORD: &str = "ATATT3xFfGF0-sealed-secret";

fn origin(url: &str) -> Origin {
    Origin::of(&url::Url::parse(url).unwrap())
}

async fn kms() -> (Arc<dyn Sealer>, Option<tempfile::TempDir>) {
    let client = emulator::kms().await;
    let key = emulator::create_key(&client).await;
    (Arc::new(KmsSealer::new(client, key)), None)
}

async fn local() -> (Arc<dyn Sealer>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(LocalSealer::open_or_create(&dir.path().join("k")).unwrap()), Some(dir))
}

async fn opens_only_in_its_own_context(sealer: Arc<dyn Sealer>) {
    let (alice, bob) = (Owner::parse("alice").unwrap(), Owner::parse("bob").unwrap());
    let (id, other_id) = (ConnectionId::new(), ConnectionId::new());
    let cloud = origin("https://api.bitbucket.org/2.0");
    let context = SealContext { owner: &alice, connection: &id, origin: &cloud };
    let sealed = sealer.seal(&Secret::new(PASSWORD.into()), context).await.unwrap();
    assert!(!String::from_utf8_lossy(&sealed.0).contains(PASSWORD), "ciphertext, not plaintext");
    assert!(!format!("{sealed:?}").contains(PASSWORD));
    assert_eq!(sealer.open(&sealed, context).await.unwrap().expose(), PASSWORD);

    let moved_owner = SealContext { owner: &bob, ..context };
    assert_eq!(sealer.open(&sealed, moved_owner).await.unwrap_err(), SealError::Rejected);
    let moved_id = SealContext { connection: &other_id, ..context };
    assert_eq!(sealer.open(&sealed, moved_id).await.unwrap_err(), SealError::Rejected);
    let mut tampered = sealed.0.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(sealer.open(&Sealed(tampered), context).await.unwrap_err(), SealError::Rejected);
}

/// A stored URL rewritten to another server does not take the secret with it.
async fn opens_only_for_the_origin_it_was_sealed_to(sealer: Arc<dyn Sealer>) {
    let alice = Owner::parse("alice").unwrap();
    let id = ConnectionId::new();
    let server = origin("https://git.corp.example/bitbucket");
    let context = SealContext { owner: &alice, connection: &id, origin: &server };
    let sealed = sealer.seal(&Secret::new(PASSWORD.into()), context).await.unwrap();
    let same_origin = origin("https://git.corp.example:443/other/path");
    assert_eq!(sealer.open(&sealed, SealContext { origin: &same_origin, ..context }).await.unwrap().expose(), PASSWORD);
    for elsewhere in
        ["https://evil.example/bitbucket", "http://git.corp.example/bitbucket", "https://git.corp.example:8443/"]
    {
        let rewritten = origin(elsewhere);
        let result = sealer.open(&sealed, SealContext { origin: &rewritten, ..context }).await;
        assert_eq!(result.unwrap_err(), SealError::Rejected, "{elsewhere}");
    }
}

/// Past KMS's 4,096-byte `Encrypt` limit: an access and a refresh token together.
async fn seals_secrets_of_any_size(sealer: Arc<dyn Sealer>) {
    let alice = Owner::parse("alice").unwrap();
    let id = ConnectionId::new();
    let cloud = origin("https://api.bitbucket.org/2.0");
    let context = SealContext { owner: &alice, connection: &id, origin: &cloud };
    let large: String = (0..12_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let sealed = sealer.seal(&Secret::new(large.clone()), context).await.unwrap();
    assert_eq!(sealer.open(&sealed, context).await.unwrap().expose(), large);
}

async fn each_seal_is_fresh(sealer: Arc<dyn Sealer>) {
    let alice = Owner::parse("alice").unwrap();
    let id = ConnectionId::new();
    let cloud = origin("https://api.bitbucket.org/2.0");
    let context = SealContext { owner: &alice, connection: &id, origin: &cloud };
    let a = sealer.seal(&Secret::new(PASSWORD.into()), context).await.unwrap();
    let b = sealer.seal(&Secret::new(PASSWORD.into()), context).await.unwrap();
    assert_ne!(a, b, "the same secret twice must not give the same ciphertext");
}

macro_rules! contract {
    ($adapter:ident) => {
        mod $adapter {
            #[tokio::test]
            async fn opens_only_in_its_own_context() {
                let (sealer, _dir) = super::$adapter().await;
                super::opens_only_in_its_own_context(sealer).await;
            }
            #[tokio::test]
            async fn opens_only_for_the_origin_it_was_sealed_to() {
                let (sealer, _dir) = super::$adapter().await;
                super::opens_only_for_the_origin_it_was_sealed_to(sealer).await;
            }
            #[tokio::test]
            async fn seals_secrets_of_any_size() {
                let (sealer, _dir) = super::$adapter().await;
                super::seals_secrets_of_any_size(sealer).await;
            }
            #[tokio::test]
            async fn each_seal_is_fresh() {
                let (sealer, _dir) = super::$adapter().await;
                super::each_seal_is_fresh(sealer).await;
            }
        }
    };
}

contract!(kms);
contract!(local);

/// What the service stored before envelopes: KMS `Encrypt` under owner and id only.
/// It is refused without a KMS call, and the user is asked for the secret again.
#[tokio::test]
async fn a_ciphertext_from_before_envelopes_is_refused() {
    let client = emulator::kms().await;
    let key = emulator::create_key(&client).await;
    let (alice, id) = (Owner::parse("alice").unwrap(), ConnectionId::new());
    let legacy = client
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(PASSWORD))
        .encryption_context("owner", "alice")
        .encryption_context("connection_id", id.to_string())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner();
    let sealer = KmsSealer::new(client, key);
    let cloud = origin("https://api.bitbucket.org/2.0");
    let context = SealContext { owner: &alice, connection: &id, origin: &cloud };
    assert_eq!(sealer.open(&Sealed(legacy), context).await.unwrap_err(), SealError::Rejected);
}

#[test]
fn the_local_key_file_is_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/secret.key");
    LocalSealer::open_or_create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = std::fs::read(&path).unwrap();
    LocalSealer::open_or_create(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), key, "a second start reuses the key");
}

#[tokio::test]
async fn a_ciphertext_from_one_local_key_does_not_open_under_another() {
    let (a, _da) = local().await;
    let (b, _db) = local().await;
    let alice = Owner::parse("alice").unwrap();
    let id = ConnectionId::new();
    let cloud = origin("https://api.bitbucket.org/2.0");
    let context = SealContext { owner: &alice, connection: &id, origin: &cloud };
    let sealed = a.seal(&Secret::new(PASSWORD.into()), context).await.unwrap();
    assert_eq!(b.open(&sealed, context).await.unwrap_err(), SealError::Rejected);
}
