-- Rate limits stored by `tenants set-limits` and `keys create --rpm …`. NULL: no limit of that
-- kind here; config.toml's [limits] defaults apply.
ALTER TABLE tenants ADD COLUMN rps BIGINT;
ALTER TABLE tenants ADD COLUMN rpm BIGINT;
ALTER TABLE tenants ADD COLUMN rph BIGINT;
ALTER TABLE tenants ADD COLUMN tpm BIGINT;
ALTER TABLE tenants ADD COLUMN max_concurrency BIGINT;
ALTER TABLE api_keys ADD COLUMN rps BIGINT;
ALTER TABLE api_keys ADD COLUMN rpm BIGINT;
ALTER TABLE api_keys ADD COLUMN rph BIGINT;
ALTER TABLE api_keys ADD COLUMN tpm BIGINT;
ALTER TABLE api_keys ADD COLUMN max_concurrency BIGINT;
