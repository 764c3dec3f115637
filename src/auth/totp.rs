//! Time-based one-time passwords (TOTP, RFC 6238) for administrators' second factor, and the
//! single-use recovery codes that stand in for a lost authenticator.
//!
//! The parameters are the ones every authenticator app supports without being told: HMAC-SHA-1,
//! 6 digits, 30-second steps. A code is accepted for its own step and one step either side, to
//! tolerate clock drift between the server and the phone. Replay protection is the caller's
//! job to store: [`verify`] returns the step it matched, the caller saves it, and passes it back
//! as `last_used_step` next time so that no step at or before it is accepted again.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::RandomError;

/// Digits in a code.
pub const DIGITS: u32 = 6;
/// Seconds in a time step.
pub const STEP_SECONDS: u64 = 30;
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// Bytes in a TOTP secret: 160 bits, the length RFC 4226 (section 4, R6) recommends and the
/// output length of SHA-1.
const SECRET_BYTES: usize = 20;

/// Steps accepted on either side of the current one (clock drift).
const DRIFT_STEPS: u64 = 1;

/// Recovery-code alphabet: exactly 32 characters, so `byte % 32` is unbiased (256 is a multiple
/// of 32). It leaves out `i`, `l`, `o` and `1`, which are easily confused when read aloud or
/// copied from paper; `0` stays in (to reach 32), and [`normalize_recovery_code`] reads a typed
/// `o` as `0`.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz023456789";

/// Characters in each half of a recovery code (`xxxxx-xxxxx`).
const RECOVERY_HALF: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("cannot draw the QR code: {0}")]
    Qr(String),
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl TotpError {
    pub fn code(&self) -> &'static str {
        match self {
            TotpError::Qr(_) => "qr_failed",
            TotpError::Random(e) => e.code(),
        }
    }
}

/// A new random TOTP secret (160 bits).
pub fn generate_secret() -> Result<Vec<u8>, RandomError> {
    Ok(crate::ids::random_bytes::<SECRET_BYTES>()?.to_vec())
}

/// The secret as authenticator apps expect it typed in or carried in an `otpauth://` URI:
/// RFC 4648 base32, upper case, without `=` padding.
pub fn encode_secret(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// Reads a base32 secret. Lenient about what people do when copying one by hand: spaces,
/// lower case and trailing `=` padding are accepted. `None` if it is not base32 or is empty.
pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_end_matches('=')
        .to_ascii_uppercase();
    if cleaned.is_empty() {
        return None;
    }
    BASE32_NOPAD.decode(cleaned.as_bytes()).ok()
}

/// The HOTP value (RFC 4226) of `secret` at counter `step`: HMAC-SHA-1 of the counter as 8
/// big-endian bytes, dynamic truncation to 31 bits, modulo 10^6.
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail; should it
    // ever, return a value with more than 6 digits, which no submitted code can equal.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return u32::MAX;
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    // Dynamic truncation (RFC 4226 section 5.3): the low 4 bits of the last byte pick an offset
    // (0..=15); the 4 bytes there, top bit cleared, are the number. 15 + 3 < 20: in bounds.
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let number = (u32::from(digest[offset] & 0x7f) << 24)
        | (u32::from(digest[offset + 1]) << 16)
        | (u32::from(digest[offset + 2]) << 8)
        | u32::from(digest[offset + 3]);
    number % 10u32.pow(DIGITS)
}

/// The TOTP time step that `unix_seconds` falls in (T0 = 0).
pub fn step_of(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// Checks a submitted code against the steps around `unix_seconds` and returns the step it
/// matched, which the caller must store and pass back as `last_used_step` next time. `None`:
/// malformed, wrong, too old, or already used.
///
/// The code must be exactly 6 ASCII digits once whitespace is removed (apps show "123 456").
/// Steps at or before `last_used_step` are never accepted, so a code cannot be used twice and
/// an older code cannot be used after a newer one.
pub fn verify(
    secret: &[u8],
    code: &str,
    unix_seconds: u64,
    last_used_step: Option<u64>,
) -> Option<u64> {
    let submitted: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if submitted.len() != DIGITS as usize || !submitted.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }

    let current = step_of(unix_seconds);
    let first = current.saturating_sub(DRIFT_STEPS);
    let last = current.saturating_add(DRIFT_STEPS);
    let mut matched = None;
    for step in first..=last {
        if last_used_step.is_some_and(|used| step <= used) {
            continue;
        }
        let expected = format_code(code_at(secret, step));
        // Constant time, so timing does not reveal how many leading digits were right.
        if bool::from(expected.as_bytes().ct_eq(submitted.as_bytes())) {
            // Keep the latest step that matches: if two steps share a code (1 in 10^6), storing
            // the later one still blocks every reuse of it.
            matched = Some(step);
        }
    }
    matched
}

/// A code as the app shows it: zero-padded to 6 digits.
fn format_code(code: u32) -> String {
    format!("{code:0width$}", width = DIGITS as usize)
}

/// The Key Uri Format URI an authenticator app reads from the enrolment QR code:
/// `otpauth://totp/Issuer:account?secret=…&issuer=Issuer&algorithm=SHA1&digits=6&period=30`.
/// The issuer appears both as the label prefix and as the `issuer` parameter, as the format
/// recommends for compatibility with older and newer apps.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let issuer = percent_encode(issuer);
    // The ':' between issuer and account stays literal (it is the separator); any ':' inside
    // either part is encoded, so the label stays unambiguous.
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        account = percent_encode(account),
        secret = encode_secret(secret),
    )
}

/// Percent-encodes every byte except RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
/// Stricter than needed in places, which is always safe: apps decode whatever is encoded.
fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// The URI as an SVG QR code (at least 200x200), black on white for reliable scanning.
pub fn qr_svg(uri: &str) -> Result<String, TotpError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| TotpError::Qr(e.to_string()))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build())
}

/// New recovery codes, shown once to the administrator: `RECOVERY_CODES` codes of 10
/// characters from a 32-character alphabet (50 bits each), formatted `xxxxx-xxxxx`.
pub fn generate_recovery_codes() -> Result<Vec<String>, RandomError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    while codes.len() < RECOVERY_CODES {
        let bytes = crate::ids::random_bytes::<{ 2 * RECOVERY_HALF }>()?;
        let mut code = String::with_capacity(2 * RECOVERY_HALF + 1);
        for (i, b) in bytes.iter().enumerate() {
            if i == RECOVERY_HALF {
                code.push('-');
            }
            // Unbiased: the alphabet has 32 characters and 256 = 8 * 32.
            code.push(char::from(RECOVERY_ALPHABET[usize::from(b % 32)]));
        }
        // A repeat is astronomically unlikely at 50 bits, but two equal codes would be one
        // code in practice; draw again rather than hand out fewer.
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    Ok(codes)
}

/// A recovery code as stored and compared: lower case, without spaces or dashes, with a typed
/// `o` read as `0` (the alphabet has no `o`).
pub fn normalize_recovery_code(input: &str) -> String {
    input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            other => other,
        })
        .collect()
}

/// The stored form of a recovery code: lower-case hex SHA-256 of the normalized code.
///
/// A fast hash is enough here, the same reasoning as for API keys (also SHA-256): each code has
/// 50 random bits, is usable once, and guesses online are capped by the login-failure counters.
/// A slow hash like bcrypt protects low-entropy human passwords from offline guessing; it
/// would add nothing against 2^50 random codes but cost ten bcrypt runs per recovery attempt.
pub fn hash_recovery_code(code: &str) -> String {
    let digest = Sha256::digest(normalize_recovery_code(code).as_bytes());
    crate::ids::hex(&digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The RFC 4226 / RFC 6238 SHA-1 test secret.
    const SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_sha1_vectors_truncated_to_six_digits() {
        let vectors: [(u64, &str); 6] = [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ];
        for (t, expected) in vectors {
            assert_eq!(
                format_code(code_at(SECRET, step_of(t))),
                expected,
                "t = {t}"
            );
        }
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        let expected: [u32; 10] = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, value) in expected.iter().enumerate() {
            assert_eq!(
                code_at(SECRET, counter as u64),
                *value,
                "counter = {counter}"
            );
        }
    }

    #[test]
    fn step_boundaries() {
        assert_eq!(step_of(0), 0);
        assert_eq!(step_of(29), 0);
        assert_eq!(step_of(30), 1);
        assert_eq!(step_of(59), 1);
        assert_eq!(step_of(60), 2);
    }

    // 160 s is step 5; the HOTP values around it are 3: 969429, 4: 338314, 5: 254676,
    // 6: 287922, 7: 162583.
    const NOW: u64 = 160;

    #[test]
    fn verify_accepts_current_previous_and_next_step() {
        assert_eq!(verify(SECRET, "254676", NOW, None), Some(5));
        assert_eq!(verify(SECRET, "338314", NOW, None), Some(4));
        assert_eq!(verify(SECRET, "287922", NOW, None), Some(6));
    }

    #[test]
    fn verify_rejects_codes_two_steps_away() {
        assert_eq!(verify(SECRET, "969429", NOW, None), None);
        assert_eq!(verify(SECRET, "162583", NOW, None), None);
    }

    #[test]
    fn verify_rejects_wrong_and_malformed_codes() {
        assert_eq!(verify(SECRET, "000000", NOW, None), None);
        assert_eq!(verify(SECRET, "254677", NOW, None), None);
        assert_eq!(verify(SECRET, "25467", NOW, None), None);
        assert_eq!(verify(SECRET, "2546760", NOW, None), None);
        assert_eq!(verify(SECRET, "25467a", NOW, None), None);
        assert_eq!(verify(SECRET, "+54676", NOW, None), None);
        assert_eq!(verify(SECRET, "", NOW, None), None);
        // Full-width digits are not ASCII digits.
        assert_eq!(verify(SECRET, "２５４６７６", NOW, None), None);
        // A different secret's code.
        assert_eq!(verify(b"another secret, 20 b", "254676", NOW, None), None);
    }

    #[test]
    fn verify_accepts_spacing() {
        assert_eq!(verify(SECRET, "287 082", 59, None), Some(1));
        assert_eq!(verify(SECRET, " 287082\n", 59, None), Some(1));
        assert_eq!(verify(SECRET, "254 676", NOW, None), Some(5));
    }

    #[test]
    fn verify_at_step_zero_has_no_previous_step() {
        assert_eq!(verify(SECRET, "755224", 10, None), Some(0));
        assert_eq!(verify(SECRET, "287082", 10, None), Some(1));
        assert_eq!(verify(SECRET, "755224", 10, Some(0)), None);
    }

    #[test]
    fn verify_refuses_replay_and_older_codes() {
        let used = verify(SECRET, "254676", NOW, None);
        assert_eq!(used, Some(5));
        // The same code again.
        assert_eq!(verify(SECRET, "254676", NOW, used), None);
        // The previous step's code after a newer one was used.
        assert_eq!(verify(SECRET, "338314", NOW, used), None);
        // The next step's code is still new.
        assert_eq!(verify(SECRET, "287922", NOW, used), Some(6));
        // And once it is used, so is everything before it.
        assert_eq!(verify(SECRET, "287922", NOW, Some(6)), None);
        assert_eq!(verify(SECRET, "254676", NOW, Some(6)), None);
    }

    #[test]
    fn generated_secrets_are_160_bits_and_differ() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
    }

    #[test]
    fn base32_round_trip() {
        assert_eq!(encode_secret(SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            decode_secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").as_deref(),
            Some(SECRET)
        );
        let secret = generate_secret().unwrap();
        assert_eq!(decode_secret(&encode_secret(&secret)), Some(secret.clone()));
        // Lenient about how people copy it.
        let typed = encode_secret(&secret).to_ascii_lowercase();
        assert_eq!(decode_secret(&format!(" {typed}  ")), Some(secret));
        assert_eq!(
            decode_secret("GEZDGNBV GY3TQOJQ"),
            decode_secret("GEZDGNBVGY3TQOJQ")
        );
        // Not base32 (1 and 8 are not in the alphabet), or empty.
        assert_eq!(decode_secret("GEZDGNB1"), None);
        assert_eq!(decode_secret("GEZDGNB8"), None);
        assert_eq!(decode_secret(""), None);
        assert_eq!(decode_secret("   "), None);
    }

    #[test]
    fn otpauth_uri_is_exact() {
        assert_eq!(
            otpauth_uri("Portcullis", "ann@bank.example", SECRET),
            "otpauth://totp/Portcullis:ann%40bank.example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Portcullis&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("Az09-._~"), "Az09-._~");
        assert_eq!(percent_encode("a b:c@d/e?f&g"), "a%20b%3Ac%40d%2Fe%3Ff%26g");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn qr_svg_draws_an_svg() {
        let svg = qr_svg(&otpauth_uri("Portcullis", "ann@bank.example", SECRET)).unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("<svg"));
        assert!(svg.contains(r##"fill="#000000""##));
        assert!(svg.contains(r##"fill="#ffffff""##));
        assert!(svg.len() > 1000, "only {} bytes", svg.len());
    }

    #[test]
    fn qr_svg_reports_data_too_long() {
        let err = qr_svg(&"x".repeat(10_000)).unwrap_err();
        assert_eq!(err.code(), "qr_failed");
    }

    #[test]
    fn recovery_codes_are_distinct_and_well_formed() {
        let codes = generate_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let distinct: HashSet<&String> = codes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        for code in &codes {
            assert_eq!(code.len(), 11, "{code}");
            assert_eq!(&code[5..6], "-", "{code}");
            for (i, b) in code.bytes().enumerate() {
                if i != 5 {
                    assert!(RECOVERY_ALPHABET.contains(&b), "{code}");
                }
            }
            // Already normalized apart from the dash.
            assert_eq!(normalize_recovery_code(code), code.replace('-', ""));
        }
        // A second batch is different.
        let again = generate_recovery_codes().unwrap();
        assert!(codes.iter().all(|c| !again.contains(c)));
    }

    #[test]
    fn recovery_alphabet_is_32_distinct_unambiguous_characters() {
        let distinct: HashSet<&u8> = RECOVERY_ALPHABET.iter().collect();
        assert_eq!(distinct.len(), 32);
        for confusable in [b'i', b'l', b'o', b'1'] {
            assert!(!RECOVERY_ALPHABET.contains(&confusable));
        }
    }

    #[test]
    fn recovery_codes_normalize() {
        assert_eq!(normalize_recovery_code("ABCDE-FGHJK "), "abcdefghjk");
        assert_eq!(normalize_recovery_code(" abcde fghjk"), "abcdefghjk");
        assert_eq!(normalize_recovery_code("O2345-o6789"), "0234506789");
    }

    #[test]
    fn recovery_code_hashes() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            hash_recovery_code("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hash_recovery_code("ABCDE-FGHJK "),
            hash_recovery_code("abcdefghjk")
        );
        assert_ne!(
            hash_recovery_code("abcde-fghjk"),
            hash_recovery_code("abcde-fghjm")
        );
    }

    #[test]
    fn error_codes() {
        assert_eq!(TotpError::Qr("x".into()).code(), "qr_failed");
    }
}
