//! Sending, history, receipts and the live stream.

use super::*;

impl Cli {
    pub(super) async fn send(
        &self,
        mut message: NewMessage,
        file: Option<&Path>,
        key: Option<String>,
    ) -> crate::Result<()> {
        if let Some(path) = file {
            let stored = self.upload_with_bar(path, &message.conversation_id).await?;
            message.file_id = Some(stored.file_id);
        }
        let key = key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let accepted = self.client.send_message_with_key(&message, &key).await?;
        if self.json {
            print_json(&accepted);
        } else {
            println!(
                "{} {} in {}",
                accepted.status, accepted.message_id, accepted.conversation_id
            );
        }
        Ok(())
    }

    pub(super) async fn history(
        &self,
        conversation: &str,
        limit: u32,
        after: Option<u64>,
        before: Option<u64>,
        all: bool,
    ) -> crate::Result<()> {
        let messages: Vec<Message> = if all {
            let stream = self.client.messages_after(conversation, 0, 100);
            futures::pin_mut!(stream);
            let mut all = Vec::new();
            while let Some(m) = stream.next().await {
                all.push(m?);
            }
            all
        } else if after.is_some() {
            let query = HistoryQuery {
                limit: Some(limit),
                after,
                ..HistoryQuery::default()
            };
            self.client.history(conversation, &query).await?.messages
        } else {
            // The latest ones: newest first from the server, shown oldest first.
            let query = HistoryQuery {
                limit: Some(limit),
                before,
                order: Some(Order::Desc),
                ..HistoryQuery::default()
            };
            let mut page = self.client.history(conversation, &query).await?.messages;
            page.reverse();
            page
        };
        if self.json {
            print_json(&serde_json::json!({"conversation_id": conversation, "messages": messages}));
            return Ok(());
        }
        let rows: Vec<Vec<String>> = messages
            .iter()
            .map(|m| {
                let mut text = one_line(&m.content, 80);
                if let Some(meta) = &m.file_metadata {
                    text.push_str(&format!(
                        " [file {} {} ({} B)]",
                        m.file_id.as_deref().unwrap_or(""),
                        meta.filename,
                        meta.size_bytes
                    ));
                }
                vec![
                    m.seq.to_string(),
                    time(m.timestamp),
                    m.sender_id.clone(),
                    m.status.to_string(),
                    text,
                ]
            })
            .collect();
        if rows.is_empty() {
            println!("no messages");
        } else {
            table(&["SEQ", "TIME (UTC)", "SENDER", "STATUS", "TEXT"], &rows);
        }
        Ok(())
    }

    pub(super) async fn show(&self, message_id: &str) -> crate::Result<()> {
        let detail = self.client.message(message_id).await?;
        if self.json {
            print_json(&detail);
            return Ok(());
        }
        let m = &detail.message;
        println!("message   {}", m.message_id);
        println!("in        {} (seq {})", m.conversation_id, m.seq);
        println!("from      {}", m.sender_id);
        if let Some(to) = &m.recipient_id {
            println!("to        {to}");
        }
        println!("status    {}", m.status);
        if let Some(reason) = &m.failure_reason {
            println!("failure   {reason}");
        }
        if !detail.read_by.is_empty() {
            println!("read by   {}", detail.read_by.join(", "));
        }
        println!("text      {}", m.content);
        let rows: Vec<Vec<String>> = detail
            .status_history
            .iter()
            .map(|s| {
                vec![
                    time(s.at),
                    s.status.to_string(),
                    s.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(&["AT (UTC)", "STATUS", "DETAIL"], &rows);
        Ok(())
    }

    pub(super) async fn read(&self, conversation: &str, up_to: Option<u64>) -> crate::Result<()> {
        let up_to = match up_to {
            Some(seq) => seq,
            None => {
                let newest = HistoryQuery {
                    limit: Some(1),
                    order: Some(Order::Desc),
                    ..HistoryQuery::default()
                };
                let page = self.client.history(conversation, &newest).await?;
                match page.messages.first() {
                    Some(m) => m.seq,
                    None => {
                        println!("no messages");
                        return Ok(());
                    }
                }
            }
        };
        let receipt = self.client.read_up_to(conversation, up_to).await?;
        if self.json {
            print_json(&receipt);
        } else {
            println!(
                "read {} up to seq {}",
                receipt.conversation_id, receipt.up_to_seq
            );
        }
        Ok(())
    }

    pub(super) async fn conversations(
        &self,
        limit: u32,
        cursor: Option<&str>,
    ) -> crate::Result<()> {
        let page = self.client.conversations(Some(limit), cursor).await?;
        if self.json {
            print_json(&page);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = page
            .conversations
            .iter()
            .map(|c| {
                vec![
                    c.conversation_id.clone(),
                    c.kind.clone(),
                    c.members.len().to_string(),
                    c.unread.to_string(),
                    time(c.created_at),
                    c.name.clone().unwrap_or_default(),
                ]
            })
            .collect();
        if rows.is_empty() {
            println!("no conversations");
        } else {
            table(
                &[
                    "CONVERSATION",
                    "TYPE",
                    "MEMBERS",
                    "UNREAD",
                    "CREATED (UTC)",
                    "NAME",
                ],
                &rows,
            );
        }
        if let Some(next) = page.next_cursor {
            println!("more: --cursor {next}");
        }
        Ok(())
    }

    pub(super) async fn watch(&self, catch_up: bool) -> crate::Result<()> {
        let options = WatchOptions {
            catch_up,
            ..WatchOptions::default()
        };
        let mut watch = self.client.watch(options).await?;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            let event = tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                event = watch.next() => event,
            };
            let Some(event) = event else { return Ok(()) };
            self.print_event(event?);
        }
    }

    fn print_event(&self, event: Event) {
        if self.json {
            let value = match event {
                Event::Connected {
                    user_id,
                    reconnected,
                } => {
                    serde_json::json!({"event": "connected", "user_id": user_id, "reconnected": reconnected})
                }
                Event::Message { message, caught_up } => {
                    serde_json::json!({"event": "message", "caught_up": caught_up, "message": message})
                }
                Event::Status(update) => serde_json::json!({"event": "status", "update": update}),
                Event::Disconnected { reason, retry_in } => {
                    serde_json::json!({"event": "disconnected", "reason": reason, "retry_in_ms": retry_in.as_millis() as u64})
                }
            };
            print_json(&value);
            return;
        }
        match event {
            Event::Connected {
                user_id,
                reconnected,
            } => {
                let what = if reconnected {
                    "reconnected"
                } else {
                    "connected"
                };
                eprintln!("-- {what} as {user_id}; Ctrl-C to stop");
            }
            Event::Message {
                message: m,
                caught_up,
            } => {
                let mark = if caught_up { " (missed)" } else { "" };
                let file = m
                    .file_id
                    .as_ref()
                    .map(|f| format!(" [file {f}]"))
                    .unwrap_or_default();
                println!(
                    "{} {} #{} {}: {}{file}{mark}",
                    time(m.timestamp),
                    m.conversation_id,
                    m.seq,
                    m.sender_id,
                    one_line(&m.content, 200)
                );
            }
            Event::Status(u) => {
                let seq = u.seq.map(|s| format!("#{s} ")).unwrap_or_default();
                let detail = u.detail.map(|d| format!(" ({d})")).unwrap_or_default();
                println!(
                    "{} {} {seq}{} -> {}{detail}",
                    time(u.at),
                    u.conversation_id,
                    u.message_id,
                    u.status
                );
            }
            Event::Disconnected { reason, retry_in } => {
                eprintln!(
                    "-- disconnected: {reason}; retrying in {:.1} s",
                    retry_in.as_secs_f64()
                );
            }
        }
    }
}
