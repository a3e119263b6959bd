//! Converting a log that earlier builds kept in one SQLite file, `<dir>.db` beside the log's directory: its
//! batches (the same bytes a batch frame holds) and committed offsets become the first segment, written under a
//! temporary name and renamed once flushed; the file is deleted once the log has opened from the segment. A file
//! still in the one-row-a-record layout of older builds is first converted to batches in place.

use super::recovery::agreed_partitions;
use super::segment::{self, Entry, Frames};
use super::{batch, io_error};
use crate::sqlite;
use chat4all_core::ports::{LogError, OutgoingRecord};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The SQLite layout's tables, so that a file of any earlier build reads as one of the last.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    topic TEXT NOT NULL, partition INTEGER NOT NULL,
    first_offset INTEGER NOT NULL, end_offset INTEGER NOT NULL, ts INTEGER NOT NULL,
    records BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
";

/// Stores a batch in the SQLite layout: topic, partition, first offset, end offset, append time (ms), blob.
const INSERT: &str = "INSERT INTO batches (topic, partition, first_offset, end_offset, ts, records)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The SQLite file of an earlier build's log kept in `dir`: `<dir>.db`.
fn file_beside(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".db");
    PathBuf::from(name)
}

/// Converts `<dir>.db`, if there is one and `dir` holds no segment yet; `requested` is the partition count asked
/// for, which the file's must match. Returns whether it converted one, to be removed once the log has opened.
pub(super) fn convert(dir: &Path, requested: Option<u32>) -> Result<bool, LogError> {
    let legacy = file_beside(dir);
    if !legacy.is_file() {
        return Ok(false);
    }
    let has_segments = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .any(|entry| entry.is_ok_and(|e| segment::number(&e.path()).is_some()));
    if has_segments {
        tracing::warn!(
            file = %legacy.display(),
            "this file is left from a build that kept the event log in SQLite; the segments beside it replaced it, \
             so it is not read (it can be deleted)"
        );
        return Ok(false);
    }
    let backend =
        |e: rusqlite::Error| LogError::Backend(format!("event log {}: {e}", legacy.display()));
    let mut conn = sqlite::open(&legacy).map_err(backend)?;
    conn.execute_batch(SCHEMA).map_err(backend)?;
    convert_one_row_a_record(&mut conn).map_err(backend)?;
    let stored: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'partitions'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    let stored = stored
        .map(|v| v.parse::<u32>())
        .transpose()
        .map_err(|_| LogError::Backend("the event log's partition count is corrupt".into()))?;
    let partitions = agreed_partitions(stored, requested)?;
    let partial = dir.join("conversion.partial");
    let batches = write_segment(&conn, partitions, &partial).map_err(|e| match e {
        Failure::Sqlite(e) => backend(e),
        Failure::Io(e) => io_error(&partial, e),
    })?;
    let first = segment::path(dir, 1);
    std::fs::rename(&partial, &first).map_err(|e| io_error(&first, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))?;
    tracing::info!(batches, from = %legacy.display(), "event log converted from SQLite to segments");
    Ok(true)
}

/// Deletes the SQLite file that [`convert`] converted, now that the log opened from its segment.
pub(super) fn remove_converted(dir: &Path) {
    let legacy = file_beside(dir);
    for suffix in ["", "-wal", "-shm"] {
        let mut path = legacy.clone().into_os_string();
        path.push(suffix);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %Path::new(&path).display(), error = %e, "cannot delete the converted event log's file");
        }
    }
}

enum Failure {
    Sqlite(rusqlite::Error),
    Io(std::io::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Writes segment 1 of the file's contents to `path`, flushed; returns how many batches it holds.
fn write_segment(conn: &Connection, partitions: u32, path: &Path) -> Result<usize, Failure> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut buffer = Vec::new();
    // A partition's end before its oldest batch kept: earlier ones were reclaimed.
    let mut ends: HashMap<String, Vec<u64>> = HashMap::new();
    let mut oldest = conn.prepare(
        "SELECT topic, partition, MIN(first_offset) FROM batches GROUP BY topic, partition",
    )?;
    for row in oldest.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (topic, partition, first) = row?;
        if partition < partitions {
            ends.entry(topic)
                .or_insert_with(|| vec![0; partitions as usize])[partition as usize] = first as u64;
        }
    }
    let mut offsets = conn.prepare("SELECT grp, topic, partition, next_offset FROM offsets")?;
    let mut commits = HashMap::new();
    for row in offsets.query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get::<_, u32>(2)?),
            r.get::<_, i64>(3)?,
        ))
    })? {
        let (key, next) = row?;
        if key.2 < partitions {
            commits.insert(key, next as u64);
        }
    }
    Frames::new(1, &mut buffer).push(&Entry::Checkpoint {
        partitions,
        ends: ends.iter().map(|(t, e)| (t.as_str(), e.clone())).collect(),
        commits: segment::commits_of(&commits),
    });
    out.write_all(&buffer)?;
    let mut select = conn.prepare(
        "SELECT topic, partition, first_offset, end_offset, ts, records FROM batches
         ORDER BY topic, partition, end_offset",
    )?;
    let mut rows = select.query([])?;
    let mut batches = 0;
    while let Some(row) = rows.next()? {
        let partition: u32 = row.get(1)?;
        if partition >= partitions {
            continue;
        }
        buffer.clear();
        Frames::new(1, &mut buffer).push(&Entry::Batch {
            topic: row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?,
            partition,
            first: row.get::<_, i64>(2)? as u64,
            end: row.get::<_, i64>(3)? as u64,
            timestamp: row.get(4)?,
            records: row.get_ref(5)?.as_blob().map_err(rusqlite::Error::from)?,
        });
        out.write_all(&buffer)?;
        batches += 1;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(batches)
}

/// Converts a log written by a build that stored one row a record (table `records`) to batches, in one
/// transaction: each partition's records become batches as the writer builds them, stamped with the partition's
/// newest record's time, so that none expires earlier than it would have.
fn convert_one_row_a_record(conn: &mut Connection) -> rusqlite::Result<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'records')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let mut converted = 0u64;
    {
        let mut insert = tx.prepare(INSERT)?;
        let mut flush = |(topic, partition, ts, building): &(String, i64, i64, batch::Building)| {
            for (first, end, blob) in building.batches() {
                insert.execute(params![
                    topic,
                    partition,
                    first as i64,
                    end as i64,
                    ts,
                    blob
                ])?;
            }
            Ok::<_, rusqlite::Error>(())
        };
        let mut select = tx.prepare(
            "SELECT topic, partition, offset, key, headers, payload, ts FROM records ORDER BY topic, partition, offset",
        )?;
        let mut rows = select.query([])?;
        // The partition being converted: its records are gap-free from its oldest kept one.
        let mut current: Option<(String, i64, i64, batch::Building)> = None;
        while let Some(row) = rows.next()? {
            let (topic, partition, offset): (String, i64, i64) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            let headers: String = row.get(4)?;
            let record = OutgoingRecord {
                key: row.get(3)?,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                payload: row.get(5)?,
            };
            let ts: i64 = row.get(6)?;
            let same = current.as_ref().is_some_and(|(t, p, _, b)| {
                *t == topic && *p == partition && b.end() == offset as u64
            });
            if !same {
                if let Some(done) = current.take() {
                    flush(&done)?;
                }
                current = Some((topic, partition, ts, batch::Building::new(offset as u64)));
            }
            let (_, _, newest, building) = current.as_mut().expect("set above");
            building.add(&record);
            *newest = (*newest).max(ts);
            converted += 1;
        }
        if let Some(done) = current {
            flush(&done)?;
        }
    }
    tx.execute_batch("DROP TABLE records")?;
    tx.commit()?;
    tracing::info!(
        records = converted,
        "the event log's SQLite file converted from one row a record to batches"
    );
    Ok(())
}
