//! Blocking queries: hold a read until a table it depends on moves past the client's index,
//! woken by the store's table watch, bounded in time and in number.

use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;
use mesh::core::Index;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::ApiState;
use super::ctx::Ctx;
use super::error::ApiError;
use super::raw::table;

/// The current index of a set of tables: the largest table index, at least 1.
pub(crate) fn tables_index(state: &ApiState, tables: &[&'static str]) -> u64 {
    let store = state.dc().store();
    tables
        .iter()
        .filter_map(|t| table(t).ok())
        .map(|t| store.table_index(&t).0)
        .max()
        .unwrap_or(0)
        .max(1)
}

/// A slot among the bounded blocking queries, or Consul's 429.
pub(crate) fn permit(state: &ApiState) -> Result<OwnedSemaphorePermit, ApiError> {
    state.blocking.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RPC rate limit exceeded: too many concurrent blocking queries",
        )
    })
}

/// Waits until one of `tables` has an index above `after`, or `timeout`. Returns at once if
/// one already has.
pub(crate) async fn wait_tables(
    state: &ApiState,
    tables: &[&'static str],
    after: u64,
    timeout: Duration,
) -> Result<(), ApiError> {
    if tables_index(state, tables) > after {
        return Ok(());
    }
    let store = state.dc().store().clone();
    if let [only] = tables {
        store
            .wait_table(&table(only)?, Index(after), timeout)
            .await?;
        return Ok(());
    }
    let mut set = tokio::task::JoinSet::new();
    for t in tables {
        let store = store.clone();
        let name = table(t)?;
        set.spawn(async move { store.wait_table(&name, Index(after), timeout).await });
    }
    // The first table to move (or time out) answers; dropping the set stops the others.
    if let Some(Ok(r)) = set.join_next().await {
        r?;
    }
    Ok(())
}

/// Runs a read as a blocking query over `tables`: computes it, and if the client's
/// `?index=` is not behind the tables' index, waits (holding a blocking-query slot) until a
/// table moves past it or `?wait=` passes, then computes it again. Returns the answer and
/// the index to report (read before the answer was computed, so it never claims more than
/// the answer reflects).
pub(crate) async fn query<T, F, Fut>(
    state: &ApiState,
    ctx: &Ctx,
    tables: &[&'static str],
    mut compute: F,
) -> Result<(T, u64), ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let b = ctx.blocking(state)?;
    let index = tables_index(state, tables);
    if b.index == 0 || index > b.index {
        return Ok((compute().await?, index));
    }
    let _slot = permit(state)?;
    let deadline = Instant::now() + b.wait;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        wait_tables(state, tables, b.index, deadline - now).await?;
        if tables_index(state, tables) > b.index {
            break;
        }
    }
    let index = tables_index(state, tables);
    Ok((compute().await?, index))
}
