//! One contract, every store adapter: DynamoDB (on moto) and the embedded SQLite store.

use connections::credential::Resource;
use connections::domain::ServerUrl;
use connections::username::Username;
use std::sync::Arc;

use blackbox::emulator;
use connections::credential::Capabilities;
use connections::domain::{
    Account, Connection, ConnectionId, CredentialType, LastUsed, NewConnection, Owner, Provider, Status, now,
};
use connections::seal::Sealed;
use connections::store::{
    Admission, Announced, BrowseRules, CallOutcome, ConnectionStore, DueAt, DynamoStore, EmbeddedStore, Expected, Flow,
    StoreError,
};
use connections::verify::Verification;

type Store = Arc<dyn ConnectionStore>;

async fn dynamo() -> (Store, Option<tempfile::TempDir>) {
    let client = emulator::dynamodb().await;
    let table = emulator::create_table(&client).await;
    (Arc::new(DynamoStore::new(client, table)), None)
}

async fn embedded() -> (Store, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("c.sqlite3")).unwrap();
    (Arc::new(store), Some(dir))
}

fn owner(name: &str) -> Owner {
    Owner::parse(name).unwrap()
}

fn connection(name: &str) -> Connection {
    let verification = Verification {
        provider: Provider::BitbucketCloud,
        credential_type: CredentialType::AppPassword,
        account: Account::new(Some("{u}"), None, Some("J"), Some("jdoe")),
        scopes: vec!["repository:write".into()],
        capabilities: Capabilities::from_cloud_scopes(CredentialType::AppPassword, &["repository:write".into()]),
        warnings: Vec::new(),
        git_username: Some("jdoe".into()),
    };
    let id = ConnectionId::new();
    let new = NewConnection {
        id: &id,
        name,
        url: &ServerUrl::parse("https://api.bitbucket.org/2.0").unwrap(),
        username: Some(&Username::parse("jdoe").unwrap()),
        resource: None,
        expires_at: Some(now() + time::Duration::days(90)),
    };
    Connection::verified(new, verification, now())
}

fn id_of(c: &Connection) -> ConnectionId {
    ConnectionId::parse(&c.id).unwrap()
}

fn sealed(tag: u8) -> Sealed {
    Sealed(vec![tag; 48])
}

fn bumped(previous: &Connection) -> Connection {
    let mut next = previous.clone();
    next.version += 1;
    next
}

async fn create_then_read_back(store: Store) {
    let alice = owner("alice");
    let c = connection("Work");
    store.create(&alice, &c, &sealed(1), 100, None).await.unwrap();
    assert_eq!(store.get(&alice, &id_of(&c)).await.unwrap(), Some(c.clone()));
    let (read, secret) = store.get_sealed(&alice, &id_of(&c)).await.unwrap().unwrap();
    assert_eq!((read, secret), (c.clone(), sealed(1)));
    assert_eq!(store.get(&owner("bob"), &id_of(&c)).await.unwrap(), None, "another owner sees nothing");
}

/// A use is written at most once an hour and never moves the version (no user edit
/// or worker report conflicts with it); a gone connection is left gone.
async fn uses_are_recorded_at_most_once_an_hour(store: Store) {
    let alice = owner("alice");
    let c = connection("Used");
    store.create(&alice, &c, &sealed(1), 100, None).await.unwrap();
    let at = now();
    let first = LastUsed { at, purpose: "git".into(), caller: "pr-worker".into() };
    store.record_use(&alice, &id_of(&c), &first).await.unwrap();
    let read = store.get(&alice, &id_of(&c)).await.unwrap().unwrap();
    assert_eq!((read.last_used.as_ref(), read.version), (Some(&first), c.version));
    let soon = LastUsed { at: at + time::Duration::minutes(59), purpose: "api".into(), caller: "importer".into() };
    store.record_use(&alice, &id_of(&c), &soon).await.unwrap();
    assert_eq!(store.get(&alice, &id_of(&c)).await.unwrap().unwrap().last_used, Some(first), "within the hour");
    let later = LastUsed { at: at + time::Duration::minutes(61), purpose: "api".into(), caller: "importer".into() };
    store.record_use(&alice, &id_of(&c), &later).await.unwrap();
    assert_eq!(store.get(&alice, &id_of(&c)).await.unwrap().unwrap().last_used, Some(later));
    let gone = ConnectionId::new();
    store.record_use(&alice, &gone, &soon).await.unwrap();
    assert_eq!(store.get(&alice, &gone).await.unwrap(), None, "no item is made for a use");
}

async fn names_are_unique_per_owner_ignoring_case(store: Store) {
    let alice = owner("alice");
    store.create(&alice, &connection("Work"), &sealed(1), 100, None).await.unwrap();
    assert_eq!(store.create(&alice, &connection("WORK"), &sealed(1), 100, None).await, Err(StoreError::DuplicateName));
    store.create(&owner("bob"), &connection("work"), &sealed(1), 100, None).await.unwrap();
    assert_eq!(store.list(&alice, 10, None).await.unwrap().items.len(), 1, "the refused create wrote nothing");
}

async fn the_owner_limit_holds_and_frees_on_delete(store: Store) {
    let alice = owner("alice");
    let first = connection("a");
    store.create(&alice, &first, &sealed(1), 2, None).await.unwrap();
    store.create(&alice, &connection("b"), &sealed(1), 2, None).await.unwrap();
    assert_eq!(store.create(&alice, &connection("c"), &sealed(1), 2, None).await, Err(StoreError::TooManyConnections));
    store.create(&owner("bob"), &connection("c"), &sealed(1), 2, None).await.unwrap();
    store.delete(&alice, &id_of(&first), Expected::Any).await.unwrap();
    store.create(&alice, &connection("c"), &sealed(1), 2, None).await.unwrap();
}

async fn lists_page_in_creation_order_within_the_owner(store: Store) {
    let alice = owner("alice");
    let mut created = Vec::new();
    for n in 0..5 {
        let c = connection(&format!("c{n}"));
        store.create(&alice, &c, &sealed(1), 100, None).await.unwrap();
        created.push(c);
    }
    store.create(&owner("bob"), &connection("bob"), &sealed(1), 100, None).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(&alice, 2, after.as_ref()).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, created);
    assert!(store.list(&owner("carol"), 10, None).await.unwrap().items.is_empty());
}

async fn updates_are_conditional_on_the_version(store: Store) {
    let alice = owner("alice");
    let c = connection("work");
    store.create(&alice, &c, &sealed(1), 100, None).await.unwrap();
    let mut next = bumped(&c);
    next.status = Status::Invalid;
    next.status_reason = Some("invalid_credentials".into());
    store.update(&alice, &c, &next, None).await.unwrap();
    assert_eq!(store.update(&alice, &c, &bumped(&c), None).await, Err(StoreError::VersionMismatch), "stale version");
    let (read, secret) = store.get_sealed(&alice, &id_of(&c)).await.unwrap().unwrap();
    assert_eq!(read, next);
    assert_eq!(secret, sealed(1), "an update without a secret keeps the stored one");

    let mut healed = bumped(&next);
    healed.status = Status::Verified;
    healed.status_reason = None;
    store.update(&alice, &next, &healed, Some(&sealed(2))).await.unwrap();
    let (read, secret) = store.get_sealed(&alice, &id_of(&c)).await.unwrap().unwrap();
    assert_eq!(read, healed, "cleared fields are gone");
    assert_eq!(secret, sealed(2));
}

async fn renames_move_the_reservation(store: Store) {
    let alice = owner("alice");
    let work = connection("work");
    let home = connection("home");
    store.create(&alice, &work, &sealed(1), 100, None).await.unwrap();
    store.create(&alice, &home, &sealed(1), 100, None).await.unwrap();
    let mut onto_home = bumped(&work);
    onto_home.name = "HOME".into();
    assert_eq!(store.update(&alice, &work, &onto_home, None).await, Err(StoreError::DuplicateName));
    assert_eq!(store.get(&alice, &id_of(&work)).await.unwrap(), Some(work.clone()), "refused rename changed nothing");

    let mut renamed = bumped(&work);
    renamed.name = "office".into();
    store.update(&alice, &work, &renamed, None).await.unwrap();
    store.create(&alice, &connection("work"), &sealed(1), 100, None).await.unwrap();
    assert_eq!(
        store.create(&alice, &connection("Office"), &sealed(1), 100, None).await,
        Err(StoreError::DuplicateName)
    );
}

async fn deletes_are_final_and_conditional(store: Store) {
    let alice = owner("alice");
    let c = connection("work");
    store.create(&alice, &c, &sealed(1), 100, None).await.unwrap();
    assert_eq!(store.delete(&owner("bob"), &id_of(&c), Expected::Any).await, Err(StoreError::NotFound));
    assert_eq!(store.delete(&alice, &id_of(&c), Expected::Versions(&[7])).await, Err(StoreError::VersionMismatch));
    assert_eq!(store.delete(&alice, &id_of(&c), Expected::Versions(&[])).await, Err(StoreError::VersionMismatch));
    store.delete(&alice, &id_of(&c), Expected::Versions(&[3, 1])).await.unwrap();
    assert_eq!(store.get(&alice, &id_of(&c)).await.unwrap(), None);
    assert_eq!(store.delete(&alice, &id_of(&c), Expected::Any).await, Err(StoreError::NotFound));
    assert_eq!(store.delete(&alice, &id_of(&c), Expected::Versions(&[])).await, Err(StoreError::NotFound));
    // An edit that read the connection before the delete must not bring it back.
    assert_eq!(store.update(&alice, &c, &bumped(&c), None).await, Err(StoreError::VersionMismatch));
    assert_eq!(store.get(&alice, &id_of(&c)).await.unwrap(), None);
    // A deleted connection's name is free for a create and for a rename.
    let again = connection("work");
    store.create(&alice, &again, &sealed(1), 100, None).await.unwrap();
    let home = connection("home");
    store.create(&alice, &home, &sealed(1), 100, None).await.unwrap();
    store.delete(&alice, &id_of(&home), Expected::Any).await.unwrap();
    let mut renamed = bumped(&again);
    renamed.name = "Home".into();
    store.update(&alice, &again, &renamed, None).await.unwrap();
    assert_eq!(store.create(&alice, &connection("home"), &sealed(1), 100, None).await, Err(StoreError::DuplicateName));
    store.create(&alice, &connection("work"), &sealed(1), 100, None).await.unwrap();
}

/// Ten pages of one owner asking at once, as ten Lambdas would: exactly `slots` are
/// let through, whoever wins the writes; a slot given back is free again.
async fn browse_slots_hold_across_concurrent_writers(store: Store) {
    let (alice, bob) = (owner("alice"), owner("bob"));
    let rules = BrowseRules { slots: 4, ..BrowseRules::default() };
    let origin = "https://git.example:443";
    let now = 1_800_000_000_000;
    let asks = (0..10).map(|_| {
        let (store, alice) = (store.clone(), alice.clone());
        tokio::spawn(async move { store.take_slot(&alice, origin, &rules, now).await.unwrap() })
    });
    let mut leases = Vec::new();
    for ask in asks {
        match ask.await.unwrap() {
            Admission::Taken(lease) => leases.push(lease),
            Admission::Busy { retry_after_ms } => assert!((1..=10_000).contains(&retry_after_ms)),
            resting => panic!("{resting:?}"),
        }
    }
    assert_eq!(leases.len(), 4, "exactly the owner's slots are taken");
    assert!(matches!(store.take_slot(&bob, origin, &rules, now).await, Ok(Admission::Taken(_))), "owners apart");
    store.give_back(&alice, &leases[0], origin, CallOutcome::TimedOut, &rules, now + 100).await.unwrap();
    let again = store.take_slot(&alice, origin, &rules, now + 200).await.unwrap();
    assert!(matches!(again, Admission::Taken(_)), "a slot given back is free: {again:?}");
    let Admission::Taken(lease) = again else { unreachable!() };
    store.give_back(&alice, &lease, origin, CallOutcome::TimedOut, &rules, now + 300).await.unwrap();
    assert_eq!(
        store.take_slot(&alice, origin, &rules, now + 400).await,
        Ok(Admission::Resting { retry_after_ms: rules.rest_ms - 100 }),
        "two timeouts in a row: the server rests"
    );
    let other = store.take_slot(&alice, "https://fine.example:443", &rules, now + 400).await.unwrap();
    assert!(matches!(other, Admission::Taken(_)), "another server is still called: {other:?}");
    let full = store.take_slot(&alice, "https://fine.example:443", &rules, now + 500).await.unwrap();
    assert!(matches!(full, Admission::Busy { .. }), "the three first leases and that one fill the slots: {full:?}");
}

async fn verifications_are_limited_over_any_sixty_seconds(store: Store) {
    let (alice, bob) = (owner("alice"), owner("bob"));
    let minute = 1_800_000_000; // a whole minute: 30_000_000 × 60
    for at in [minute + 50, minute + 55, minute + 59] {
        assert_eq!(store.count_verification(&alice, 3, at).await, Ok(None));
    }
    // A calendar-minute counter admitted three more here.
    assert_eq!(
        store.count_verification(&alice, 3, minute + 61).await,
        Ok(Some(49)),
        "the minute's boundary resets nothing"
    );
    assert_eq!(store.count_verification(&bob, 3, minute + 61).await, Ok(None), "owners are counted apart");
    assert_eq!(store.count_verification(&alice, 3, minute + 109).await, Ok(Some(1)));
    assert_eq!(store.count_verification(&alice, 3, minute + 110).await, Ok(None), "the oldest has left the window");
    assert_eq!(store.count_verification(&alice, 3, minute + 111).await, Ok(Some(4)), "a refusal admitted nothing");
}

/// Forty checks of one owner at once, as forty Lambdas would: exactly the limit is
/// admitted, and each refusal waits for the window, not for a lost race.
async fn a_burst_is_admitted_up_to_the_limit_at_once(store: Store) {
    let alice = owner("alice");
    let now = 1_800_000_000;
    let checks = (0..40).map(|_| {
        let (store, alice) = (store.clone(), alice.clone());
        tokio::spawn(async move { store.count_verification(&alice, 30, now).await.unwrap() })
    });
    let mut answers = Vec::new();
    for check in checks {
        answers.push(check.await.unwrap());
    }
    answers.sort();
    let mut expected = vec![None; 30];
    expected.extend([Some(60); 10]);
    assert_eq!(answers, expected);
}

/// A started "Connect with Bitbucket" flow is taken once, by its own user, before it expires.
async fn oauth_flows_are_taken_once_by_their_own_user_in_time(store: Store) {
    let (alice, mallory) = (owner("alice"), owner("mallory"));
    let flow = Flow {
        server: "https://api.bitbucket.org/2.0".into(),
        verifier: connections::secret::Secret::new("v".repeat(43)),
        name: "Bitbucket".into(),
        reconnect: None,
        expires_at: 1_000,
    };
    store.begin_flow(&alice, "state-a", &flow).await.unwrap();
    store.begin_flow(&alice, "state-late", &flow).await.unwrap();
    assert_eq!(store.take_flow(&mallory, "state-a", 500).await, Ok(None), "another user finds nothing");
    assert_eq!(store.take_flow(&alice, "state-a", 500).await, Ok(Some(flow.clone())));
    assert_eq!(store.take_flow(&alice, "state-a", 500).await, Ok(None), "taken once");
    assert_eq!(store.take_flow(&alice, "state-late", 1_000).await, Ok(None), "expired");
}

/// One refresher at a time; its write lands only while it holds the lease and the
/// tokens are still the ones it refreshed from (a refresher whose lease ran out still
/// keeps newer tokens); waiters see when the lease ends; a user's edit never conflicts.
async fn token_leases_make_refresh_single_flight(store: Store) {
    let alice = owner("alice");
    let work = connection("work");
    store.create(&alice, &work, &sealed(1), 100, None).await.unwrap();
    let id = ConnectionId::parse(&work.id).unwrap();
    assert!(store.take_token_lease(&alice, &id, &sealed(1), "a", 1_000, 21_000).await.unwrap());
    assert!(!store.take_token_lease(&alice, &id, &sealed(1), "b", 2_000, 22_000).await.unwrap(), "a is live");
    assert!(
        !store.take_token_lease(&alice, &id, &sealed(9), "b", 30_000, 50_000).await.unwrap(),
        "not the tokens read"
    );
    assert_eq!(store.token_state(&alice, &id).await.unwrap(), Some((sealed(1), Some(21_000))), "a's lease ends then");
    // A rename meanwhile changes the version, not the tokens.
    let mut renamed = work.clone();
    renamed.name = "renamed".into();
    renamed.version += 1;
    store.update(&alice, &work, &renamed, None).await.unwrap();
    assert!(store.store_tokens(&alice, &id, &sealed(1), &sealed(2)).await.unwrap());
    let (after, tokens) = store.get_sealed(&alice, &id).await.unwrap().unwrap();
    assert_eq!((after.name.as_str(), after.version, tokens), ("renamed", renamed.version, sealed(2)));
    assert_eq!(store.token_state(&alice, &id).await.unwrap(), Some((sealed(2), None)), "storing ended the lease");
    assert!(!store.store_tokens(&alice, &id, &sealed(1), &sealed(3)).await.unwrap(), "not over newer tokens");
    // An expired lease is taken over; a released one at once.
    assert!(store.take_token_lease(&alice, &id, &sealed(2), "c", 40_000, 60_000).await.unwrap());
    store.release_token_lease(&alice, &id, "c").await.unwrap();
    assert!(store.take_token_lease(&alice, &id, &sealed(2), "d", 41_000, 61_000).await.unwrap());
    assert!(store.take_token_lease(&alice, &id, &sealed(2), "e", 61_001, 81_000).await.unwrap(), "d expired");
    // A refresher whose lease ran out (e took over) still keeps its newer tokens.
    assert!(store.store_tokens(&alice, &id, &sealed(2), &sealed(4)).await.unwrap());
    assert!(store.token_state(&alice, &ConnectionId::new()).await.unwrap().is_none(), "no such connection");
}

async fn a_connection_without_account_or_expiry_round_trips(store: Store) {
    let alice = owner("alice");
    let mut c = connection("token");
    c.account = None;
    c.username = None;
    c.expires_at = None;
    c.resource = Some(Resource::parse("acme/api").unwrap());
    store.create(&alice, &c, &sealed(1), 100, None).await.unwrap();
    assert_eq!(store.get(&alice, &id_of(&c)).await.unwrap(), Some(c.clone()));
    assert_eq!(store.list(&alice, 10, None).await.unwrap().items, vec![c]);
}

/// Later than any `due_at` the tests write: every due connection.
const FAR: i64 = 4_000_000_000;

/// Every page: a page ends where a shard of the index does, so one may be short.
async fn due_ids(store: &Store) -> Vec<(String, Status)> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = store.due(FAR, 50, after.as_deref()).await.unwrap();
        ids.extend(page.items.into_iter().map(|due| (due.connection.id, due.notified)));
        after = page.next;
        if after.is_none() {
            return ids;
        }
    }
}

async fn announcing_schedules_only_a_connection_nobody_changed(store: Store) {
    let alice = owner("alice");
    let quiet = connection("Quiet");
    let edited = connection("Edited");
    for c in [&quiet, &edited] {
        store.create(&alice, c, &sealed(1), 100, None).await.unwrap();
    }
    assert_eq!(due_ids(&store).await.len(), 2, "a new connection is due at once");
    let mut checked = Vec::new();
    for c in [&quiet, &edited] {
        let mut next = bumped(c);
        next.status = Status::Invalid;
        store.record_check(&alice, c, &next, Status::Verified, DueAt::At(1_000)).await.unwrap();
        checked.push(next);
    }
    // A user edit between the check and its announcement.
    let mut renamed = bumped(&checked[1]);
    renamed.name = "Edited again".into();
    store.update(&alice, &checked[1], &renamed, None).await.unwrap();

    fn announce(c: &Connection, from: Status) -> Announced<'_> {
        Announced { id: &c.id, from, to: Status::Invalid, version: c.version, then: DueAt::Never }
    }
    assert_eq!(
        store.mark_announced(&alice, announce(&checked[0], Status::Expiring)).await,
        Err(StoreError::VersionMismatch),
        "only the change from the status last announced is recorded"
    );
    store.mark_announced(&alice, announce(&checked[0], Status::Verified)).await.unwrap();
    store.mark_announced(&alice, announce(&checked[1], Status::Verified)).await.unwrap();
    assert_eq!(
        due_ids(&store).await,
        vec![(edited.id.clone(), Status::Invalid)],
        "the untouched one leaves the index; the edited one stays due, its announcement recorded"
    );
    assert_eq!(
        store.mark_announced(&alice, announce(&checked[1], Status::Verified)).await,
        Err(StoreError::VersionMismatch),
        "announced once"
    );
}

macro_rules! contract {
    ($adapter:ident) => {
        mod $adapter {
            #[tokio::test]
            async fn create_then_read_back() {
                let (store, _dir) = super::$adapter().await;
                super::create_then_read_back(store).await;
            }
            #[tokio::test]
            async fn uses_are_recorded_at_most_once_an_hour() {
                let (store, _dir) = super::$adapter().await;
                super::uses_are_recorded_at_most_once_an_hour(store).await;
            }
            #[tokio::test]
            async fn names_are_unique_per_owner_ignoring_case() {
                let (store, _dir) = super::$adapter().await;
                super::names_are_unique_per_owner_ignoring_case(store).await;
            }
            #[tokio::test]
            async fn the_owner_limit_holds_and_frees_on_delete() {
                let (store, _dir) = super::$adapter().await;
                super::the_owner_limit_holds_and_frees_on_delete(store).await;
            }
            #[tokio::test]
            async fn lists_page_in_creation_order_within_the_owner() {
                let (store, _dir) = super::$adapter().await;
                super::lists_page_in_creation_order_within_the_owner(store).await;
            }
            #[tokio::test]
            async fn updates_are_conditional_on_the_version() {
                let (store, _dir) = super::$adapter().await;
                super::updates_are_conditional_on_the_version(store).await;
            }
            #[tokio::test]
            async fn renames_move_the_reservation() {
                let (store, _dir) = super::$adapter().await;
                super::renames_move_the_reservation(store).await;
            }
            #[tokio::test]
            async fn browse_slots_hold_across_concurrent_writers() {
                let (store, _dir) = super::$adapter().await;
                super::browse_slots_hold_across_concurrent_writers(store).await;
            }
            #[tokio::test]
            async fn verifications_are_limited_over_any_sixty_seconds() {
                let (store, _dir) = super::$adapter().await;
                super::verifications_are_limited_over_any_sixty_seconds(store).await;
            }
            #[tokio::test]
            async fn a_burst_is_admitted_up_to_the_limit_at_once() {
                let (store, _dir) = super::$adapter().await;
                super::a_burst_is_admitted_up_to_the_limit_at_once(store).await;
            }
            #[tokio::test]
            async fn oauth_flows_are_taken_once_by_their_own_user_in_time() {
                let (store, _dir) = super::$adapter().await;
                super::oauth_flows_are_taken_once_by_their_own_user_in_time(store).await;
            }
            #[tokio::test]
            async fn token_leases_make_refresh_single_flight() {
                let (store, _dir) = super::$adapter().await;
                super::token_leases_make_refresh_single_flight(store).await;
            }
            #[tokio::test]
            async fn a_connection_without_account_or_expiry_round_trips() {
                let (store, _dir) = super::$adapter().await;
                super::a_connection_without_account_or_expiry_round_trips(store).await;
            }
            #[tokio::test]
            async fn announcing_schedules_only_a_connection_nobody_changed() {
                let (store, _dir) = super::$adapter().await;
                super::announcing_schedules_only_a_connection_nobody_changed(store).await;
            }
            #[tokio::test]
            async fn deletes_are_final_and_conditional() {
                let (store, _dir) = super::$adapter().await;
                super::deletes_are_final_and_conditional(store).await;
            }
        }
    };
}

contract!(dynamo);
contract!(embedded);

#[test]
fn the_deployed_table_has_the_keys_the_store_uses() {
    use connections::store::{PARTITION_KEY, SORT_KEY};
    let table = emulator::template_table();
    assert_eq!(
        table.keys,
        vec![(PARTITION_KEY.to_owned(), "HASH".to_owned()), (SORT_KEY.to_owned(), "RANGE".to_owned())]
    );
    let attribute = |name: &str, kind: &str| (name.to_owned(), kind.to_owned());
    assert_eq!(
        table.attributes,
        vec![
            attribute(PARTITION_KEY, "S"),
            attribute(SORT_KEY, "S"),
            attribute("due_shard", "S"),
            attribute("due_at", "N")
        ]
    );
    let due = table.indexes.iter().find(|(name, _, _)| name == connections::store::DUE_INDEX).expect("the due index");
    assert_eq!(due.1, vec![attribute("due_shard", "HASH"), attribute("due_at", "RANGE")]);
    assert_eq!(due.2, "ALL", "the recheck function re-verifies from the index alone");
}

mod idempotency {
    use connections::store::IdempotencyRecord;

    use super::*;

    fn record(key: &str, connection: &Connection, expires_in: i64) -> IdempotencyRecord {
        IdempotencyRecord {
            key: key.into(),
            fingerprint: "f1".into(),
            connection_id: connection.id.clone(),
            response: serde_json::to_string(connection).unwrap(),
            expires_at: time::OffsetDateTime::now_utc().unix_timestamp() + expires_in,
        }
    }

    async fn keys_are_recorded_once_and_expire(store: Store) {
        let alice = owner("alice");
        let first = connection("a");
        let taken = record("key-1", &first, 60);
        store.create(&alice, &first, &sealed(1), 100, Some(&taken)).await.unwrap();
        assert_eq!(store.idempotency_record(&alice, "key-1").await.unwrap(), Some(taken.clone()));
        assert_eq!(store.idempotency_record(&owner("bob"), "key-1").await.unwrap(), None, "keys are per owner");
        let second = connection("b");
        assert_eq!(
            store.create(&alice, &second, &sealed(1), 100, Some(&record("key-1", &second, 60))).await,
            Err(StoreError::IdempotencyKeyTaken)
        );
        assert_eq!(store.get(&alice, &id_of(&second)).await.unwrap(), None, "the refused create wrote nothing");

        let old = connection("c");
        store.create(&alice, &old, &sealed(1), 100, Some(&record("key-2", &old, -5))).await.unwrap();
        assert_eq!(store.idempotency_record(&alice, "key-2").await.unwrap(), None, "expired records are not replayed");
        let fresh = connection("d");
        store.create(&alice, &fresh, &sealed(1), 100, Some(&record("key-2", &fresh, 60))).await.unwrap();
    }

    #[tokio::test]
    async fn dynamo_keys_are_recorded_once_and_expire() {
        let (store, _dir) = dynamo().await;
        keys_are_recorded_once_and_expire(store).await;
    }

    #[tokio::test]
    async fn embedded_keys_are_recorded_once_and_expire() {
        let (store, _dir) = embedded().await;
        keys_are_recorded_once_and_expire(store).await;
    }
}
