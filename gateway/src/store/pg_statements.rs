//! Prepared statements, kept per connection: each worker thread of
//! [`super::postgres::PgRecords`] holds one connection, so the cache is the
//! thread's own. A statement sent as text costs a round trip and a parse on
//! the server each time; prepared once, it is only bound and executed.
//!
//! A statement prepared inside a transaction outlives it, committed or not
//! (protocol-level statements are not transactional), so the cache is
//! emptied only when its worker connects again.

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement};

/// Most statements kept per connection: the gateway has a few dozen, all
/// written in its source; past this the cache starts afresh.
pub const MAX_PREPARED_PER_CONNECTION: usize = 256;

thread_local! {
    static PREPARED: RefCell<HashMap<&'static str, Statement>> = RefCell::new(HashMap::new());
}

/// Forgets this thread's statements: its connection is new.
pub fn forget_prepared() {
    PREPARED.with(|p| p.borrow_mut().clear());
}

/// How many statements this thread keeps.
#[cfg(test)]
fn prepared_count() -> usize {
    PREPARED.with(|p| p.borrow().len())
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The queries of [`GenericClient`] on statements prepared once per
/// connection. Only for SQL written in the source (`&'static str`).
pub trait Prepared: GenericClient {
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = PREPARED.with(|p| p.borrow().get(sql).cloned()) {
            return Ok(statement);
        }
        let statement = self.prepare(sql)?;
        PREPARED.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() >= MAX_PREPARED_PER_CONNECTION {
                p.clear();
            }
            p.insert(sql, statement.clone());
        });
        Ok(statement)
    }

    fn execute_prepared(
        &mut self,
        sql: &'static str,
        params: Params,
    ) -> Result<u64, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.execute(&statement, params)
    }

    fn query_prepared(
        &mut self,
        sql: &'static str,
        params: Params,
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.query(&statement, params)
    }

    fn query_one_prepared(
        &mut self,
        sql: &'static str,
        params: Params,
    ) -> Result<Row, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.query_one(&statement, params)
    }

    fn query_opt_prepared(
        &mut self,
        sql: &'static str,
        params: Params,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.query_opt(&statement, params)
    }
}

impl<C: GenericClient> Prepared for C {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::test_postgres::TestPostgres;

    #[test]
    fn a_statement_is_prepared_once_survives_a_rollback_and_the_cache_is_bounded() {
        let pg = TestPostgres::start("");
        let mut client = postgres::Client::connect(&pg.url(), postgres::NoTls).unwrap();
        forget_prepared();
        let sql = "SELECT $1::int + 1";
        client.prepared(sql).unwrap();
        client.prepared(sql).unwrap();
        assert_eq!(prepared_count(), 1, "kept, not prepared again");

        // Prepared in a transaction that rolls back, it stays usable.
        let mut tx = client.transaction().unwrap();
        tx.query_one_prepared("SELECT $1::int * 2", &[&21i32])
            .unwrap();
        tx.rollback().unwrap();
        let row = client
            .query_one_prepared("SELECT $1::int * 2", &[&21i32])
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);

        // At the limit the cache starts afresh, and the statements still work.
        forget_prepared();
        for i in 0..MAX_PREPARED_PER_CONNECTION {
            let sql: &'static str = Box::leak(format!("SELECT {i}").into_boxed_str());
            client.prepared(sql).unwrap();
        }
        assert_eq!(prepared_count(), MAX_PREPARED_PER_CONNECTION);
        let row = client.query_one_prepared(sql, &[&1i32]).unwrap();
        assert_eq!(row.get::<_, i32>(0), 2);
        assert_eq!(prepared_count(), 1);
    }
}
