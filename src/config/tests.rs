use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"))
}

const MINIMAL: &str = r#"
[[providers]]
name = "mock"
kind = "mock"
[[routes]]
model = "*"
provider = "mock"
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.server.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(c.database.url, "sqlite://portcullis.db");
    assert_eq!(c.auth.key_cache_ttl, Duration::from_secs(5));
    assert!(c.router.route("anything").is_some());
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let err = parse(&format!(
        "{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1\"\nlistne = 1\n"
    ))
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("listne"), "{text}");
}

#[test]
fn every_problem_is_reported_at_once_with_key_paths() {
    let text = r#"
[server]
listen = "not an address"
max_body_bytes = 0
[admin]
listen = "127.0.0.1:9090"
[database]
url = "mysql://x"
[[providers]]
name = "a"
kind = "openai"
api_key = "sk-literal-secret"
[[providers]]
name = "a"
kind = "banana"
[[routes]]
model = ""
provider = "nope"
"#;
    let err = parse(text).unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "server.listen",
        "server.max_body_bytes",
        "database.url",
        "providers[0].base_url",
        "providers[0].api_key",
        "providers[1].name",
        "providers[1].kind",
        "routes[0].model",
        "routes[0].provider",
    ] {
        assert!(keys.contains(&expected), "missing {expected} in {keys:?}");
    }
    // The literal secret is never echoed back.
    assert!(!err.to_string().contains("sk-literal-secret"));
}

#[test]
fn secrets_resolve_from_env_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, "sk-from-file\n").unwrap();
    let text = format!(
        r#"
[[providers]]
name = "file"
kind = "openai"
base_url = "https://api.example.com/v1"
api_key = "file:{}"
[[providers]]
name = "env"
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
api_key = "env:PORTCULLIS_TEST_UNSET_VARIABLE_X"
[[routes]]
model = "*"
provider = "file"
"#,
        file.display()
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("providers[1].api_key: environment variable PORTCULLIS_TEST_UNSET_VARIABLE_X is not set"), "{err}");
    assert!(!err.contains("providers[0]"), "{err}");
}

#[test]
fn same_listen_for_admin_and_data_plane_is_an_error() {
    let err = parse(&format!(
        "[server]\nlisten = \"127.0.0.1:9\"\n[admin]\nlisten = \"127.0.0.1:9\"\n{MINIMAL}"
    ))
    .unwrap_err();
    assert!(err.to_string().contains("admin.listen"));
}

#[test]
fn the_shipped_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let c = Config::load(&path).unwrap();
    assert!(c.router.route("gpt-4o-mini").is_some());
}

#[test]
fn without_a_guardrails_section_the_builtin_policy_redacts_everything() {
    use ::guardrails::policy::Action;
    let c = parse(MINIMAL).unwrap();
    let policy = c.guardrails.policy(None).unwrap();
    assert_eq!(policy.name, "default");
    for t in ::guardrails::EntityType::ALL {
        assert_eq!(policy.request.action(t), Action::Redact, "{t}");
        assert_eq!(policy.response.action(t), Action::Redact, "{t}");
    }
    assert_eq!(policy.request.financial_advice, Action::Log);
    assert!(c.guardrails.policy(Some("missing")).is_none());
}

#[test]
fn guardrail_policies_are_validated_with_key_paths() {
    let text = format!(
        r#"{MINIMAL}
[guardrails]
default_policy = "nope"
stream_holdback_bytes = 0
[guardrails.policies.p.request]
default = "redact"
EMAIL = "pseudonymize"
CARD = "block"
FINANCIAL_ADVICE = "redact"
[guardrails.policies.p.response]
EMAIL = "pseudonymize"
PHONE = "shred"
"#
    );
    let err = parse(&text).unwrap_err().to_string();
    for expected in [
        "guardrails.default_policy: \"nope\" is not a policy; defined: default, p",
        "guardrails.stream_holdback_bytes: must be greater than 0",
        "guardrails.policies.p.request.CARD: unknown entity type",
        "guardrails.policies.p.request.FINANCIAL_ADVICE: FINANCIAL_ADVICE labels a whole text",
        "guardrails.policies.p.response.EMAIL: pseudonymize applies to requests only",
        "guardrails.policies.p.response.PHONE: unknown action \"shred\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn a_policy_lists_actions_per_direction() {
    use ::guardrails::policy::Action;
    use ::guardrails::EntityType;
    let text = format!(
        r#"{MINIMAL}
[guardrails]
default_policy = "p"
[guardrails.policies.p.request]
default = "log"
API_SECRET = "block"
[guardrails.policies.p.response]
FINANCIAL_ADVICE = "block"
"#
    );
    let c = parse(&text).unwrap();
    let p = c.guardrails.policy(None).unwrap();
    assert_eq!(p.name, "p");
    assert_eq!(p.request.action(EntityType::ApiSecret), Action::Block);
    assert_eq!(p.request.action(EntityType::Email), Action::Log);
    assert_eq!(p.request.financial_advice, Action::Off);
    assert_eq!(p.response.action(EntityType::Email), Action::Off);
    assert_eq!(p.response.financial_advice, Action::Block);
    assert!(
        c.guardrails.has_policy("default"),
        "the built-in one stays available"
    );
}

#[test]
fn rule_packs_load_relative_to_the_config_and_report_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.toml"),
        "name = \"mine\"\n[[keywords]]\nid = \"k\"\nentity = \"CONFIDENTIAL\"\nwords = [\"project falcon\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "name = \"bad\"\n[[rules]]\nid = \"r\"\nentity = \"EMAIL\"\npattern = \"(\"\n",
    )
    .unwrap();
    let path = dir.path().join("config.toml");
    let ok = format!("{MINIMAL}\n[guardrails]\nrule_packs = [\"mine.toml\"]\n");
    let c = Config::from_toml(&ok, &path).unwrap();
    let found = c.guardrails.engine.scan("re: Project Falcon");
    assert_eq!(found.len(), 1);
    let bad = format!("{MINIMAL}\n[guardrails]\nrule_packs = [\"bad.toml\", \"missing.toml\"]\n");
    let err = Config::from_toml(&bad, &path).unwrap_err().to_string();
    assert!(
        err.contains("guardrails.rule_packs[0]") && err.contains("bad.toml"),
        "{err}"
    );
    assert!(
        err.contains("guardrails.rule_packs[1]") && err.contains("missing.toml"),
        "{err}"
    );
}

#[test]
fn an_in_memory_sqlite_database_cannot_keep_the_audit_trail() {
    let text = format!("{MINIMAL}\n[database]\nurl = \"sqlite::memory:\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("database.url") && err.contains("audit.enabled = false"),
        "{err}"
    );
    assert!(parse(&format!("{text}[audit]\nenabled = false\n")).is_ok());
}
