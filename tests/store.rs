//! The store conformance suite: the same checks against SQLite and against the real Postgres
//! at 127.0.0.1:5432 (override with PORTCULLIS_TEST_POSTGRES_URL). Postgres is required: if it
//! is unreachable this test FAILS, it is never skipped.

// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

mod support;

use portcullis::limits::LimitSet;
use portcullis::store::{Backend, NewApiKey, Revoked, Store, StoreError};
use support::postgres::TempDatabase;

fn new_key<'a>(
    tenant: &'a str,
    hash: &'a str,
    models: &'a [String],
    expires_at: Option<i64>,
) -> NewApiKey<'a> {
    NewApiKey {
        tenant,
        name: "ci",
        prefix: "pc_AbCdEfGh",
        key_hash: hash,
        allowed_models: models,
        expires_at,
        guardrail_policy: None,
        limits: LimitSet::default(),
        created_by: None,
        permissions: Default::default(),
    }
}

/// Every behaviour the gateway relies on, identical on both backends.
async fn conformance(store: &Store, reopen: impl Fn() -> Store) {
    store.migrate().await.unwrap();
    store.migrate().await.expect("migrations are idempotent");
    store.ping().await.unwrap();

    // Tenants.
    let acme = store.create_tenant("acme").await.unwrap();
    assert!(acme.id.starts_with("ten_"));
    store.create_tenant("beta").await.unwrap();
    match store.create_tenant("acme").await {
        Err(StoreError::TenantExists(name)) => assert_eq!(name, "acme"),
        other => panic!("duplicate tenant: {other:?}"),
    }
    let names: Vec<String> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["acme", "beta"]);
    assert_eq!(
        store.tenant_by_name("acme").await.unwrap(),
        Some(acme.clone())
    );
    assert_eq!(store.tenant_by_name("nope").await.unwrap(), None);

    // Keys.
    let models = vec!["gpt-4o*".to_string(), "demo".to_string()];
    match store.create_api_key(new_key("nope", "h0", &[], None)).await {
        Err(StoreError::TenantNotFound(t)) => assert_eq!(t, "nope"),
        other => panic!("key for a missing tenant: {other:?}"),
    }
    let k1 = store
        .create_api_key(new_key("acme", "hash-1", &models, Some(4_102_444_800_000)))
        .await
        .unwrap();
    let k2 = store
        .create_api_key(new_key("beta", "hash-2", &[], None))
        .await
        .unwrap();
    assert!(k1.id.starts_with("key_"));
    assert!(
        store
            .create_api_key(new_key("acme", "hash-1", &[], None))
            .await
            .is_err(),
        "hashes are unique"
    );

    let found = store.find_api_key_by_hash("hash-1").await.unwrap().unwrap();
    assert_eq!(found, k1);
    assert_eq!(found.tenant, "acme");
    assert_eq!(found.allowed_models, models);
    assert_eq!(found.expires_at, Some(4_102_444_800_000));
    assert_eq!(found.revoked_at, None);
    assert_eq!(store.find_api_key_by_hash("missing").await.unwrap(), None);

    let acme_keys = store.list_api_keys(Some("acme")).await.unwrap();
    assert_eq!(acme_keys, vec![k1.clone()]);
    let all = store.list_api_keys(None).await.unwrap();
    assert_eq!(
        all.iter().map(|k| k.id.clone()).collect::<Vec<_>>(),
        vec![k1.id.clone(), k2.id.clone()]
    );
    assert!(matches!(
        store.list_api_keys(Some("nope")).await,
        Err(StoreError::TenantNotFound(_))
    ));

    // Revocation is idempotent and visible to lookups.
    assert_eq!(store.revoke_api_key(&k1.id).await.unwrap(), Revoked::Now);
    assert_eq!(
        store.revoke_api_key(&k1.id).await.unwrap(),
        Revoked::Already
    );
    assert!(matches!(
        store.revoke_api_key("key_missing").await,
        Err(StoreError::KeyNotFound(_))
    ));
    assert!(store
        .find_api_key_by_hash("hash-1")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());

    // Guardrail policies: a tenant's, and a key's own that overrides it.
    assert_eq!(acme.guardrail_policy, None);
    let set = store
        .set_tenant_policy("beta", Some("strict"))
        .await
        .unwrap();
    assert_eq!(set.guardrail_policy.as_deref(), Some("strict"));
    let found = store.find_api_key_by_hash("hash-2").await.unwrap().unwrap();
    assert_eq!(found.guardrail_policy, None);
    assert_eq!(found.tenant_guardrail_policy.as_deref(), Some("strict"));
    let own = NewApiKey {
        guardrail_policy: Some("lenient"),
        ..new_key("beta", "hash-3", &[], None)
    };
    let k3 = store.create_api_key(own).await.unwrap();
    let found = store.find_api_key_by_hash("hash-3").await.unwrap().unwrap();
    assert_eq!(found, k3);
    assert_eq!(found.guardrail_policy.as_deref(), Some("lenient"));
    assert_eq!(found.tenant_guardrail_policy.as_deref(), Some("strict"));
    let cleared = store.set_tenant_policy("beta", None).await.unwrap();
    assert_eq!(cleared.guardrail_policy, None);
    assert!(matches!(
        store.set_tenant_policy("nope", Some("strict")).await,
        Err(StoreError::TenantNotFound(_))
    ));

    // Limits: a key's own and its tenant's, read back with the key.
    let tenant_limits = LimitSet {
        rpm: Some(600),
        tpm: Some(5_000_000_000),
        max_concurrency: Some(4),
        ..LimitSet::default()
    };
    let set = store
        .set_tenant_limits("beta", &tenant_limits)
        .await
        .unwrap();
    assert_eq!(set.limits, tenant_limits);
    let key_limits = LimitSet {
        rps: Some(2),
        rph: Some(1000),
        ..LimitSet::default()
    };
    let k4 = store
        .create_api_key(NewApiKey {
            limits: key_limits,
            created_by: None,
            permissions: Default::default(),
            ..new_key("beta", "hash-4", &[], None)
        })
        .await
        .unwrap();
    let found = store.find_api_key_by_hash("hash-4").await.unwrap().unwrap();
    assert_eq!(found, k4);
    assert_eq!(found.limits, key_limits);
    assert_eq!(found.tenant_limits, tenant_limits);
    let cleared = store
        .set_tenant_limits("beta", &LimitSet::default())
        .await
        .unwrap();
    assert!(cleared.limits.is_empty());
    assert!(matches!(
        store.set_tenant_limits("nope", &tenant_limits).await,
        Err(StoreError::TenantNotFound(_))
    ));

    // Everything is durable: a fresh connection pool sees it.
    let again = reopen();
    assert_eq!(again.list_tenants().await.unwrap().len(), 2);
    assert!(again
        .find_api_key_by_hash("hash-2")
        .await
        .unwrap()
        .is_some());
    again.close().await;
}

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested-does-not-matter.db");
    assert!(!path.exists());
    let url = format!("sqlite://{}", path.display());
    let store = Store::new(&url, 4, Duration::from_secs(5));
    assert_eq!(store.backend(), Backend::Sqlite);
    conformance(&store, || Store::new(&url, 4, Duration::from_secs(5))).await;
    assert!(path.exists(), "the SQLite file is created if missing");
    store.close().await;
}

#[tokio::test]
async fn postgres_store_conforms() {
    let db = TempDatabase::create().await;
    let store = Store::new(&db.url, 4, Duration::from_secs(5));
    assert_eq!(store.backend(), Backend::Postgres);
    conformance(&store, || Store::new(&db.url, 4, Duration::from_secs(5))).await;
    store.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn unreachable_database_is_a_clear_error() {
    let store = Store::new(
        "postgres://nobody@127.0.0.1:1/none",
        1,
        Duration::from_millis(500),
    );
    let err = store.ping().await.unwrap_err();
    assert_eq!(err.code(), "store_unavailable");
}
