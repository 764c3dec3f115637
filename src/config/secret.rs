//! Secrets are written in config as references (`env:VAR`, `file:PATH`), never as literal
//! values, so a config file can be committed and shared without leaking anything.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
}

impl SecretRef {
    pub fn parse(value: &str) -> Result<SecretRef, String> {
        if let Some(var) = value.strip_prefix("env:") {
            if var.is_empty() {
                return Err("\"env:\" needs a variable name, e.g. \"env:OPENAI_API_KEY\"".into());
            }
            Ok(SecretRef::Env(var.to_string()))
        } else if let Some(path) = value.strip_prefix("file:") {
            if path.is_empty() {
                return Err("\"file:\" needs a path, e.g. \"file:/run/secrets/openai\"".into());
            }
            Ok(SecretRef::File(path.to_string()))
        } else {
            Err(
                "must be a secret reference: \"env:VARIABLE\" or \"file:/path\" \
                 (literal secrets are not accepted in config files)"
                    .into(),
            )
        }
    }

    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match self {
            SecretRef::Env(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {path}: {e}"))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(format!("{self} resolves to an empty value"));
        }
        Ok(Secret(value))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(v) => write!(f, "env:{v}"),
            SecretRef::File(p) => write!(f, "file:{p}"),
        }
    }
}

/// A resolved secret. `Debug` never prints the value, so it cannot leak through a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub fn from_test(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
