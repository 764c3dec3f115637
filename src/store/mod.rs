//! Store: tenants and API keys in SQLite (embedded default) or Postgres (production), through
//! one set of runtime-checked queries on sqlx's `Any` driver. `$N` placeholders work on both.
//! (The audit writer's appends use each backend's native driver: `audit::sink::Appender`.)
//! Times are Unix milliseconds in BIGINT columns so both backends store them identically.

use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tokio::sync::OnceCell;

mod admin;
mod users;

pub use admin::{AdminSession, LoginFailures, MfaState, NewSession, PendingSso};
pub use users::{normalize_email, NewUser, User};

use crate::audit::LoggingPolicy;
use crate::ids;
use crate::limits::LimitSet;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    #[error("invalid tenant name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-'")]
    InvalidTenantName(String),
    #[error("tenant {0:?} does not exist (create it with `portcullis tenants create {0}`)")]
    TenantNotFound(String),
    #[error("API key {0:?} does not exist")]
    KeyNotFound(String),
    #[error("a user with the e-mail address {0:?} already exists")]
    UserExists(String),
    #[error("no user with id {0}")]
    UserNotFound(String),
    #[error("{0:?} is not a valid e-mail address")]
    InvalidEmail(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Random(#[from] ids::RandomError),
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Connect(_) => "store_unavailable",
            StoreError::Migrate(_) => "store_migration_failed",
            StoreError::Query(_) => "store_query_failed",
            StoreError::TenantExists(_) => "tenant_exists",
            StoreError::InvalidTenantName(_) => "invalid_tenant_name",
            StoreError::TenantNotFound(_) => "tenant_not_found",
            StoreError::KeyNotFound(_) => "key_not_found",
            StoreError::UserExists(_) => "user_exists",
            StoreError::InvalidEmail(_) => "invalid_email",
            StoreError::UserNotFound(_) => "user_not_found",
            StoreError::Corrupt(_) => "store_corrupt",
            StoreError::Random(e) => e.code(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    /// The guardrail policy its requests use; `None`: `guardrails.default_policy`.
    pub guardrail_policy: Option<String>,
    /// Limits set by `tenants set-limits`; unset fields fall back to config.toml.
    pub limits: LimitSet,
    /// What the audit trail keeps of its requests; `None`: `audit.default_logging`.
    pub logging_policy: Option<LoggingPolicy>,
}

/// An API key as stored: never the secret, only its hash and a display prefix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant_id: String,
    pub tenant: String,
    pub name: String,
    pub prefix: String,
    #[serde(skip)]
    pub key_hash: String,
    /// Model names or globs this key may use; empty means every routed model.
    pub allowed_models: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// This key's own guardrail policy, overriding its tenant's.
    pub guardrail_policy: Option<String>,
    /// The tenant's guardrail policy (for the effective one: the key's, else this).
    #[serde(skip)]
    pub tenant_guardrail_policy: Option<String>,
    /// This key's own limits; unset fields fall back to `[limits.key_defaults]`.
    pub limits: LimitSet,
    /// Its tenant's stored limits.
    #[serde(skip)]
    pub tenant_limits: LimitSet,
    /// Its tenant's logging policy.
    #[serde(skip)]
    pub tenant_logging_policy: Option<LoggingPolicy>,
    /// The user who created it through the admin API; `None` for the CLI.
    pub created_by: Option<String>,
    /// What it may call: `full`, `read_only` or a list of endpoints.
    pub permissions: KeyPermissions,
}

/// What an API key may call on the data plane (its models are `allowed_models`). Written as
/// `"full"`, `"read_only"` or a list of endpoint paths in JSON, the CLI and the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeyPermissions {
    /// Every endpoint.
    #[default]
    Full,
    /// GET endpoints only (`/v1/models`).
    ReadOnly,
    /// These endpoint paths only, e.g. `["/v1/chat/completions", "/v1/models"]`.
    Endpoints(Vec<String>),
}

impl serde::Serialize for KeyPermissions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KeyPermissions::Full => s.serialize_str("full"),
            KeyPermissions::ReadOnly => s.serialize_str("read_only"),
            KeyPermissions::Endpoints(list) => serde::Serialize::serialize(list, s),
        }
    }
}

impl<'de> serde::Deserialize<'de> for KeyPermissions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            List(Vec<String>),
        }
        match Raw::deserialize(d)? {
            Raw::Name(name) => match name.as_str() {
                "full" => Ok(KeyPermissions::Full),
                "read_only" => Ok(KeyPermissions::ReadOnly),
                other => Err(serde::de::Error::custom(format!(
                    "unknown permissions {other:?}: use \"full\", \"read_only\" or a list of endpoint paths"
                ))),
            },
            Raw::List(list) => KeyPermissions::endpoints(list).map_err(serde::de::Error::custom),
        }
    }
}

impl KeyPermissions {
    /// A custom list; each entry must be a data-plane path (`/v1/…`).
    pub fn endpoints(list: Vec<String>) -> Result<KeyPermissions, String> {
        if list.is_empty() {
            return Err("an endpoint list must name at least one endpoint".into());
        }
        if let Some(bad) = list
            .iter()
            .find(|p| !p.starts_with("/v1/") || p.contains(char::is_whitespace))
        {
            return Err(format!(
                "{bad:?} is not an endpoint path like \"/v1/chat/completions\""
            ));
        }
        Ok(KeyPermissions::Endpoints(list))
    }

    /// Stored as `full`, `read_only` or a JSON array.
    pub fn to_column(&self) -> String {
        match self {
            KeyPermissions::Full => "full".into(),
            KeyPermissions::ReadOnly => "read_only".into(),
            KeyPermissions::Endpoints(list) => {
                serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
            }
        }
    }

    pub fn from_column(text: &str) -> Result<KeyPermissions, StoreError> {
        match text {
            "full" => Ok(KeyPermissions::Full),
            "read_only" => Ok(KeyPermissions::ReadOnly),
            list => serde_json::from_str(list)
                .map(KeyPermissions::Endpoints)
                .map_err(|e| StoreError::Corrupt(format!("api_keys.permissions: {e}"))),
        }
    }

    /// Whether a request with this method to this path is allowed.
    pub fn allows(&self, method: &http::Method, path: &str) -> bool {
        match self {
            KeyPermissions::Full => true,
            KeyPermissions::ReadOnly => method == http::Method::GET,
            KeyPermissions::Endpoints(list) => list.iter().any(|p| p == path),
        }
    }
}

pub struct NewApiKey<'a> {
    pub tenant: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub allowed_models: &'a [String],
    pub expires_at: Option<i64>,
    pub guardrail_policy: Option<&'a str>,
    pub limits: LimitSet,
    pub created_by: Option<&'a str>,
    pub permissions: KeyPermissions,
}

/// Whether a revoke call changed anything: revoking twice is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Now,
    Already,
}

pub struct Store {
    url: String,
    backend: Backend,
    max_connections: u32,
    connect_timeout: Duration,
    // Opened on first use, inside whichever tokio runtime asks first: sqlx spawns pool
    // maintenance tasks, and pingora's runtimes only exist after `run_forever`.
    pool: OnceCell<AnyPool>,
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const KEY_COLUMNS: &str = "k.id, k.tenant_id, t.name AS tenant, k.name, k.prefix, k.key_hash, \
     k.allowed_models, k.created_at, k.expires_at, k.revoked_at, k.guardrail_policy, \
     t.guardrail_policy AS tenant_guardrail_policy, \
     k.rps, k.rpm, k.rph, k.tpm, k.max_concurrency, \
     t.rps AS t_rps, t.rpm AS t_rpm, t.rph AS t_rph, t.tpm AS t_tpm, \
     t.max_concurrency AS t_max_concurrency, t.logging_policy AS tenant_logging_policy, \
     k.created_by, k.permissions";

const TENANT_COLUMNS: &str =
    "id, name, created_at, guardrail_policy, rps, rpm, rph, tpm, max_concurrency, logging_policy";

impl Store {
    pub fn new(url: &str, max_connections: u32, connect_timeout: Duration) -> Store {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        Store {
            url: sqlite_create_if_missing(url),
            backend,
            max_connections,
            connect_timeout,
            pool: OnceCell::new(),
        }
    }

    pub fn from_config(db: &crate::config::DatabaseConfig) -> Store {
        Store::new(&db.url, db.max_connections, db.connect_timeout)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for the modules that keep their own tables (the audit trail).
    pub(crate) async fn pool(&self) -> Result<&AnyPool, StoreError> {
        self.pool
            .get_or_try_init(|| async {
                static DRIVERS: Once = Once::new();
                DRIVERS.call_once(sqlx::any::install_default_drivers);
                AnyPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(self.connect_timeout)
                    .connect(&self.url)
                    .await
                    .map_err(StoreError::Connect)
            })
            .await
    }

    /// Where the audit writer opens its own connection (Postgres), and how long it may take.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The SQLite database file, for the audit writer's own connection; `None` for Postgres
    /// and for in-memory databases, which no second connection can open.
    pub(crate) fn sqlite_file(&self) -> Result<Option<std::path::PathBuf>, StoreError> {
        use std::str::FromStr;
        if self.backend != Backend::Sqlite
            || self.url.contains(":memory:")
            || self.url.contains("mode=memory")
        {
            return Ok(None);
        }
        let options =
            sqlx::sqlite::SqliteConnectOptions::from_str(&self.url).map_err(StoreError::Connect)?;
        Ok(Some(options.get_filename().to_path_buf()))
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        match self.backend {
            Backend::Sqlite => {
                // WAL lets the running gateway read while the CLI writes. The mode is stored
                // in the database file, and cannot be changed inside a migration transaction.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(pool)
                    .await?;
                SQLITE_MIGRATIONS.run(pool).await?
            }
            Backend::Postgres => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// Cheap reachability check for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.pool().await?).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(pool) = self.pool.get() {
            pool.close().await;
        }
    }

    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        if !is_valid_tenant_name(name) {
            return Err(StoreError::InvalidTenantName(name.to_string()));
        }
        let tenant = Tenant {
            id: ids::new_id("ten")?,
            name: name.to_string(),
            created_at: now_millis(),
            guardrail_policy: None,
            limits: LimitSet::default(),
            logging_policy: None,
        };
        let result = sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(tenant.created_at)
            .execute(self.pool().await?)
            .await;
        match result {
            Ok(_) => Ok(tenant),
            Err(e) if is_unique_violation(&e) => Err(StoreError::TenantExists(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"
        ))
        .fetch_all(self.pool().await?)
        .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool().await?)
        .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// Sets (or with `None` clears) the guardrail policy of a tenant.
    pub async fn set_tenant_policy(
        &self,
        name: &str,
        policy: Option<&str>,
    ) -> Result<Tenant, StoreError> {
        let done = sqlx::query("UPDATE tenants SET guardrail_policy = $1 WHERE name = $2")
            .bind(policy)
            .bind(name)
            .execute(self.pool().await?)
            .await?;
        self.updated_tenant(name, done.rows_affected()).await
    }

    /// Replaces the stored limits of a tenant (unset fields: config.toml decides).
    pub async fn set_tenant_limits(
        &self,
        name: &str,
        limits: &LimitSet,
    ) -> Result<Tenant, StoreError> {
        let done = sqlx::query(
            "UPDATE tenants SET rps = $1, rpm = $2, rph = $3, tpm = $4, max_concurrency = $5 \
             WHERE name = $6",
        )
        .bind(limits.rps.map(i64::from))
        .bind(limits.rpm.map(i64::from))
        .bind(limits.rph.map(i64::from))
        .bind(limits.tpm.map(|v| v as i64))
        .bind(limits.max_concurrency.map(i64::from))
        .bind(name)
        .execute(self.pool().await?)
        .await?;
        self.updated_tenant(name, done.rows_affected()).await
    }

    /// Sets (or with `None` clears) what the audit trail keeps of a tenant's requests.
    pub async fn set_tenant_logging(
        &self,
        name: &str,
        policy: Option<LoggingPolicy>,
    ) -> Result<Tenant, StoreError> {
        let done = sqlx::query("UPDATE tenants SET logging_policy = $1 WHERE name = $2")
            .bind(policy.map(LoggingPolicy::name))
            .bind(name)
            .execute(self.pool().await?)
            .await?;
        self.updated_tenant(name, done.rows_affected()).await
    }

    /// The tenant as it is after an UPDATE that touched `rows` rows (0: no such tenant).
    async fn updated_tenant(&self, name: &str, rows: u64) -> Result<Tenant, StoreError> {
        let found = match rows {
            0 => None,
            _ => self.tenant_by_name(name).await?,
        };
        found.ok_or_else(|| StoreError::TenantNotFound(name.to_string()))
    }

    pub async fn create_api_key(&self, new: NewApiKey<'_>) -> Result<ApiKeyRecord, StoreError> {
        let tenant = self
            .tenant_by_name(new.tenant)
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(new.tenant.to_string()))?;
        let record = ApiKeyRecord {
            id: ids::new_id("key")?,
            tenant_id: tenant.id,
            tenant: tenant.name,
            name: new.name.to_string(),
            prefix: new.prefix.to_string(),
            key_hash: new.key_hash.to_string(),
            allowed_models: new.allowed_models.to_vec(),
            created_at: now_millis(),
            expires_at: new.expires_at,
            revoked_at: None,
            guardrail_policy: new.guardrail_policy.map(str::to_string),
            tenant_guardrail_policy: tenant.guardrail_policy,
            limits: new.limits,
            tenant_limits: tenant.limits,
            tenant_logging_policy: tenant.logging_policy,
            created_by: new.created_by.map(str::to_string),
            permissions: new.permissions,
        };
        let models = serde_json::to_string(&record.allowed_models)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, allowed_models, \
             created_at, expires_at, revoked_at, guardrail_policy, rps, rpm, rph, tpm, \
             max_concurrency, created_by, permissions) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(&record.id)
        .bind(&record.tenant_id)
        .bind(&record.name)
        .bind(&record.prefix)
        .bind(&record.key_hash)
        .bind(models)
        .bind(record.created_at)
        .bind(record.expires_at)
        .bind(&record.guardrail_policy)
        .bind(record.limits.rps.map(i64::from))
        .bind(record.limits.rpm.map(i64::from))
        .bind(record.limits.rph.map(i64::from))
        .bind(record.limits.tpm.map(|v| v as i64))
        .bind(record.limits.max_concurrency.map(i64::from))
        .bind(&record.created_by)
        .bind(record.permissions.to_column())
        .execute(self.pool().await?)
        .await?;
        Ok(record)
    }

    pub async fn list_api_keys(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let pool = self.pool().await?;
        let rows = match tenant {
            Some(name) => {
                if self.tenant_by_name(name).await?.is_none() {
                    return Err(StoreError::TenantNotFound(name.to_string()));
                }
                sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
                     WHERE t.name = $1 ORDER BY k.created_at, k.id"
                ))
                .bind(name)
                .fetch_all(pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
                     ORDER BY t.name, k.created_at, k.id"
                ))
                .fetch_all(pool)
                .await?
            }
        };
        rows.iter().map(key_from_row).collect()
    }

    pub async fn find_api_key_by_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1"
        ))
        .bind(key_hash)
        .fetch_optional(self.pool().await?)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub async fn revoke_api_key(&self, id: &str) -> Result<Revoked, StoreError> {
        let pool = self.pool().await?;
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_millis())
                .bind(id)
                .execute(pool)
                .await?;
        if done.rows_affected() > 0 {
            return Ok(Revoked::Now);
        }
        let exists = sqlx::query("SELECT id FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
        match exists {
            Some(_) => Ok(Revoked::Already),
            None => Err(StoreError::KeyNotFound(id.to_string())),
        }
    }
}

impl Store {
    pub async fn api_key_by_id(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool().await?)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Brings a key's expiry forward to `at` (never later than it already was): rotation.
    pub async fn expire_api_key_by(&self, id: &str, at: i64) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        sqlx::query(
            "UPDATE api_keys SET expires_at = $1 WHERE id = $2 \
             AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(at)
        .bind(id)
        .execute(pool)
        .await?;
        let key = self
            .api_key_by_id(id)
            .await?
            .ok_or_else(|| StoreError::KeyNotFound(id.to_string()))?;
        Ok(key.expires_at.unwrap_or(at))
    }

    /// The name of the tenant an API key belongs to.
    pub async fn api_key_tenant(&self, id: &str) -> Result<String, StoreError> {
        let row = sqlx::query(
            "SELECT t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool().await?)
        .await?;
        match row {
            Some(row) => Ok(row.try_get("name")?),
            None => Err(StoreError::KeyNotFound(id.to_string())),
        }
    }
}

/// sqlx's SQLite driver refuses to create a missing file unless asked; the embedded default
/// should just work, so ask for read-write-create unless the URL already chose a mode.
fn sqlite_create_if_missing(url: &str) -> String {
    if !url.starts_with("sqlite:") || url.contains("mode=") || url.contains(":memory:") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode=rwc")
}

/// Tenant names appear in metrics labels, logs and URLs: keep them plain.
pub fn is_valid_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        guardrail_policy: row.try_get("guardrail_policy")?,
        limits: limits_from_row(row, "")?,
        logging_policy: logging_from_row(row, "logging_policy")?,
    })
}

fn logging_from_row(row: &AnyRow, column: &str) -> Result<Option<LoggingPolicy>, StoreError> {
    let value: Option<String> = row.try_get(column)?;
    value
        .map(|v| {
            LoggingPolicy::parse(&v)
                .ok_or_else(|| StoreError::Corrupt(format!("tenants.logging_policy = {v:?}")))
        })
        .transpose()
}

/// The five limit columns, `prefix`ed (`t_` for a tenant's columns joined to a key).
fn limits_from_row(row: &AnyRow, prefix: &str) -> Result<LimitSet, StoreError> {
    let get = |name: &str| -> Result<Option<i64>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(format!("{prefix}{name}").as_str())?)
    };
    let small = |name: &str| -> Result<Option<u32>, StoreError> {
        get(name)?
            .map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{name} = {v}"))))
            .transpose()
    };
    Ok(LimitSet {
        rps: small("rps")?,
        rpm: small("rpm")?,
        rph: small("rph")?,
        tpm: get("tpm")?
            .map(|v| u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("tpm = {v}"))))
            .transpose()?,
        max_concurrency: small("max_concurrency")?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let models: String = row.try_get("allowed_models")?;
    let allowed_models = serde_json::from_str(&models)
        .map_err(|e| StoreError::Corrupt(format!("api_keys.allowed_models: {e}")))?;
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        key_hash: row.try_get("key_hash")?,
        allowed_models,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        guardrail_policy: row.try_get("guardrail_policy")?,
        tenant_guardrail_policy: row.try_get("tenant_guardrail_policy")?,
        limits: limits_from_row(row, "")?,
        tenant_limits: limits_from_row(row, "t_")?,
        tenant_logging_policy: logging_from_row(row, "tenant_logging_policy")?,
        created_by: row.try_get("created_by")?,
        permissions: KeyPermissions::from_column(&row.try_get::<String, _>("permissions")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        assert!(is_valid_tenant_name("acme-corp_1.eu"));
        assert!(!is_valid_tenant_name(""));
        assert!(!is_valid_tenant_name("a b"));
        assert!(!is_valid_tenant_name("acme\"}"));
        assert!(!is_valid_tenant_name(&"a".repeat(65)));
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        assert_eq!(
            sqlite_create_if_missing("sqlite://p.db"),
            "sqlite://p.db?mode=rwc"
        );
        assert_eq!(
            sqlite_create_if_missing("sqlite://p.db?x=1"),
            "sqlite://p.db?x=1&mode=rwc"
        );
        assert_eq!(
            sqlite_create_if_missing("sqlite://p.db?mode=ro"),
            "sqlite://p.db?mode=ro"
        );
        assert_eq!(
            sqlite_create_if_missing("postgres://h/db"),
            "postgres://h/db"
        );
    }
}
