//! The canonical entity type names shared by config, findings, metrics and audit records.

use std::fmt;
use std::str::FromStr;

/// The sensitive-data types Portcullis detects, by canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityType {
    Email,
    Phone,
    UsSsn,
    CreditCard,
    Iban,
    UsBankRouting,
    BankAccount,
    SwiftBic,
    IpAddress,
    ApiSecret,
    Passport,
    DateOfBirth,
    InPan,
    InAadhaar,
    UkNino,
    CryptoWallet,
    Confidential,
}

impl EntityType {
    pub const ALL: [EntityType; 17] = [
        EntityType::Email,
        EntityType::Phone,
        EntityType::UsSsn,
        EntityType::CreditCard,
        EntityType::Iban,
        EntityType::UsBankRouting,
        EntityType::BankAccount,
        EntityType::SwiftBic,
        EntityType::IpAddress,
        EntityType::ApiSecret,
        EntityType::Passport,
        EntityType::DateOfBirth,
        EntityType::InPan,
        EntityType::InAadhaar,
        EntityType::UkNino,
        EntityType::CryptoWallet,
        EntityType::Confidential,
    ];

    /// The canonical name, e.g. `CREDIT_CARD`.
    pub fn name(self) -> &'static str {
        match self {
            EntityType::Email => "EMAIL",
            EntityType::Phone => "PHONE",
            EntityType::UsSsn => "US_SSN",
            EntityType::CreditCard => "CREDIT_CARD",
            EntityType::Iban => "IBAN",
            EntityType::UsBankRouting => "US_BANK_ROUTING",
            EntityType::BankAccount => "BANK_ACCOUNT",
            EntityType::SwiftBic => "SWIFT_BIC",
            EntityType::IpAddress => "IP_ADDRESS",
            EntityType::ApiSecret => "API_SECRET",
            EntityType::Passport => "PASSPORT",
            EntityType::DateOfBirth => "DATE_OF_BIRTH",
            EntityType::InPan => "IN_PAN",
            EntityType::InAadhaar => "IN_AADHAAR",
            EntityType::UkNino => "UK_NINO",
            EntityType::CryptoWallet => "CRYPTO_WALLET",
            EntityType::Confidential => "CONFIDENTIAL",
        }
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEntityType(pub String);

impl fmt::Display for UnknownEntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown entity type {:?}; known types: ", self.0)?;
        let names: Vec<&str> = EntityType::ALL.iter().map(|t| t.name()).collect();
        f.write_str(&names.join(", "))
    }
}

impl std::error::Error for UnknownEntityType {}

impl FromStr for EntityType {
    type Err = UnknownEntityType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownEntityType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names: Vec<&str> = EntityType::ALL.iter().map(|t| t.name()).collect();
        for t in EntityType::ALL {
            assert_eq!(t.name().parse::<EntityType>(), Ok(t));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EntityType::ALL.len());
    }

    #[test]
    fn parsing_is_case_insensitive_and_errors_list_the_known_types() {
        assert_eq!(
            "credit_card".parse::<EntityType>(),
            Ok(EntityType::CreditCard)
        );
        let err = "CARD".parse::<EntityType>().unwrap_err().to_string();
        assert!(err.contains("CARD") && err.contains("CREDIT_CARD"), "{err}");
    }
}
