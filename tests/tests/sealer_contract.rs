//! One contract, every sealer: KMS (on moto) and the local AES-GCM sealer.

use std::sync::Arc;

use blackbox::emulator;
use connections::domain::{ConnectionId, Owner};
use connections::seal::{KmsSealer, LocalSealer, SealContext, SealError, Sealed, Sealer};
use connections::secret::Secret;

const PASSWORD: &str = "ATATT3xFfGF0-sealed-secret";

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
    let context = SealContext { owner: &alice, connection: &id };
    let sealed = sealer.seal(&Secret::new(PASSWORD.into()), context).await.unwrap();
    assert!(!String::from_utf8_lossy(&sealed.0).contains(PASSWORD), "ciphertext, not plaintext");
    assert!(!format!("{sealed:?}").contains(PASSWORD));
    assert_eq!(sealer.open(&sealed, context).await.unwrap().expose(), PASSWORD);

    let moved_owner = SealContext { owner: &bob, connection: &id };
    assert_eq!(sealer.open(&sealed, moved_owner).await.unwrap_err(), SealError::Rejected);
    let moved_id = SealContext { owner: &alice, connection: &other_id };
    assert_eq!(sealer.open(&sealed, moved_id).await.unwrap_err(), SealError::Rejected);
    let mut tampered = sealed.0.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(sealer.open(&Sealed(tampered), context).await.unwrap_err(), SealError::Rejected);
}

async fn each_seal_is_fresh(sealer: Arc<dyn Sealer>) {
    let alice = Owner::parse("alice").unwrap();
    let id = ConnectionId::new();
    let context = SealContext { owner: &alice, connection: &id };
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
            async fn each_seal_is_fresh() {
                let (sealer, _dir) = super::$adapter().await;
                super::each_seal_is_fresh(sealer).await;
            }
        }
    };
}

contract!(kms);
contract!(local);

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
    let context = SealContext { owner: &alice, connection: &id };
    let sealed = a.seal(&Secret::new(PASSWORD.into()), context).await.unwrap();
    assert_eq!(b.open(&sealed, context).await.unwrap_err(), SealError::Rejected);
}
