//! The durable store survives SIGKILL in the middle of writes: every acknowledged write is
//! there after reopening, nothing half-written is, and the indexes are consistent.
//!
//! The test re-executes its own binary as a child (`MESH_REPL_KILL_CHILD=<file>`) that writes
//! in a loop and prints `ACK <index> <first-id> <count>` after each committed transaction.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use mesh_replication::{DurableStore, Index, Store, TableName, TxnOp, Value};

const CHILD_ENV: &str = "MESH_REPL_KILL_CHILD";

fn table() -> TableName {
    TableName::new("kill-test").unwrap_or_else(|e| panic!("{e}"))
}

/// The writer loop; runs only inside the child process.
#[test]
fn kill_child_writer() -> Result<(), Box<dyn Error>> {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = DurableStore::open(&path).await?;
        let mut out = std::io::stdout().lock();
        let mut next = store.list(&table()).await?.records.len() as u64;
        loop {
            // Transactions of 1 to 16 records with values of a few KiB, so the kill often
            // lands inside a commit.
            let count = 1 + next % 16;
            let ops = (next..next + count)
                .map(|n| TxnOp::Upsert {
                    table: table(),
                    id: format!("r{n:08}"),
                    value: Value::bytes(vec![(n % 251) as u8; 1024 + (n % 7) as usize * 512]),
                    cas: None,
                })
                .collect();
            let idx = store.txn(ops).await?;
            writeln!(out, "ACK {} {} {}", idx.0, next, count)?;
            out.flush()?;
            next += count;
        }
    })
}

#[test]
fn sigkill_mid_write_loses_nothing_acknowledged() -> Result<(), Box<dyn Error>> {
    if std::env::var(CHILD_ENV).is_ok() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kill.redb");
    let exe = std::env::current_exe()?;
    // id -> index at which its write was acknowledged
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    for round in 0..3u64 {
        let mut child = Command::new(&exe)
            .args([
                "kill_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let kill_after = 40 + round * 37;
        let mut seen = 0;
        while seen < kill_after {
            let Some(line) = lines.next() else {
                return Err("child ended before being killed".into());
            };
            let line = line?;
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ACK") {
                continue;
            }
            let nums: Vec<u64> = parts.map(str::parse).collect::<Result<_, _>>()?;
            let [idx, first, count] = nums[..] else {
                return Err(format!("bad line {line}").into());
            };
            for id in first..first + count {
                acked.insert(id, idx);
            }
            seen += 1;
        }
        // SIGKILL while the child is still writing.
        child.kill()?;
        child.wait()?;

        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async {
            let store = DurableStore::open(&path).await?;
            assert_eq!(store.verify().await?, vec![], "round {round}");
            let listing = store.list(&table()).await?;
            let by_id: BTreeMap<String, (Index, usize)> = listing
                .records
                .iter()
                .map(|r| {
                    (
                        r.id.clone(),
                        (r.modify_index, r.value.as_bytes().map_or(0, <[u8]>::len)),
                    )
                })
                .collect();
            for (id, idx) in &acked {
                let (m, len) = by_id
                    .get(&format!("r{id:08}"))
                    .copied()
                    .ok_or_else(|| format!("acknowledged record {id} lost in round {round}"))?;
                assert_eq!(m, Index(*idx), "record {id}");
                assert_eq!(len, 1024 + (*id % 7) as usize * 512);
            }
            // Written records form whole transactions: ids are contiguous from 0, and every
            // record beyond the acknowledged ones (committed, kill before the ACK) is whole.
            for (n, r) in listing.records.iter().enumerate() {
                assert_eq!(r.id, format!("r{n:08}"));
                assert_eq!(r.hash, r.value.content_hash());
            }
            let max_modify = listing
                .records
                .iter()
                .map(|r| r.modify_index)
                .max()
                .unwrap_or(Index::ZERO);
            assert_eq!(store.index(), max_modify, "index == max modify index");
            assert_eq!(listing.index, max_modify);
            Ok::<_, Box<dyn Error>>(())
        })?;
    }
    assert!(acked.len() > 100);
    Ok(())
}
