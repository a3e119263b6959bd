//! The PostgreSQL store's messages: a batch gets gap-free, duplicate-free `seq`s under its conversations' row
//! locks (idempotent by message id), a status change decided by core is saved only if the message is still where
//! core saw it, and history pages by `seq`.

use crate::PostgresStore;
use crate::error::Error;
use crate::rows::{
    MESSAGE_COLUMNS, MESSAGES_BY_ID, MESSAGES_WITH_FILES, all, files_by_id, message_row,
    status_column,
};
use async_trait::async_trait;
use chat4all_core::events::MessageAccepted;
use chat4all_core::ids::{ConversationId, MessageId, UserId};
use chat4all_core::model::{HistoryPage, HistoryQuery, Message, Reading, StatusChange};
use chat4all_core::ports::{MessageStore, Recorded, Settle, StatusWrite, StoreError};
use chat4all_core::status::MessageStatus;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tokio_postgres::types::ToSql;

/// Times a transaction that lost a deadlock or serialization race is run again before the error is returned.
const RETRIES: u32 = 5;

#[async_trait]
impl MessageStore for PostgresStore {
    async fn record_and_settle(
        &self,
        accepted: &[MessageAccepted],
        settle: Settle,
    ) -> Result<Vec<(Recorded, Option<StatusWrite>)>, StoreError> {
        if accepted.is_empty() {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let result = loop {
            match self.record_once(accepted, &settle).await {
                Err(e) if e.is_retryable() && attempt < RETRIES => attempt += 1,
                other => break other,
            }
        };
        self.write_duration.record(started.elapsed().as_secs_f64());
        Ok(result?)
    }

    async fn save_statuses(&self, writes: &[StatusWrite]) -> Result<Vec<bool>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let result = loop {
            match self.save_statuses_once(writes).await {
                Err(e) if e.is_retryable() && attempt < RETRIES => attempt += 1,
                other => break other,
            }
        };
        self.write_duration.record(started.elapsed().as_secs_f64());
        Ok(result?)
    }

    async fn message(&self, id: &MessageId) -> Result<Option<Message>, StoreError> {
        Ok(self.messages(std::slice::from_ref(id)).await?.pop())
    }

    async fn messages(&self, ids: &[MessageId]) -> Result<Vec<Message>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(MessageId::as_str).collect();
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {MESSAGE_COLUMNS} FROM {MESSAGES_BY_ID}"),
                &[&ids],
            )
            .await
            .map_err(Error::from)?;
        Ok(all(&rows, message_row)?)
    }

    async fn status_history(&self, id: &MessageId) -> Result<Vec<StatusChange>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                // Statuses only move forward, so their rank orders them even when clocks of two processes differ.
                "SELECT status, at, detail, correlation_id FROM status_history WHERE message_id = $1 ORDER BY
                 CASE status WHEN 'SENT' THEN 0 WHEN 'PENDING' THEN 1 WHEN 'DELIVERED' THEN 2 WHEN 'READ' THEN 3
                 ELSE 4 END, at",
                &[&id.as_str()],
            )
            .await
            .map_err(Error::from)?;
        Ok(all(&rows, |row| {
            Ok(StatusChange {
                status: status_column(row, 0)?,
                at: row.try_get(1)?,
                detail: row.try_get(2)?,
                correlation_id: row.try_get(3)?,
            })
        })?)
    }

    async fn history(
        &self,
        conversation: &ConversationId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let conversation = conversation.as_str();
        let after = query.after.map(|s| s as i64);
        let before = query.before.map(|s| s as i64);
        let limit = i64::from(query.limit) + 1;
        let offset = query.offset.min(i64::MAX as u64) as i64;
        let mut sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM {MESSAGES_WITH_FILES} WHERE m.conversation_id = $1"
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&conversation];
        if let Some(after) = &after {
            params.push(after);
            sql.push_str(&format!(" AND m.seq > ${}", params.len()));
        }
        if let Some(before) = &before {
            params.push(before);
            sql.push_str(&format!(" AND m.seq < ${}", params.len()));
        }
        sql.push_str(if query.ascending {
            " ORDER BY m.seq ASC"
        } else {
            " ORDER BY m.seq DESC"
        });
        params.push(&limit);
        sql.push_str(&format!(" LIMIT ${}", params.len()));
        params.push(&offset);
        sql.push_str(&format!(" OFFSET ${}", params.len()));
        let client = self.client().await?;
        let rows = client.query(&sql, &params).await.map_err(Error::from)?;
        let mut messages = all(&rows, message_row)?;
        let has_more = messages.len() > query.limit as usize;
        messages.truncate(query.limit as usize);
        Ok(HistoryPage { messages, has_more })
    }

    async fn readings(
        &self,
        reader: &UserId,
        conversations: &[ConversationId],
    ) -> Result<Vec<Reading>, StoreError> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = conversations.iter().map(ConversationId::as_str).collect();
        let client = self.client().await?;
        // Per conversation: the last `seq` from the end of the (conversation_id, seq) unique index, the receipt by
        // its key, and a range scan of that index past the receipt.
        let query = client
            .prepare_cached(
                "SELECT COALESCE((SELECT max(m.seq) FROM messages m WHERE m.conversation_id = k.id), 0),
                     COALESCE(r.up_to_seq, 0),
                     (SELECT count(*) FROM messages m WHERE m.conversation_id = k.id
                        AND m.seq > COALESCE(r.up_to_seq, 0) AND m.sender_id <> $1)
                 FROM UNNEST($2::TEXT[]) WITH ORDINALITY AS k (id, n)
                 LEFT JOIN read_receipts r ON r.conversation_id = k.id AND r.user_id = $1
                 ORDER BY k.n",
            )
            .await
            .map_err(Error::from)?;
        let rows = client
            .query(&query, &[&reader.as_str(), &ids])
            .await
            .map_err(Error::from)?;
        Ok(all(&rows, |row| {
            Ok(Reading {
                last_seq: row.try_get::<_, i64>(0)? as u64,
                read_up_to: row.try_get::<_, i64>(1)? as u64,
                unread: row.try_get::<_, i64>(2)? as u64,
            })
        })?)
    }
}

impl PostgresStore {
    /// One attempt at recording a batch, in one transaction:
    /// 1. lock the batch's conversation rows, in conversation-id order (so two batches never deadlock);
    /// 2. only then look up which messages are already stored: a concurrent recorder of the same messages has
    ///    committed them by now, so they are returned as stored and never get a second `seq`;
    /// 3. give the new ones the next `seq`s of their conversation, insert them, and move the counters;
    /// 4. save the status changes `settle` decides for the messages as they now are.
    ///
    /// Filtering duplicates before taking the locks would let two recorders both count a message as new, and
    /// the loser's unique violation would roll its batch back or, if ignored, leave a gap in `seq`.
    async fn record_once(
        &self,
        accepted: &[MessageAccepted],
        settle: &Settle,
    ) -> Result<Vec<(Recorded, Option<StatusWrite>)>, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;

        let conversation_ids: Vec<&str> = accepted
            .iter()
            .map(|a| a.conversation_id.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Prepared once per connection (lookups join the id array rather than `= ANY($1)`, which a cached generic
        // plan may evaluate per row of a scanned table); the two queries go out pipelined, and the server runs them in order, so
        // the lookup of stored messages runs only once the locks are held.
        let lock = tx
            .prepare_cached(
                "SELECT c.conversation_id, c.last_seq FROM UNNEST($1::TEXT[]) AS k (id)
                 JOIN conversations c ON c.conversation_id = k.id
                 ORDER BY c.conversation_id FOR UPDATE OF c",
            )
            .await?;
        let find = tx
            .prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM {MESSAGES_BY_ID}"))
            .await?;
        let message_ids: Vec<&str> = accepted.iter().map(|a| a.message_id.as_str()).collect();
        let (lock_params, find_params): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) =
            ([&conversation_ids], [&message_ids]);
        let (locked, stored_rows) =
            futures::try_join!(tx.query(&lock, &lock_params), tx.query(&find, &find_params))?;
        let mut last_seq: HashMap<String, i64> = locked
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, Error>>()?;

        let mut stored: HashMap<String, Message> = HashMap::with_capacity(stored_rows.len());
        for row in &stored_rows {
            let message = message_row(row)?;
            stored.insert(message.message_id.as_str().to_owned(), message);
        }

        let file_ids: Vec<String> = accepted
            .iter()
            .filter(|a| !stored.contains_key(a.message_id.as_str()))
            .filter_map(|a| a.file_id.as_ref().map(|f| f.as_str().to_owned()))
            .collect();
        let files = files_by_id(&*tx, &file_ids).await?;

        let mut answers = Vec::with_capacity(accepted.len());
        let mut new = NewMessages::default();
        for a in accepted {
            if let Some(message) = stored.get(a.message_id.as_str()) {
                answers.push(Recorded::Stored(message.clone()));
                continue;
            }
            let Some(counter) = last_seq.get_mut(a.conversation_id.as_str()) else {
                answers.push(Recorded::NoConversation);
                continue;
            };
            *counter += 1;
            let message = Message {
                message_id: a.message_id.clone(),
                conversation_id: a.conversation_id.clone(),
                seq: *counter as u64,
                sender_id: a.sender_id.clone(),
                recipient_id: a.recipient_id.clone(),
                content: a.content.clone(),
                status: MessageStatus::Sent,
                timestamp: a.timestamp,
                delivered_at: None,
                read_at: None,
                failure_reason: None,
                attachment: a
                    .file_id
                    .as_ref()
                    .and_then(|f| files.get(f.as_str()).cloned()),
            };
            new.push(a, *counter);
            // A message repeated within the batch is stored once.
            stored.insert(a.message_id.as_str().to_owned(), message.clone());
            answers.push(Recorded::Stored(message));
        }

        if !new.ids.is_empty() {
            let insert = tx
                .prepare_cached(
                    "INSERT INTO messages (message_id, conversation_id, seq, sender_id, recipient_id, content, status,
                         timestamp, file_id)
                     SELECT id, conversation_id, seq, sender_id, recipient_id, content, 'SENT', ts, file_id
                     FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
                         $7::BIGINT[], $8::TEXT[])
                         AS v (id, conversation_id, seq, sender_id, recipient_id, content, ts, file_id)",
                )
                .await?;
            let history = tx
                .prepare_cached(
                    "INSERT INTO status_history (message_id, status, at)
                     SELECT id, 'SENT', ts FROM UNNEST($1::TEXT[], $2::BIGINT[]) AS v (id, ts)",
                )
                .await?;
            let advance = tx
                .prepare_cached(
                    "UPDATE conversations SET last_seq = v.last_seq
                     FROM UNNEST($1::TEXT[], $2::BIGINT[]) AS v (id, last_seq)
                     WHERE conversations.conversation_id = v.id",
                )
                .await?;
            let (ids, seqs): (Vec<&str>, Vec<i64>) = locked
                .iter()
                .filter_map(|r| {
                    let id: &str = r.get(0);
                    let before: i64 = r.get(1);
                    let now = last_seq[id];
                    (now != before).then_some((id, now))
                })
                .unzip();
            // Pipelined: one round trip for the three writes.
            let insert_params: [&(dyn ToSql + Sync); 8] = [
                &new.ids,
                &new.conversations,
                &new.seqs,
                &new.senders,
                &new.recipients,
                &new.contents,
                &new.timestamps,
                &new.files,
            ];
            let history_params: [&(dyn ToSql + Sync); 2] = [&new.ids, &new.timestamps];
            let advance_params: [&(dyn ToSql + Sync); 2] = [&ids, &seqs];
            futures::try_join!(
                tx.execute(&insert, &insert_params),
                tx.execute(&history, &history_params),
                tx.execute(&advance, &advance_params),
            )?;
        }
        let writes: Vec<Option<StatusWrite>> = answers
            .iter()
            .map(|answer| match answer {
                Recorded::Stored(message) => settle(message),
                Recorded::NoConversation => None,
            })
            .collect();
        let mut saved = save_statuses_in(&tx, writes.iter().flatten())
            .await?
            .into_iter();
        let settled = answers
            .into_iter()
            .zip(writes)
            // `saved` has one answer per change decided, in order.
            .map(|(answer, write)| (answer, write.filter(|_| saved.next() == Some(true))))
            .collect();
        tx.commit().await?;
        Ok(settled)
    }

    /// One attempt at saving status changes, in order, in one transaction.
    async fn save_statuses_once(&self, writes: &[StatusWrite]) -> Result<Vec<bool>, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let saved = save_statuses_in(&tx, writes).await?;
        tx.commit().await?;
        Ok(saved)
    }
}

/// Saves status changes in order in the open transaction `tx`: per change, whether it was saved. The changes go
/// out in rounds, one statement each over arrays (the compare-and-set update, and the history step only where the
/// update happened): the k-th change of a message goes in round k, so no statement changes a message twice, and
/// the rounds go out pipelined in order, which the server keeps, so a later change of a message sees the earlier.
async fn save_statuses_in<'a>(
    tx: &deadpool_postgres::Transaction<'_>,
    writes: impl IntoIterator<Item = &'a StatusWrite>,
) -> Result<Vec<bool>, Error> {
    let writes: Vec<&StatusWrite> = writes.into_iter().collect();
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let save = tx
        .prepare_cached(
            "WITH v AS (
                 SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[],
                     $7::TEXT[], $8::BIGINT[], $9::TEXT[], $10::TEXT[], $11::INT[])
                     AS v (id, status, delivered_at, read_at, failure_reason, from_status, step, at, detail,
                         correlation_id, i)
             ), moved AS (
                 UPDATE messages m SET status = v.status, delivered_at = v.delivered_at, read_at = v.read_at,
                     failure_reason = v.failure_reason
                 FROM v WHERE m.message_id = v.id AND m.status = v.from_status
                 RETURNING v.i, v.id, v.step, v.at, v.detail, v.correlation_id
             ), step AS (
                 INSERT INTO status_history (message_id, status, at, detail, correlation_id)
                 SELECT id, step, at, detail, correlation_id FROM moved
                 ON CONFLICT DO NOTHING
             )
             SELECT i FROM moved",
        )
        .await?;
    let mut rounds: Vec<StatusColumns> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(writes.len());
    for (i, write) in writes.iter().enumerate() {
        let round = seen.entry(write.message.message_id.as_str()).or_default();
        if *round == rounds.len() {
            rounds.push(StatusColumns::default());
        }
        rounds[*round].push(i as i32, write);
        *round += 1;
    }
    let params: Vec<[&(dyn ToSql + Sync); 11]> = rounds.iter().map(StatusColumns::params).collect();
    let answers = pipelined(params.iter().map(|p| tx.query(&save, p))).await?;
    let mut saved = vec![false; writes.len()];
    for row in answers.iter().flatten() {
        let i: i32 = row.try_get(0)?;
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| saved.get_mut(i)) {
            *slot = true;
        }
    }
    Ok(saved)
}

/// One round of status changes, as arrays for one `UNNEST` statement; `indexes` say which change each row is.
#[derive(Default)]
struct StatusColumns<'a> {
    ids: Vec<&'a str>,
    statuses: Vec<&'static str>,
    delivered_at: Vec<Option<i64>>,
    read_at: Vec<Option<i64>>,
    failure_reasons: Vec<Option<&'a str>>,
    from: Vec<&'static str>,
    steps: Vec<&'static str>,
    at: Vec<i64>,
    details: Vec<Option<&'a str>>,
    correlation_ids: Vec<Option<&'a str>>,
    indexes: Vec<i32>,
}

impl<'a> StatusColumns<'a> {
    fn push(&mut self, index: i32, write: &'a StatusWrite) {
        let (message, change) = (&write.message, &write.change);
        self.ids.push(message.message_id.as_str());
        self.statuses.push(message.status.as_str());
        self.delivered_at.push(message.delivered_at);
        self.read_at.push(message.read_at);
        self.failure_reasons.push(message.failure_reason.as_deref());
        self.from.push(write.from.as_str());
        self.steps.push(change.status.as_str());
        self.at.push(change.at);
        self.details.push(change.detail.as_deref());
        self.correlation_ids.push(change.correlation_id.as_deref());
        self.indexes.push(index);
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 11] {
        [
            &self.ids,
            &self.statuses,
            &self.delivered_at,
            &self.read_at,
            &self.failure_reasons,
            &self.from,
            &self.steps,
            &self.at,
            &self.details,
            &self.correlation_ids,
            &self.indexes,
        ]
    }
}

/// Awaits queries of one connection together, polling each first in the order given: tokio-postgres sends a
/// query when its future is first polled, and the server answers a connection's queries one after the other in
/// the order sent. One round trip for all of them instead of one each. The first error in order is returned.
async fn pipelined<T, F>(queries: impl IntoIterator<Item = F>) -> Result<Vec<T>, Error>
where
    F: Future<Output = Result<T, tokio_postgres::Error>>,
{
    let mut pending: Vec<Pin<Box<F>>> = queries.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<Result<T, tokio_postgres::Error>>> =
        pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (query, result) in pending.iter_mut().zip(done.iter_mut()) {
            if result.is_none() {
                match query.as_mut().poll(cx) {
                    Poll::Ready(r) => *result = Some(r),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter()
        .map(|r| r.expect("every query finished").map_err(Error::from))
        .collect()
}

/// The columns of a batch's new messages, as arrays for one `UNNEST` insert.
#[derive(Default)]
struct NewMessages<'a> {
    ids: Vec<&'a str>,
    conversations: Vec<&'a str>,
    seqs: Vec<i64>,
    senders: Vec<&'a str>,
    recipients: Vec<Option<&'a str>>,
    contents: Vec<&'a str>,
    timestamps: Vec<i64>,
    files: Vec<Option<&'a str>>,
}

impl<'a> NewMessages<'a> {
    fn push(&mut self, a: &'a MessageAccepted, seq: i64) {
        self.ids.push(a.message_id.as_str());
        self.conversations.push(a.conversation_id.as_str());
        self.seqs.push(seq);
        self.senders.push(a.sender_id.as_str());
        self.recipients.push(a.recipient_id.as_deref());
        self.contents.push(&a.content);
        self.timestamps.push(a.timestamp);
        self.files.push(a.file_id.as_ref().map(|f| f.as_str()));
    }
}
