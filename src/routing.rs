//! Route phase: which provider serves a requested model. Routes are tried in config order and
//! the first match wins, so specific patterns go above catch-alls.

use std::sync::Arc;

use crate::providers::Provider;

/// A model name or a glob over model names: `*` matches any run of characters, `?` one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPattern(String);

impl ModelPattern {
    pub fn parse(pattern: &str) -> Result<ModelPattern, String> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err("must not be empty (use \"*\" to match every model)".into());
        }
        Ok(ModelPattern(pattern.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_exact(&self) -> bool {
        !self.0.contains(['*', '?'])
    }

    pub fn matches(&self, model: &str) -> bool {
        glob_match(self.0.as_bytes(), model.as_bytes())
    }
}

/// Iterative glob match with backtracking to the last `*`: linear in practice, no recursion.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[derive(Debug, Clone)]
pub struct Route {
    pub pattern: ModelPattern,
    pub provider: Arc<Provider>,
    /// The name sent upstream instead of the requested one (e.g. an alias → a dated snapshot).
    pub upstream_model: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        Router { routes }
    }

    pub fn route(&self, model: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.pattern.matches(model))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Model names a caller can list: the exact (non-glob) route patterns, in config order.
    pub fn listable_models(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(|r| r.pattern.is_exact())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> ModelPattern {
        ModelPattern::parse(p).unwrap()
    }

    #[test]
    fn exact_and_glob_patterns() {
        assert!(pat("gpt-4o").matches("gpt-4o"));
        assert!(!pat("gpt-4o").matches("gpt-4o-mini"));
        assert!(pat("gpt-4o*").matches("gpt-4o-mini"));
        assert!(pat("gpt-4o*").matches("gpt-4o"));
        assert!(!pat("gpt-4o*").matches("gpt-4"));
        assert!(pat("*").matches(""));
        assert!(pat("*").matches("anything"));
        assert!(pat("claude-?-haiku").matches("claude-3-haiku"));
        assert!(pat("*-mini").matches("o4-mini"));
        assert!(!pat("*-mini").matches("o4-mini-high"));
        assert!(pat("a*b*c").matches("aXXbYYbZc"));
        assert!(!pat("a*b*c").matches("aXXbYYbZ"));
    }

    #[test]
    fn empty_pattern_is_rejected() {
        assert!(ModelPattern::parse("  ").is_err());
    }

    #[test]
    fn exactness() {
        assert!(pat("gpt-4o").is_exact());
        assert!(!pat("gpt-*").is_exact());
    }
}
