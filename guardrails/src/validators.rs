//! Checksum and structure validators: they turn "looks like a card number" into "is a card
//! number". Each takes the matched text (separators included) and says yes or no.

use sha2::{Digest, Sha256};
use tiny_keccak::{Hasher, Keccak};

/// The validators a rule can name in a pack (`validator = "luhn"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    Luhn,
    IbanMod97,
    AbaRouting,
    Verhoeff,
    UsSsn,
    UkNino,
    InPan,
    Ipv4,
    Ipv6,
    Base58Check,
    Bech32,
    Eip55,
    /// Any of the crypto address checks, chosen by the address's shape.
    CryptoAddress,
    /// 7 to 15 digits in all (E.164's maximum), for phone numbers.
    PhoneDigits,
    /// 8 to 17 digits in all, for bank account numbers.
    AccountDigits,
    /// The first two letters are an ISO 3166 country code at positions 5-6 (BIC structure).
    BicCountry,
    /// Holds an upper-case letter, a lower-case letter and a digit: random key material, not
    /// a hex digest, a word or a number.
    MixedCaseDigits,
}

impl Validator {
    pub fn from_name(name: &str) -> Option<Validator> {
        Some(match name {
            "luhn" => Validator::Luhn,
            "iban_mod97" => Validator::IbanMod97,
            "aba_routing" => Validator::AbaRouting,
            "verhoeff" => Validator::Verhoeff,
            "us_ssn" => Validator::UsSsn,
            "uk_nino" => Validator::UkNino,
            "in_pan" => Validator::InPan,
            "ipv4" => Validator::Ipv4,
            "ipv6" => Validator::Ipv6,
            "base58check" => Validator::Base58Check,
            "bech32" => Validator::Bech32,
            "eip55" => Validator::Eip55,
            "crypto_address" => Validator::CryptoAddress,
            "bic_country" => Validator::BicCountry,
            "phone_digits" => Validator::PhoneDigits,
            "account_digits" => Validator::AccountDigits,
            "mixed_case_digits" => Validator::MixedCaseDigits,
            _ => return None,
        })
    }

    pub const NAMES: &'static str = "luhn, iban_mod97, aba_routing, verhoeff, us_ssn, uk_nino, \
        in_pan, ipv4, ipv6, base58check, bech32, eip55, crypto_address, bic_country, phone_digits, account_digits, mixed_case_digits";

    pub fn check(self, value: &str) -> bool {
        match self {
            Validator::Luhn => luhn(value),
            Validator::IbanMod97 => iban(value),
            Validator::AbaRouting => aba_routing(value),
            Validator::Verhoeff => aadhaar(value),
            Validator::UsSsn => us_ssn(value),
            Validator::UkNino => uk_nino(value),
            Validator::InPan => in_pan(value),
            Validator::Ipv4 => value.parse::<std::net::Ipv4Addr>().is_ok(),
            Validator::Ipv6 => ipv6(value),
            Validator::Base58Check => base58check(value),
            Validator::Bech32 => bech32(value),
            Validator::Eip55 => eip55(value),
            Validator::CryptoAddress => crypto_address(value),
            Validator::BicCountry => bic_country(value),
            Validator::PhoneDigits => (7..=15).contains(&digits(value).len()),
            Validator::AccountDigits => (8..=17).contains(&digits(value).len()),
            Validator::MixedCaseDigits => mixed_case_digits(value),
        }
    }
}

/// Upper case, lower case and digits all present.
pub fn mixed_case_digits(value: &str) -> bool {
    value.bytes().any(|b| b.is_ascii_uppercase())
        && value.bytes().any(|b| b.is_ascii_lowercase())
        && value.bytes().any(|b| b.is_ascii_digit())
}

fn digits(value: &str) -> Vec<u32> {
    value.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// Luhn mod-10 (payment cards), over the digits, separators ignored.
pub fn luhn(value: &str) -> bool {
    let d = digits(value);
    if d.len() < 13 {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum % 10 == 0
}

/// IBAN length per country (ISO 13616 registry), for the countries it is checked against.
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AE" => 23,
        "AL" => 28,
        "AT" => 20,
        "AZ" => 28,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "CH" => 21,
        "CR" => 22,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "DO" => 28,
        "EE" => 20,
        "EG" => 29,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GE" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "GT" => 28,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IS" => 26,
        "IT" => 27,
        "JO" => 30,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MD" => 24,
        "ME" => 22,
        "MK" => 19,
        "MR" => 27,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PS" => 29,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VG" => 24,
        "XK" => 20,
        _ => return None,
    })
}

/// IBAN: known country, its length, and the ISO 7064 mod-97 check.
pub fn iban(value: &str) -> bool {
    let compact: Vec<char> = value
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if compact.len() < 15 || !compact.iter().all(char::is_ascii_alphanumeric) {
        return false;
    }
    let country: String = compact[..2].iter().collect();
    if iban_length(&country) != Some(compact.len()) {
        return false;
    }
    let rearranged = compact[4..].iter().chain(compact[..4].iter());
    let mut rem: u32 = 0;
    for c in rearranged {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// ABA routing number: 9 digits, a Federal Reserve prefix, and the 3-7-1 weighted checksum.
pub fn aba_routing(value: &str) -> bool {
    let d = digits(value);
    if d.len() != 9 {
        return false;
    }
    let prefix = d[0] * 10 + d[1];
    let valid_prefix = matches!(prefix, 0..=12 | 21..=32 | 61..=72 | 80);
    let sum = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8]);
    valid_prefix && sum % 10 == 0 && d.iter().any(|x| *x != 0)
}

const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// The Verhoeff check over a digit string (check digit last).
pub fn verhoeff(d: &[u32]) -> bool {
    let mut c: u8 = 0;
    for (i, &x) in d.iter().rev().enumerate() {
        c = VERHOEFF_D[c as usize][VERHOEFF_P[i % 8][x as usize] as usize];
    }
    c == 0
}

/// Aadhaar: 12 digits, first 2-9, Verhoeff valid.
pub fn aadhaar(value: &str) -> bool {
    let d = digits(value);
    d.len() == 12 && d[0] >= 2 && verhoeff(&d)
}

/// US SSN: area not 000, 666 or 9xx; group not 00; serial not 0000.
pub fn us_ssn(value: &str) -> bool {
    let d = digits(value);
    if d.len() != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// UK National Insurance number: valid prefix letters, six digits, suffix A-D.
pub fn uk_nino(value: &str) -> bool {
    let c: Vec<char> = value
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if c.len() != 9 {
        return false;
    }
    let (a, b) = (c[0], c[1]);
    if "DFIQUV".contains(a) || "DFIOQUV".contains(b) {
        return false;
    }
    let prefix: String = [a, b].iter().collect();
    if ["BG", "GB", "KN", "NK", "NT", "TN", "ZZ"].contains(&prefix.as_str()) {
        return false;
    }
    c[2..8].iter().all(char::is_ascii_digit) && "ABCD".contains(c[8])
}

/// Indian PAN: 5 letters, 4 digits, a letter; the 4th letter is a holder type.
pub fn in_pan(value: &str) -> bool {
    let c: Vec<char> = value.chars().collect();
    c.len() == 10
        && c[..5].iter().all(char::is_ascii_uppercase)
        && c[5..9].iter().all(char::is_ascii_digit)
        && c[9].is_ascii_uppercase()
        && "PCHFATBLJG".contains(c[3])
}

/// IPv6: parses, and is not a bare `::`-style fragment of a time or a hash.
pub fn ipv6(value: &str) -> bool {
    value.parse::<std::net::Ipv6Addr>().is_ok() && value.matches(':').count() >= 2
}

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Base58Check (BTC P2PKH / P2SH): decodes to 25 bytes whose last 4 are the double-SHA-256
/// checksum of the first 21.
pub fn base58check(value: &str) -> bool {
    let mut bytes: Vec<u8> = Vec::with_capacity(32);
    for ch in value.bytes() {
        let Some(mut carry) = BASE58.iter().position(|b| *b == ch).map(|p| p as u32) else {
            return false;
        };
        for b in bytes.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = value.bytes().take_while(|b| *b == b'1').count();
    let mut full = vec![0u8; zeros];
    full.extend(bytes);
    if full.len() != 25 {
        return false;
    }
    let first = Sha256::digest(&full[..21]);
    let second = Sha256::digest(first);
    second[..4] == full[21..]
}

const BECH32_CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn bech32_polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(*v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// bech32 (BIP-173, witness v0) or bech32m (BIP-350, v1+) segwit address.
pub fn bech32(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    if lower != value && value.to_ascii_uppercase() != value {
        return false;
    }
    let Some(sep) = lower.rfind('1') else {
        return false;
    };
    let (hrp, data) = (&lower[..sep], &lower[sep + 1..]);
    if hrp.is_empty() || data.len() < 6 {
        return false;
    }
    let mut values: Vec<u8> = Vec::with_capacity(hrp.len() * 2 + 1 + data.len());
    values.extend(hrp.bytes().map(|b| b >> 5));
    values.push(0);
    values.extend(hrp.bytes().map(|b| b & 31));
    let mut words = Vec::with_capacity(data.len());
    for b in data.bytes() {
        match BECH32_CHARSET.iter().position(|c| *c == b) {
            Some(p) => words.push(p as u8),
            None => return false,
        }
    }
    values.extend(&words);
    let polymod = bech32_polymod(&values);
    match words.first() {
        Some(0) => polymod == 1,
        Some(_) => polymod == 0x2bc8_30a3,
        None => false,
    }
}

fn keccak256(data: &[u8]) -> [u8; 32] {
    let mut k = Keccak::v256();
    k.update(data);
    let mut out = [0u8; 32];
    k.finalize(&mut out);
    out
}

/// Ethereum address: 0x + 40 hex; all lower / all upper, or a valid EIP-55 mixed-case checksum.
pub fn eip55(value: &str) -> bool {
    let Some(hex) = value.strip_prefix("0x") else {
        return false;
    };
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    if !(has_lower && has_upper) {
        return true;
    }
    let hash = keccak256(hex.to_ascii_lowercase().as_bytes());
    hex.bytes().enumerate().all(|(i, b)| {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        if b.is_ascii_alphabetic() {
            b.is_ascii_uppercase() == (nibble >= 8)
        } else {
            true
        }
    })
}

pub fn crypto_address(value: &str) -> bool {
    if value.starts_with("0x") {
        eip55(value)
    } else if value.to_ascii_lowercase().starts_with("bc1") {
        bech32(value)
    } else {
        base58check(value)
    }
}

/// ISO 3166-1 alpha-2 codes (for BIC positions 5-6).
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI \
BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ \
GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN \
KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS \
MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT \
PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF \
TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA \
ZM ZW";

pub fn bic_country(value: &str) -> bool {
    value.len() >= 6 && value.is_char_boundary(6) && COUNTRIES.split(' ').any(|c| c == &value[4..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_cards() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(luhn("378282246310005"));
        assert!(luhn("5555-5555-5555-4444"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(!luhn("1234"));
    }

    #[test]
    fn ibans() {
        assert!(iban("DE89 3704 0044 0532 0130 00"));
        assert!(iban("GB29NWBK60161331926819"));
        assert!(iban("FR1420041010050500013M02606"));
        assert!(!iban("DE89 3704 0044 0532 0130 01"));
        assert!(!iban("XX89 3704 0044 0532 0130 00"));
        assert!(!iban("DE89 3704 0044 0532 0130"), "wrong length");
    }

    #[test]
    fn routing_numbers() {
        assert!(aba_routing("011000015"));
        assert!(aba_routing("121000358"));
        assert!(!aba_routing("121000359"));
        assert!(!aba_routing("500000005"), "not a Fed prefix");
    }

    #[test]
    fn aadhaar_verhoeff() {
        assert!(verhoeff(&digits("2363")));
        assert!(!verhoeff(&digits("2364")));
        assert!(aadhaar("2345 6789 0124") == verhoeff(&digits("234567890124")));
        assert!(!aadhaar("1234 5678 9012"), "first digit 1");
    }

    #[test]
    fn ssn_nino_pan() {
        assert!(us_ssn("123-45-6789"));
        assert!(!us_ssn("666-45-6789"));
        assert!(!us_ssn("900-45-6789"));
        assert!(!us_ssn("123-00-6789"));
        assert!(!us_ssn("123-45-0000"));
        assert!(uk_nino("AB 12 34 56 C"));
        assert!(!uk_nino("QQ123456C"));
        assert!(!uk_nino("GB123456A"));
        assert!(!uk_nino("AB123456E"));
        assert!(in_pan("ABCPE1234F"));
        assert!(!in_pan("ABCXE1234F"));
    }

    #[test]
    fn crypto() {
        assert!(base58check("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"));
        assert!(base58check("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"));
        assert!(!base58check("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb"));
        assert!(bech32("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"));
        assert!(bech32(
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"
        ));
        assert!(!bech32("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5"));
        assert!(eip55("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"));
        assert!(!eip55("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"));
        assert!(eip55("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"));
    }

    #[test]
    fn key_material_mixes_cases_and_digits() {
        // The AWS documentation's example secret key.
        assert!(mixed_case_digits(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        ));
        assert!(!mixed_case_digits(
            "c829c0498942702cbb0e594855a5ea28766423fc"
        ));
        assert!(!mixed_case_digits(
            "ABSOLUTELYNOTAKEYATALLJUSTUPPERCASEWORDS"
        ));
    }

    #[test]
    fn ips_and_bics() {
        assert!(Validator::Ipv4.check("192.168.1.20"));
        assert!(!Validator::Ipv4.check("256.1.1.1"));
        assert!(ipv6("fe80::1ff:fe23:4567:890a"));
        assert!(!ipv6("12:30"));
        assert!(bic_country("DEUTDEFF"));
        assert!(!bic_country("ABCDQQ12"), "QQ is not a country");
    }
}
