//! `chat4all client identities …`.

use super::*;

/// `chat4all client identities …`.
#[derive(Subcommand, Debug)]
pub enum IdentitiesCommand {
    /// Link an identity: `whatsapp +5511999990000` or `instagram @handle`.
    Link {
        /// whatsapp or instagram.
        platform: String,
        /// E.164 number or @handle.
        value: String,
        /// Also deliver your messages there.
        #[arg(long)]
        preferred: bool,
    },
    /// List your identities.
    List,
    /// Unlink an identity.
    Unlink {
        /// whatsapp or instagram.
        platform: String,
        /// E.164 number or @handle.
        value: String,
    },
}

impl Cli {
    pub(super) async fn identities(&self, command: IdentitiesCommand) -> crate::Result<()> {
        match command {
            IdentitiesCommand::Link {
                platform,
                value,
                preferred,
            } => {
                let identity = self
                    .client
                    .link_identity(&platform, &value, preferred.then_some(true))
                    .await?;
                if self.json {
                    print_json(&identity);
                } else {
                    let preferred = if identity.preferred {
                        " (preferred)"
                    } else {
                        ""
                    };
                    println!("linked {} {}{preferred}", identity.platform, identity.value);
                }
            }
            IdentitiesCommand::List => {
                let identities = self.client.identities().await?;
                if self.json {
                    print_json(&serde_json::json!({"identities": identities}));
                } else if identities.is_empty() {
                    println!("no identities");
                } else {
                    let rows: Vec<Vec<String>> = identities
                        .iter()
                        .map(|i| {
                            vec![
                                i.platform.clone(),
                                i.value.clone(),
                                if i.preferred { "yes" } else { "no" }.to_owned(),
                                time(i.linked_at),
                            ]
                        })
                        .collect();
                    table(&["PLATFORM", "VALUE", "PREFERRED", "LINKED (UTC)"], &rows);
                }
            }
            IdentitiesCommand::Unlink { platform, value } => {
                let unlinked = self.client.unlink_identity(&platform, &value).await?;
                if self.json {
                    print_json(&unlinked);
                } else {
                    println!("unlinked {} {}", unlinked.platform, unlinked.value);
                }
            }
        }
        Ok(())
    }
}
