//! The hash chain and its signatures.
//!
//! Each row's `hash` = SHA-256(`prev_hash` ‖ canonical fields), where the canonical form is
//! every stored field that is not content (content enters through `content_hash`), each
//! length-prefixed so no two different rows encode alike. The first row of a chain links to
//! [`GENESIS`]. Chain heads and checkpoints carry an HMAC-SHA-256 under `audit.signing_key`
//! over (chain, seq, hash, time), so the end of a chain cannot be cut off or rewritten
//! without the key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::ids::hex;

/// What the first row of every chain links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields a row's hash covers, as stored.
pub struct Link<'a> {
    pub id: &'a str,
    pub chain: &'a str,
    pub seq: i64,
    pub time: i64,
    pub kind: &'a str,
    pub tenant: &'a str,
    pub action: &'a str,
    pub actor: &'a str,
    pub status: i32,
    pub subject: Option<&'a str>,
    pub detail: &'a str,
    pub content_hash: Option<&'a str>,
}

impl Link<'_> {
    pub fn hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"portcullis-audit-v1");
        field(&mut h, Some(prev_hash.as_bytes()));
        field(&mut h, Some(self.id.as_bytes()));
        field(&mut h, Some(self.chain.as_bytes()));
        field(&mut h, Some(&self.seq.to_be_bytes()));
        field(&mut h, Some(&self.time.to_be_bytes()));
        field(&mut h, Some(self.kind.as_bytes()));
        field(&mut h, Some(self.tenant.as_bytes()));
        field(&mut h, Some(self.action.as_bytes()));
        field(&mut h, Some(self.actor.as_bytes()));
        field(&mut h, Some(&self.status.to_be_bytes()));
        field(&mut h, self.subject.map(str::as_bytes));
        field(&mut h, Some(self.detail.as_bytes()));
        field(&mut h, self.content_hash.map(str::as_bytes));
        hex(&h.finalize())
    }
}

/// Length-prefixed; an absent value is distinct from an empty one.
fn field(h: &mut Sha256, value: Option<&[u8]>) {
    match value {
        Some(bytes) => {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        None => h.update(u64::MAX.to_be_bytes()),
    }
}

pub fn content_hash(content: &str) -> String {
    hex(&Sha256::digest(content.as_bytes()))
}

/// Signs chain heads and checkpoints, and keys data-subject hashes. Without a key, heads and
/// checkpoints are unsigned (verification says so) and subjects are plain SHA-256.
#[derive(Clone, Default)]
pub struct Signer {
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.key.is_some() {
            "Signer(keyed)"
        } else {
            "Signer(none)"
        })
    }
}

impl Signer {
    pub fn new(key: Option<&Secret>) -> Signer {
        Signer {
            key: key.map(|k| k.expose().as_bytes().to_vec()),
        }
    }

    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// MAC of a chain head or checkpoint; `None` without a key.
    pub fn sign(&self, chain: &str, seq: i64, hash: &str, time: i64) -> Option<String> {
        let mut mac = self.mac()?;
        mac.update(b"portcullis-audit-head-v1");
        for part in [
            chain.as_bytes(),
            &seq.to_be_bytes(),
            hash.as_bytes(),
            &time.to_be_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        Some(hex(&mac.finalize().into_bytes()))
    }

    /// Whether `mac` is the signature of this head or checkpoint (constant time).
    pub fn verify(&self, chain: &str, seq: i64, hash: &str, time: i64, mac: &str) -> bool {
        use subtle::ConstantTimeEq;
        match self.sign(chain, seq, hash, time) {
            Some(expected) => expected.as_bytes().ct_eq(mac.as_bytes()).into(),
            None => false,
        }
    }

    /// The stored form of a data subject's identifier: never the identifier itself.
    pub fn subject(&self, id: &str) -> String {
        match self.mac() {
            Some(mut mac) => {
                mac.update(b"portcullis-audit-subject-v1");
                mac.update(id.as_bytes());
                hex(&mac.finalize().into_bytes())
            }
            None => {
                let mut h = Sha256::new();
                h.update(b"portcullis-audit-subject-v1");
                h.update(id.as_bytes());
                hex(&h.finalize())
            }
        }
    }

    fn mac(&self) -> Option<Hmac<Sha256>> {
        let key = self.key.as_ref()?;
        Hmac::<Sha256>::new_from_slice(key).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link<'a>(detail: &'a str, subject: Option<&'a str>) -> Link<'a> {
        Link {
            id: "req_1",
            chain: "acme:requests",
            seq: 1,
            time: 1_700_000_000_000,
            kind: "request",
            tenant: "acme",
            action: "request",
            actor: "pc_abc",
            status: 200,
            subject,
            detail,
            content_hash: None,
        }
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_hash() {
        let base = link("{}", None).hash(GENESIS);
        assert_eq!(base, link("{}", None).hash(GENESIS));
        assert_ne!(base, link("{ }", None).hash(GENESIS));
        assert_ne!(base, link("{}", Some("")).hash(GENESIS));
        assert_ne!(base, link("{}", None).hash(&base));
        let mut moved = link("{}", None);
        moved.seq = 2;
        assert_ne!(base, moved.hash(GENESIS));
    }

    #[test]
    fn signatures_need_the_key() {
        let secret = Secret::from_test("0123456789abcdef0123456789abcdef");
        let signer = Signer::new(Some(&secret));
        let mac = signer.sign("acme:requests", 5, "ab", 7).unwrap();
        assert!(signer.verify("acme:requests", 5, "ab", 7, &mac));
        assert!(!signer.verify("acme:requests", 4, "ab", 7, &mac));
        assert!(Signer::new(None)
            .sign("acme:requests", 5, "ab", 7)
            .is_none());
        let other = Signer::new(Some(&Secret::from_test("another key, 32 bytes long......")));
        assert!(!other.verify("acme:requests", 5, "ab", 7, &mac));
        assert_ne!(signer.subject("alice"), Signer::new(None).subject("alice"));
    }
}
