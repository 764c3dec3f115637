-- The guardrail policy (a name from [guardrails.policies] in config.toml) a tenant uses, and
-- the one a key overrides it with. NULL means: the tenant's, else guardrails.default_policy.
ALTER TABLE tenants ADD COLUMN guardrail_policy TEXT;
ALTER TABLE api_keys ADD COLUMN guardrail_policy TEXT;
