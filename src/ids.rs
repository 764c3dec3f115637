//! Random identifiers and secrets, always from the operating system's CSPRNG.

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

impl RandomError {
    pub fn code(&self) -> &'static str {
        "random_unavailable"
    }
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| RandomError(e.to_string()))?;
    Ok(buf)
}

/// Base62-encodes `bytes` as one big-endian number, left-padded with `0` to `width` characters
/// so that every encoding of N bytes has the same length.
pub fn base62(bytes: &[u8], width: usize) -> String {
    let mut digits: Vec<u8> = Vec::with_capacity(width);
    let mut number: Vec<u8> = bytes.to_vec();
    while number.iter().any(|&b| b != 0) {
        // Long division of the base-256 number by 62.
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        digits.push(BASE62[remainder as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

pub fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    // A table, not `format!`: every audit record hashes and prints three digests.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// A new object id like `key_3kTMd92Jf0aQ` (96 random bits).
pub fn new_id(prefix: &str) -> Result<String, RandomError> {
    Ok(format!("{prefix}_{}", base62(&random_bytes::<12>()?, 17)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn base62_is_fixed_width_and_correct() {
        assert_eq!(base62(&[0], 3), "000");
        assert_eq!(base62(&[61], 1), "z");
        assert_eq!(base62(&[62], 2), "10");
        assert_eq!(base62(&[1, 0], 2), "48"); // 256 = 4*62 + 8
        assert_eq!(base62(&[0xff; 32], 43).len(), 43);
        assert_eq!(base62(&[0; 32], 43).len(), 43);
    }

    #[test]
    fn ids_are_unique_and_prefixed() {
        let a = new_id("key").unwrap();
        let b = new_id("key").unwrap();
        assert!(a.starts_with("key_") && a.len() == 21);
        assert_ne!(a, b);
    }
}
