//! `chat4all client groups …`.

use super::*;

/// `chat4all client groups …`.
#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// Create a group; you are its first admin.
    Create {
        /// Its name.
        name: String,
        /// A description.
        #[arg(long)]
        description: Option<String>,
        /// Members to add (user ids), repeatable.
        #[arg(long = "member", short)]
        members: Vec<String>,
    },
    /// Show a group.
    Show {
        /// The group id.
        group: String,
    },
    /// Add a member (admins only).
    Add {
        /// The group id.
        group: String,
        /// The user id.
        user: String,
    },
    /// Remove a member (admins), or leave (your own user id).
    Remove {
        /// The group id.
        group: String,
        /// The user id.
        user: String,
    },
    /// Make a member admin (admins only).
    Promote {
        /// The group id.
        group: String,
        /// The user id.
        user: String,
    },
}

impl Cli {
    fn print_group(&self, group: &Group) {
        if self.json {
            print_json(group);
            return;
        }
        println!("group     {}", group.group_id);
        println!("name      {}", group.name.as_deref().unwrap_or(""));
        if let Some(d) = &group.description {
            println!("about     {d}");
        }
        println!(
            "created   {} by {}",
            time(group.created_at),
            group.created_by
        );
        println!("members   {}/{}", group.member_ids.len(), group.max_members);
        let rows: Vec<Vec<String>> = group
            .member_ids
            .iter()
            .map(|m| {
                let role = if group.admin_ids.contains(m) {
                    "admin"
                } else {
                    "member"
                };
                vec![m.clone(), role.to_owned()]
            })
            .collect();
        table(&["MEMBER", "ROLE"], &rows);
    }

    pub(super) async fn groups(&self, command: GroupsCommand) -> crate::Result<()> {
        let group = match command {
            GroupsCommand::Create {
                name,
                description,
                members,
            } => {
                let group = NewGroup {
                    name,
                    description,
                    initial_members: members,
                };
                self.client.create_group(&group).await?
            }
            GroupsCommand::Show { group } => self.client.group(&group).await?,
            GroupsCommand::Add { group, user } => self.client.add_member(&group, &user).await?,
            GroupsCommand::Promote { group, user } => {
                self.client.promote_admin(&group, &user).await?
            }
            GroupsCommand::Remove { group, user } => {
                self.client.remove_member(&group, &user).await?;
                if self.json {
                    print_json(&serde_json::json!({"group_id": group, "removed": user}));
                } else {
                    println!("removed {user} from {group}");
                }
                return Ok(());
            }
        };
        self.print_group(&group);
        Ok(())
    }
}
