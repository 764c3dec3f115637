// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Hand-written sentences, not from the evaluation sample: formats, languages and look-alikes
//! the rules must handle from their specification alone.

use guardrails::Engine;

fn found(engine: &Engine, text: &str) -> Vec<(String, String)> {
    engine
        .scan(text)
        .into_iter()
        .map(|f| {
            (
                f.entity.name().to_string(),
                text[f.start..f.end].to_string(),
            )
        })
        .collect()
}

#[test]
fn values_in_unseen_sentences() {
    let engine = Engine::builtin().unwrap();
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "Ruf mich an: +49 30 12345678 oder 030 1234567.",
            &[("PHONE", "+49 30 12345678"), ("PHONE", "030 1234567")],
        ),
        (
            "Call me at 555.867.5309 or +91-98765-43210 tomorrow.",
            &[("PHONE", "555.867.5309"), ("PHONE", "+91-98765-43210")],
        ),
        (
            "Geburtsdatum: 17. Mai 1990, Reisepass C01X00T47.",
            &[("DATE_OF_BIRTH", "17. Mai 1990"), ("PASSPORT", "C01X00T47")],
        ),
        (
            "DOB 1990/05/17; SSN 536-22-1942.",
            &[("DATE_OF_BIRTH", "1990/05/17"), ("US_SSN", "536-22-1942")],
        ),
        (
            "My account number is 000123456789 at Chase, routing 021000021.",
            &[("BANK_ACCOUNT", "000123456789"), ("US_BANK_ROUTING", "021000021")],
        ),
        (
            "Server logs: 10.12.0.5 -> 2001:db8::ff00:42:8329 failed at 12:30:45.",
            &[("IP_ADDRESS", "10.12.0.5"), ("IP_ADDRESS", "2001:db8::ff00:42:8329")],
        ),
        (
            "Pay with 3782 822463 10005 or 6011 1111 1111 1117, order #4111-2222-3333.",
            &[("CREDIT_CARD", "3782 822463 10005"), ("CREDIT_CARD", "6011 1111 1111 1117")],
        ),
        (
            "NI number QQ 12 34 56 C is the HMRC example; mine is AB 12 34 56 C.",
            &[("UK_NINO", "AB 12 34 56 C")],
        ),
        (
            "Send BTC to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT or 0x52908400098527886E0F7030069857D2E4169EE7.",
            &[
                ("CRYPTO_WALLET", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
                ("CRYPTO_WALLET", "0x52908400098527886E0F7030069857D2E4169EE7"),
            ],
        ),
        (
            "Mera aadhaar 2345 6789 0124 hai aur PAN ABCPE1234F.",
            &[("IN_AADHAAR", "2345 6789 0124"), ("IN_PAN", "ABCPE1234F")],
        ),
        (
            "Wire to DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX.",
            &[("IBAN", "DE89 3704 0044 0532 0130 00"), ("SWIFT_BIC", "COBADEFFXXX")],
        ),
        ("This memo is strictly confidential.", &[("CONFIDENTIAL", "strictly confidential")]),
        (
            "Date de naissance : 12/03/1980, passeport n° 18AB12345, tél. +33 6 12 34 56 78.",
            &[
                ("DATE_OF_BIRTH", "12/03/1980"),
                ("PASSPORT", "18AB12345"),
                ("PHONE", "+33 6 12 34 56 78"),
            ],
        ),
        (
            "Fecha de nacimiento: 3 de mayo de 1985. Mi pasaporte es PAB123456.",
            &[("DATE_OF_BIRTH", "3 de mayo de 1985"), ("PASSPORT", "PAB123456")],
        ),
        (
            "Meine Kontonummer lautet 1234567890, Passnummer C4J8K2L9M, Tel. +49 (0)30 1234 5678.",
            &[
                ("BANK_ACCOUNT", "1234567890"),
                ("PASSPORT", "C4J8K2L9M"),
                ("PHONE", "+49 (0)30 1234 5678"),
            ],
        ),
        (
            "Data de nascimento: 22/11/1979. Número da conta: 12345678-9.",
            &[("DATE_OF_BIRTH", "22/11/1979"), ("BANK_ACCOUNT", "12345678-9")],
        ),
        (
            "生年月日：1990年1月5日、パスポート番号：TK1234567",
            &[("DATE_OF_BIRTH", "1990年1月5日"), ("PASSPORT", "TK1234567")],
        ),
    ];
    for (text, expected) in cases {
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(t, v)| (t.to_string(), v.to_string()))
            .collect();
        assert_eq!(found(&engine, text), expected, "{text}");
    }
}

#[test]
fn look_alikes_in_unseen_sentences() {
    let engine = Engine::builtin().unwrap();
    for text in [
        "Version 2.4.10.3 released on 2024-01-15; build 1.2.3.4 is old.",
        "The meeting is at 4 pm, room 1204, ext. 5567. Budget was 1,250,000 EUR.",
        "Tracking 1Z999AA10123456784 and ZIP 94105-1234, invoice INV-2024-00042.",
        "Request id 3f2b8c1e-9a4d-4e6f-8b7a-2c1d0e9f8a7b took 1728391023 ms.",
        "Use the placeholder sk-... or ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX in docs.",
        "-----BEGIN PUBLIC KEY----- is safe to share.",
        "IMPORTANT: the TRANSACTION is PENDING.",
    ] {
        assert_eq!(found(&engine, text), vec![], "{text}");
    }
}

#[test]
fn financial_advice_in_unseen_phrasings() {
    let engine = Engine::builtin().unwrap();
    let cases = [
        ("I'm 35 with $50k in a savings account. Is now a good time for me to buy Bitcoin, or should I max out my Roth IRA first?", true),
        ("Based on what you told me, I'd recommend refinancing your mortgage now while rates are at 5.1% — you'd save about $300 a month.", true),
        ("Sollte ich meine Siemens-Aktien jetzt verkaufen oder halten? Ich brauche das Geld in zwei Jahren.", true),
        ("You should definitely put your whole bonus into TSLA calls before Friday's earnings.", true),
        ("Mujhe apna PPF band karke mutual fund mein SIP shuru karni chahiye kya? Meri salary 60k hai.", true),
        ("For tax purposes, should I claim my daughter as a dependent this year or let her file on her own?", true),
        ("What is the difference between a Roth IRA and a traditional IRA?", false),
        ("The Fed raised rates by 25 basis points on Wednesday, and the S&P 500 closed down 1.2%.", false),
        ("As an AI, I can't tell you which stocks to buy. Consider speaking to a fiduciary adviser.", false),
        ("Write a Python function that computes compound interest given principal, rate and years.", false),
        ("Can you translate this to Spanish: 'Invest 20% of your income in index funds.'", false),
        ("Diversification means spreading investments across asset classes to reduce risk.", false),
    ];
    for (text, expected) in cases {
        assert_eq!(engine.is_financial_advice(text), expected, "{text}");
    }
}

/// Labels decide which number is which: a value belongs to the label nearest before it, and in
/// a table to the column it sits in.
#[test]
fn nearest_labels_and_table_columns() {
    let engine = Engine::builtin().unwrap();
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "Kontonummer 1234567890, BLZ 37040044",
            &[("BANK_ACCOUNT", "1234567890")],
        ),
        (
            "My SSN is 536221942, my phone is 4155550132.",
            &[("US_SSN", "536221942"), ("PHONE", "4155550132")],
        ),
        (
            "DOB 01/02/1980, joined 03/04/2015, last login 2024-01-05",
            &[("DATE_OF_BIRTH", "01/02/1980")],
        ),
        (
            "name,dob,joined\nAsha,1990-01-01,2020-02-02",
            &[("DATE_OF_BIRTH", "1990-01-01")],
        ),
        (
            "checking account 72086638123-9113, savings account 12345678",
            &[
                ("BANK_ACCOUNT", "72086638123-9113"),
                ("BANK_ACCOUNT", "12345678"),
            ],
        ),
        (
            "aadhaar_no: 234567890124",
            &[("IN_AADHAAR", "234567890124")],
        ),
        (
            "Is K75RPPF9X a valid passport number?",
            &[("PASSPORT", "K75RPPF9X")],
        ),
        ("Is DEUTDEFF a valid BIC?", &[("SWIFT_BIC", "DEUTDEFF")]),
        (
            "aws secret key: k1lmKq0S1OQmOAtA7YXKyv0Tf0Y8bV2+zX6ylaOt",
            &[("API_SECRET", "k1lmKq0S1OQmOAtA7YXKyv0Tf0Y8bV2+zX6ylaOt")],
        ),
        (
            "Vous pouvez me joindre au +234 803 123 4567.",
            &[("PHONE", "+234 803 123 4567")],
        ),
    ];
    for (text, expected) in cases {
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(t, v)| (t.to_string(), v.to_string()))
            .collect();
        assert_eq!(found(&engine, text), expected, "{text}");
    }
    for text in [
        "Bank transfer REQUIRED before Friday.",
        "The role can't assume itself in account 580908625960.",
        "SNMP walk of 1.3.6.1.4.1.2021.10 failed.",
        "Full hash c829c0498942702cbb0e594855a5ea28766423fc, secret rotation pending.",
    ] {
        assert_eq!(found(&engine, text), vec![], "{text}");
    }
}
