//! The command line. Every command reads the config from `--config PATH`, else
//! `$PORTCULLIS_CONFIG`, else `./config.toml`, and prints JSON instead of text with `--json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::audit::LoggingPolicy;
use crate::auth::{KeyHasher, Role};
use crate::config::{Config, ConfigError};
use crate::limits::LimitSet;
use crate::routing::ModelPattern;
use crate::store::{
    now_millis, ApiKeyRecord, KeyPermissions, NewApiKey, NewUser, Revoked, Store, StoreError,
};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Portcullis: a self-hosted, security-first AI gateway"
)]
pub struct Cli {
    /// Config file (default: $PORTCULLIS_CONFIG, else ./config.toml).
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_CONFIG",
        default_value = "config.toml"
    )]
    pub config: PathBuf,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (data plane + admin listener).
    Serve,
    /// Validate the config file and report every problem with its key path.
    CheckConfig,
    /// Apply database migrations.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage administrators (users of the admin plane).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Search, export, verify and erase the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Scan JSONL `{"id","text"}` from stdin with the guardrails; one JSONL line of findings
    /// per input on stdout (UTF-8 byte offsets, end exclusive).
    Scan {
        /// Report the types this policy acts on (default: guardrails.default_policy).
        #[arg(long)]
        policy: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user. The password is read from stdin (one line), so it never appears in the
    /// shell history or the process list: `portcullis users create --email a@b.c --role admin
    /// < password-file`. It must meet [users.password_policy].
    Create {
        #[arg(long)]
        email: String,
        /// admin, manager, developer or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Scope the user to one tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List users (never their password hashes).
    List,
    /// Remove a user's TOTP and recovery codes (lost device) and end their sessions; they
    /// log in with their password and enrol again.
    ResetMfa {
        #[arg(long)]
        email: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text)
        .ok_or_else(|| format!("{text:?} is not one of admin, manager, developer, viewer"))
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        name: String,
        /// Guardrail policy for the tenant's requests (default: guardrails.default_policy).
        #[arg(long)]
        policy: Option<String>,
        /// What the audit trail keeps of its requests (default: audit.default_logging).
        #[arg(long, value_parser = parse_logging)]
        logging: Option<LoggingPolicy>,
    },
    /// List tenants.
    List,
    /// Set the guardrail policy of a tenant (takes effect within auth.key_cache_ttl_ms).
    SetPolicy {
        name: String,
        /// A policy from [guardrails.policies] (or the built-in "default").
        #[arg(required_unless_present = "unset")]
        policy: Option<String>,
        /// Use guardrails.default_policy again.
        #[arg(long, conflicts_with = "policy")]
        unset: bool,
    },
    /// Set what the audit trail keeps of a tenant's requests: none, metadata or redacted
    /// (takes effect within auth.key_cache_ttl_ms).
    SetLogging {
        name: String,
        #[arg(value_parser = parse_logging, required_unless_present = "unset")]
        policy: Option<LoggingPolicy>,
        /// Use audit.default_logging again.
        #[arg(long, conflicts_with = "policy")]
        unset: bool,
    },
    /// Set rate limits of a tenant (take effect within auth.key_cache_ttl_ms). Limits given
    /// change; the others stay. Unset limits come from config.toml's [limits].
    SetLimits {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
        /// Remove every stored limit of the tenant first.
        #[arg(long)]
        clear: bool,
    },
}

/// Rate limits of a tenant or key; each at least 1.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Requests per second.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rps: Option<u32>,
    /// Requests per minute.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rpm: Option<u32>,
    /// Requests per hour.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rph: Option<u32>,
    /// Tokens (prompt + completion) per minute.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=u64::from(u32::MAX)))]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: Option<u32>,
}

impl LimitArgs {
    fn to_set(&self) -> LimitSet {
        LimitSet {
            rps: self.rps,
            rpm: self.rpm,
            rph: self.rph,
            tpm: self.tpm,
            max_concurrency: self.max_concurrency,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key; the secret is printed once and never stored.
    Create(KeysCreate),
    /// List API keys (prefixes only, never secrets).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke an API key by id; it stops working within auth.key_cache_ttl_ms.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct KeysCreate {
    #[arg(long)]
    pub tenant: String,
    /// A label for the key, e.g. the application using it.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Lifetime such as 90d, 12h, 30m, 2w (default: no expiry).
    #[arg(long, value_parser = parse_duration)]
    pub expires_in: Option<Duration>,
    /// Comma-separated model names or globs this key may use (default: all routed models).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Guardrail policy for this key, overriding its tenant's.
    #[arg(long)]
    pub policy: Option<String>,
    /// What the key may call: full, read_only (GET endpoints only), or comma-separated
    /// endpoint paths such as /v1/chat/completions,/v1/models.
    #[arg(long, default_value = "full", value_parser = parse_permissions)]
    pub permissions: KeyPermissions,
    /// The key's own limits; they restrict further within its tenant's.
    #[command(flatten)]
    pub limits: LimitArgs,
}

fn parse_permissions(text: &str) -> Result<KeyPermissions, String> {
    match text {
        "full" => Ok(KeyPermissions::Full),
        "read_only" => Ok(KeyPermissions::ReadOnly),
        list => KeyPermissions::endpoints(
            list.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        ),
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chains: exits 0 when intact, non-zero naming the first broken link.
    Verify {
        /// Only this tenant's chains (`*` for events of no tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write a tenant's records to stdout, oldest first.
    Export {
        #[arg(long)]
        tenant: String,
        /// From this time: 2026-11-01, 2026-11-01T09:00:00Z, Unix ms, or an age like 7d.
        #[arg(long)]
        since: Option<String>,
        /// Before this time (same forms).
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
    },
    /// Find records; newest filters first, oldest records first.
    Search {
        #[command(flatten)]
        filter: SearchArgs,
        /// At most this many records.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Erase a data subject (the OpenAI `user` value or audit.subject_header): removes the
    /// prompt and answer text of their records; the chains still verify.
    Erase {
        #[arg(long)]
        subject: String,
    },
}

#[derive(Debug, Args, Default)]
pub struct SearchArgs {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    /// A key prefix (pc_…) or cli:USER.
    #[arg(long)]
    pub actor: Option<String>,
    /// request, auth.failed, key.created, key.revoked, tenant.created, …
    #[arg(long)]
    pub action: Option<String>,
    /// request, admin or security.
    #[arg(long, value_parser = ["request", "admin", "security"])]
    pub kind: Option<String>,
    /// HTTP status of requests.
    #[arg(long)]
    pub status: Option<i32>,
}

fn parse_logging(text: &str) -> Result<LoggingPolicy, String> {
    LoggingPolicy::parse(text)
        .ok_or_else(|| format!("{text:?} is not one of none, metadata, redacted"))
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
    #[error("--models: {0}")]
    Models(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Random(#[from] crate::ids::RandomError),
    #[error("--policy: {name:?} is not a guardrail policy of this config; defined: {defined}")]
    UnknownPolicy { name: String, defined: String },
    #[error("scan: {0}")]
    Scan(String),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("audit.enabled is false in this config: there is no audit trail to use")]
    AuditDisabled,
    #[error("users create: {0}")]
    Password(#[from] crate::auth::passwords::PasswordError),
    #[error("users create: cannot read the password from stdin: {0}")]
    Stdin(String),
    #[error("no user with e-mail {0}")]
    UnknownUser(String),
}

impl CliError {
    pub fn code(&self) -> &'static str {
        match self {
            CliError::Config(e) => e.code(),
            CliError::Store(e) => e.code(),
            CliError::Serve(e) => e.code(),
            CliError::Models(_) => "invalid_models",
            CliError::Runtime(_) => "runtime_failed",
            CliError::Random(e) => e.code(),
            CliError::UnknownPolicy { .. } => "unknown_policy",
            CliError::Scan(_) => "scan_failed",
            CliError::Audit(e) => e.code(),
            CliError::AuditDisabled => "audit_disabled",
            CliError::Password(e) => e.code(),
            CliError::Stdin(_) => "stdin_unreadable",
            CliError::UnknownUser(_) => "user_not_found",
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                eprintln!(
                    "{}",
                    json!({"error": {"message": e.to_string(), "code": e.code()}})
                );
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<(), CliError> {
    let config = Config::load(&cli.config)?;
    // For the async blocks below, which must not take the config itself.
    let settings = &config;
    match cli.command {
        Command::CheckConfig => {
            print(cli.json, json!({"ok": true, "config": cli.config}), || {
                format!(
                    "{}: OK ({} provider(s), {} route(s))",
                    cli.config.display(),
                    config
                        .router
                        .routes()
                        .iter()
                        .map(|r| &r.provider.name)
                        .collect::<std::collections::BTreeSet<_>>()
                        .len(),
                    config.router.routes().len()
                )
            });
            Ok(())
        }
        Command::Scan { policy } => {
            let guardrails = &config.guardrails;
            let policy = match policy.as_deref() {
                Some(name) => known_policy(&config, name)?,
                None => guardrails.default_policy.clone(),
            };
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            let summary =
                crate::guard::scan::scan_jsonl(&guardrails.engine, &policy, stdin, stdout)
                    .map_err(|e| CliError::Scan(e.to_string()))?;
            if summary.invalid > 0 {
                return Err(CliError::Scan(format!(
                    "{} of {} input line(s) were invalid (their output lines carry an \"error\")",
                    summary.invalid, summary.lines
                )));
            }
            Ok(())
        }
        Command::Serve => {
            crate::telemetry::init_tracing(&config.logging);
            crate::server::serve(config, &cli.config)?;
            Ok(())
        }
        Command::Migrate => with_store(&config, |store| async move {
            store.migrate().await?;
            print(cli.json, json!({"ok": true}), || {
                "database is up to date".to_string()
            });
            Ok(())
        }),
        Command::Tenants(cmd) => with_store(&config, |store| async move {
            store.migrate().await?;
            match cmd {
                TenantsCommand::Create {
                    name,
                    policy,
                    logging,
                } => {
                    if let Some(policy) = &policy {
                        known_policy(settings, policy)?;
                    }
                    let mut tenant = store.create_tenant(&name).await?;
                    if policy.is_some() {
                        tenant = store.set_tenant_policy(&name, policy.as_deref()).await?;
                    }
                    if logging.is_some() {
                        tenant = store.set_tenant_logging(&name, logging).await?;
                    }
                    admin_event(
                        &store,
                        settings,
                        &tenant.name,
                        "tenant.created",
                        json!({"tenant_id": tenant.id, "guardrail_policy": tenant.guardrail_policy,
                               "logging_policy": tenant.logging_policy}),
                    )
                    .await?;
                    print(cli.json, json!(tenant), || {
                        format!("created tenant {} ({})", tenant.name, tenant.id)
                    });
                }
                TenantsCommand::SetPolicy { name, policy, .. } => {
                    if let Some(policy) = &policy {
                        known_policy(settings, policy)?;
                    }
                    let tenant = store.set_tenant_policy(&name, policy.as_deref()).await?;
                    admin_event(
                        &store,
                        settings,
                        &tenant.name,
                        "tenant.policy_changed",
                        json!({"guardrail_policy": tenant.guardrail_policy}),
                    )
                    .await?;
                    print(cli.json, json!(tenant), || match &tenant.guardrail_policy {
                        Some(p) => format!("tenant {} now uses guardrail policy {p}", tenant.name),
                        None => {
                            format!("tenant {} now uses guardrails.default_policy", tenant.name)
                        }
                    });
                }
                TenantsCommand::SetLogging { name, policy, .. } => {
                    let tenant = store.set_tenant_logging(&name, policy).await?;
                    admin_event(
                        &store,
                        settings,
                        &tenant.name,
                        "tenant.logging_changed",
                        json!({"logging_policy": tenant.logging_policy}),
                    )
                    .await?;
                    let effective = tenant
                        .logging_policy
                        .unwrap_or(settings.audit.default_logging);
                    print(cli.json, json!(tenant), || match tenant.logging_policy {
                        Some(p) => {
                            format!("tenant {} now has logging policy {}", tenant.name, p.name())
                        }
                        None => format!(
                            "tenant {} now follows audit.default_logging ({})",
                            tenant.name,
                            effective.name()
                        ),
                    });
                }
                TenantsCommand::SetLimits {
                    name,
                    limits,
                    clear,
                } => {
                    let current = store
                        .tenant_by_name(&name)
                        .await?
                        .ok_or_else(|| StoreError::TenantNotFound(name.clone()))?;
                    let base = if clear {
                        LimitSet::default()
                    } else {
                        current.limits
                    };
                    let tenant = store
                        .set_tenant_limits(&name, &limits.to_set().or(&base))
                        .await?;
                    let effective = tenant.limits.or(&settings.limits.tenant_base(&tenant.name));
                    admin_event(
                        &store,
                        settings,
                        &tenant.name,
                        "tenant.limits_changed",
                        json!({"limits": tenant.limits}),
                    )
                    .await?;
                    print(
                        cli.json,
                        json!({"tenant": tenant, "effective_limits": effective}),
                        || {
                            format!(
                                "tenant {} limits: stored {}; in force with config.toml: {}",
                                tenant.name,
                                tenant.limits.describe(),
                                effective.describe()
                            )
                        },
                    );
                }
                TenantsCommand::List => {
                    let tenants = store.list_tenants().await?;
                    print(cli.json, json!(tenants), || {
                        let mut out = format!(
                            "{:<24} {:<22} {:<16} {:<11} {:<24} {}",
                            "NAME", "ID", "POLICY", "LOGGING", "CREATED", "LIMITS"
                        );
                        for t in &tenants {
                            out.push_str(&format!(
                                "\n{:<24} {:<22} {:<16} {:<11} {:<24} {}",
                                t.name,
                                t.id,
                                t.guardrail_policy.as_deref().unwrap_or("(default)"),
                                t.logging_policy.map_or("(default)", LoggingPolicy::name),
                                format_time(t.created_at),
                                t.limits.describe()
                            ));
                        }
                        out
                    });
                }
            }
            Ok(())
        }),
        Command::Audit(cmd) => {
            if !config.audit.enabled {
                return Err(CliError::AuditDisabled);
            }
            with_store(&config, |store| async move {
                store.migrate().await?;
                run_audit(&store, settings, cmd, cli.json).await
            })
        }
        Command::Users(cmd) => with_store(&config, |store| async move {
            store.migrate().await?;
            match cmd {
                UsersCommand::Create {
                    email,
                    role,
                    tenant,
                } => {
                    let password = read_password_line()?;
                    let users = &settings.users;
                    let hash = crate::auth::passwords::hash_new(
                        &users.password_policy,
                        users.bcrypt_cost,
                        &password,
                        &email,
                    )
                    .await?;
                    let user = store
                        .create_user(NewUser {
                            email: &email,
                            role,
                            tenant: tenant.as_deref(),
                            password_hash: Some(&hash),
                        })
                        .await?;
                    admin_event(
                        &store,
                        settings,
                        user.tenant.as_deref().unwrap_or(""),
                        "user.created",
                        json!({"user_id": user.id, "role": user.role}),
                    )
                    .await?;
                    print(cli.json, json!(user), || {
                        format!(
                            "created user {} ({}, {}{})",
                            user.id,
                            user.email,
                            user.role,
                            user.tenant
                                .as_deref()
                                .map(|t| format!(", tenant {t}"))
                                .unwrap_or_default()
                        )
                    });
                }
                UsersCommand::List => {
                    let users = store.list_users().await?;
                    print(cli.json, json!(users), || user_table(&users));
                }
                UsersCommand::ResetMfa { email } => {
                    let Some((user, _)) = store.user_by_email(&email).await? else {
                        return Err(CliError::UnknownUser(email));
                    };
                    let ended = store.reset_mfa(&user.id).await?;
                    admin_event(
                        &store,
                        settings,
                        user.tenant.as_deref().unwrap_or(""),
                        "mfa.reset",
                        json!({"user_id": user.id, "sessions_ended": ended}),
                    )
                    .await?;
                    print(
                        cli.json,
                        json!({"user_id": user.id, "mfa_enabled": false, "sessions_ended": ended}),
                        || {
                            format!(
                                "MFA removed for {}; {ended} session(s) ended. They log in with their password and enrol again.",
                                user.email
                            )
                        },
                    );
                }
            }
            Ok(())
        }),
        Command::Keys(cmd) => {
            let hasher = KeyHasher::from_config(&config.auth);
            with_store(&config, |store| async move {
                store.migrate().await?;
                match cmd {
                    KeysCommand::Create(args) => {
                        if let Some(policy) = &args.policy {
                            known_policy(settings, policy)?;
                        }
                        create_key(&store, settings, &hasher, args, cli.json).await?
                    }
                    KeysCommand::List { tenant } => {
                        let keys = store.list_api_keys(tenant.as_deref()).await?;
                        print(cli.json, json!(keys), || key_table(&keys));
                    }
                    KeysCommand::Revoke { id } => {
                        let result = store.revoke_api_key(&id).await?;
                        if result == Revoked::Now {
                            let tenant = store.api_key_tenant(&id).await?;
                            admin_event(
                                &store,
                                settings,
                                &tenant,
                                "key.revoked",
                                json!({"key_id": id}),
                            )
                            .await?;
                        }
                        let ttl = config.auth.key_cache_ttl.as_millis();
                        print(
                            cli.json,
                            json!({"id": id, "revoked": true, "already_revoked": result == Revoked::Already}),
                            || match result {
                                Revoked::Now => format!(
                                    "revoked {id}; running gateways refuse it within {ttl} ms"
                                ),
                                Revoked::Already => format!("{id} was already revoked"),
                            },
                        );
                    }
                }
                Ok(())
            })
        }
    }
}

async fn run_audit(
    store: &Store,
    config: &Config,
    cmd: AuditCommand,
    json_out: bool,
) -> Result<(), CliError> {
    use crate::audit::commands;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cmd {
        AuditCommand::Verify { tenant } => {
            commands::verify(store, config, tenant.as_deref(), json_out, &mut out).await?;
        }
        AuditCommand::Export {
            tenant,
            since,
            until,
            format,
        } => {
            if store.tenant_by_name(&tenant).await?.is_none() && tenant != "*" {
                return Err(StoreError::TenantNotFound(tenant).into());
            }
            let tenant = if tenant == "*" { String::new() } else { tenant };
            commands::export(
                store,
                config,
                &tenant,
                since.as_deref(),
                until.as_deref(),
                &format,
                &mut out,
            )
            .await?;
        }
        AuditCommand::Search { filter, limit } => {
            let f = commands::filter(
                filter
                    .tenant
                    .map(|t| if t == "*" { String::new() } else { t }),
                filter.since.as_deref(),
                filter.until.as_deref(),
                filter.actor,
                filter.action,
                filter.kind,
                filter.status,
            )?;
            commands::search(store, &f, limit, json_out, &mut out).await?;
        }
        AuditCommand::Erase { subject } => {
            let (records, erased) = commands::erase(store, config, &subject).await?;
            print(
                json_out,
                json!({"records": records, "contents_removed": erased}),
                || {
                    format!(
                        "erased: {erased} record content(s) removed; the subject has {records} record(s) in all (metadata kept, chains intact)"
                    )
                },
            );
        }
    }
    std::io::Write::flush(&mut out).map_err(crate::audit::AuditError::Output)?;
    Ok(())
}

async fn create_key(
    store: &Store,
    config: &Config,
    hasher: &KeyHasher,
    args: KeysCreate,
    json_out: bool,
) -> Result<(), CliError> {
    let models: Vec<String> = args
        .models
        .iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    for m in &models {
        ModelPattern::parse(m).map_err(CliError::Models)?;
    }
    let expires_at = args.expires_in.map(|d| now_millis() + d.as_millis() as i64);
    let generated = hasher.generate()?;
    let record = store
        .create_api_key(NewApiKey {
            tenant: &args.tenant,
            name: &args.name,
            prefix: &generated.prefix,
            key_hash: &generated.hash,
            allowed_models: &models,
            expires_at,
            guardrail_policy: args.policy.as_deref(),
            limits: args.limits.to_set(),
            created_by: None,
            permissions: args.permissions,
        })
        .await?;
    admin_event(
        store,
        config,
        &record.tenant,
        "key.created",
        json!({"key_id": record.id, "prefix": record.prefix, "name": record.name,
               "allowed_models": record.allowed_models, "expires_at": record.expires_at,
               "guardrail_policy": record.guardrail_policy, "limits": record.limits,
               "permissions": record.permissions}),
    )
    .await?;
    let out = json!({
        "id": record.id, "key": generated.secret, "tenant": record.tenant, "prefix": record.prefix,
        "name": record.name, "allowed_models": record.allowed_models,
        "created_at": record.created_at, "expires_at": record.expires_at,
        "guardrail_policy": record.guardrail_policy, "limits": record.limits,
        "permissions": record.permissions,
    });
    print(json_out, out, || {
        format!(
            "created API key {} for tenant {}\n\n    {}\n\nThis is the only time the key is shown: store it now.",
            record.id, record.tenant, generated.secret
        )
    });
    Ok(())
}

fn key_table(keys: &[ApiKeyRecord]) -> String {
    let mut out = format!(
        "{:<21} {:<16} {:<12} {:<16} {:<10} {:<12} {}",
        "ID", "TENANT", "PREFIX", "NAME", "STATUS", "MODELS", "LIMITS"
    );
    let now = now_millis();
    for k in keys {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|t| t <= now) {
            "expired"
        } else {
            "active"
        };
        let models = if k.allowed_models.is_empty() {
            "*".to_string()
        } else {
            k.allowed_models.join(",")
        };
        out.push_str(&format!(
            "\n{:<21} {:<16} {:<12} {:<16} {:<10} {:<12} {}",
            k.id,
            k.tenant,
            k.prefix,
            k.name,
            status,
            models,
            k.limits.describe()
        ));
    }
    out
}

/// The first line of stdin, without its line ending.
fn read_password_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Stdin(e.to_string()))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(CliError::Stdin(
            "no password given (send it on stdin, one line)".into(),
        ));
    }
    Ok(password)
}

fn user_table(users: &[crate::store::User]) -> String {
    if users.is_empty() {
        return "no users (create one with `portcullis users create --email E --role admin`)"
            .into();
    }
    let mut out = format!(
        "{:<26} {:<32} {:<10} {:<16} created",
        "ID", "EMAIL", "ROLE", "TENANT"
    );
    for u in users {
        out.push_str(&format!(
            "\n{:<26} {:<32} {:<10} {:<16} {}",
            u.id,
            u.email,
            u.role.name(),
            u.tenant.as_deref().unwrap_or("*"),
            format_time(u.created_at)
        ));
    }
    out
}

fn print(json_out: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    if json_out {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

fn format_time(millis: i64) -> String {
    crate::audit::time::format_rfc3339(millis)
}

/// Records an administrative action on the tenant's events chain (`*:events` for none). The
/// command has already changed the database; if the record cannot be written it fails loudly.
async fn admin_event(
    store: &Store,
    config: &Config,
    tenant: &str,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), CliError> {
    crate::audit::commands::record_event(store, config, tenant, action, detail).await?;
    Ok(())
}

/// Runs one async store operation on a small runtime, then closes the pool cleanly.
/// The named policy, or an error listing the defined ones.
fn known_policy(
    config: &Config,
    name: &str,
) -> Result<std::sync::Arc<guardrails::policy::Policy>, CliError> {
    config
        .guardrails
        .policies
        .get(name)
        .cloned()
        .ok_or_else(|| CliError::UnknownPolicy {
            name: name.to_string(),
            defined: config.guardrails.policy_names().join(", "),
        })
}

fn with_store<F, Fut>(config: &Config, f: F) -> Result<(), CliError>
where
    F: FnOnce(std::sync::Arc<Store>) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async {
        let store = std::sync::Arc::new(Store::from_config(&config.database));
        let result = f(store.clone()).await;
        store.close().await;
        result
    })
}

/// Parses `90d`, `12h`, `30m`, `45s`, `2w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90d, 12h, 30m"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{text:?}: unit must be one of s, m, h, d, w")),
    };
    if n == 0 {
        return Err("the duration must be greater than zero".into());
    }
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("90d").unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn cli_shape_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
