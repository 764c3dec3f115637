//! A throwaway database on the real PostgreSQL server (127.0.0.1:5432 by default; override
//! with PORTCULLIS_TEST_POSTGRES_URL). Unreachable Postgres fails the test: never skipped.
#![allow(dead_code)]

use sqlx::Connection;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TempDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl TempDatabase {
    pub async fn create() -> TempDatabase {
        let admin_url = std::env::var("PORTCULLIS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
        let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs a PostgreSQL server at {admin_url} \
                 (set PORTCULLIS_TEST_POSTGRES_URL to another server): {e}"
                )
            });
        let name = format!(
            "portcullis_test_{}",
            portcullis::ids::new_id("db").unwrap().to_lowercase()
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("PORTCULLIS_TEST_POSTGRES_URL must end in /DATABASE");
        let url = format!("{base}/{name}");
        TempDatabase {
            admin_url,
            name,
            url,
        }
    }

    pub async fn drop_database(self) {
        let mut admin = sqlx::postgres::PgConnection::connect(&self.admin_url)
            .await
            .unwrap();
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
