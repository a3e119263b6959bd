//! Users' identities on external channels: linking, listing and unlinking them, and finding the address a message
//! to a user takes when its sender names a channel. Values obey the recipient rules (E.164 for WhatsApp, `@handle`
//! for Instagram), so an identity is always an address its connector accepts. No verification flow exists yet:
//! every identity is unverified.

use crate::error::ServiceError;
use crate::events::ChannelAddress;
use crate::ids::UserId;
use crate::model::Identity;
use crate::ports::{Linked, Stores};
use crate::recipient::Recipient;
use crate::time::now_millis;
use std::collections::BTreeSet;
use std::sync::Arc;

/// An identity as the client asked to link it (fields not yet validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkIdentity {
    /// The channel.
    pub platform: String,
    /// The address on it.
    pub value: String,
    /// `Some(true)` makes it the preferred one; `None` leaves a linked identity's flag as it is.
    pub preferred: Option<bool>,
}

/// The identity use cases, over the channels this deployment runs.
#[derive(Clone)]
pub struct Identities {
    stores: Stores,
    platforms: Arc<BTreeSet<String>>,
}

impl Identities {
    /// Identities on `platforms`: the channels a connector serves, so that no identity names a dead end.
    pub fn new(stores: &Stores, platforms: impl IntoIterator<Item = String>) -> Self {
        Self {
            stores: stores.clone(),
            platforms: Arc::new(platforms.into_iter().collect()),
        }
    }

    /// Links an identity to `caller`: 400 when invalid or on an unknown platform, 409 when another user holds it.
    /// Linking one the caller already holds answers it as stored (idempotent), with `preferred` applied if given.
    pub async fn link(
        &self,
        caller: &UserId,
        request: LinkIdentity,
    ) -> Result<Linked, ServiceError> {
        let address = address(&self.platforms, &request.platform, &request.value)?;
        let identity = Identity {
            user_id: caller.clone(),
            platform: address.channel,
            value: address.address,
            verified: false,
            preferred: request.preferred.unwrap_or(false),
            linked_at: now_millis(),
        };
        self.stores
            .identities
            .link_identity(&identity, request.preferred.is_some())
            .await
            .map_err(|e| match e {
                crate::ports::StoreError::Conflict(_) => ServiceError::Conflict(format!(
                    "{} identity {} belongs to another user",
                    identity.platform, identity.value
                )),
                other => other.into(),
            })
    }

    /// The caller's identities, oldest first.
    pub async fn list(&self, caller: &UserId) -> Result<Vec<Identity>, ServiceError> {
        Ok(self.stores.identities.identities(caller).await?)
    }

    /// Unlinks one of the caller's identities; 404 when they hold no such identity (a malformed one included).
    pub async fn unlink(
        &self,
        caller: &UserId,
        platform: &str,
        value: &str,
    ) -> Result<(), ServiceError> {
        let removed = self
            .stores
            .identities
            .unlink_identity(caller, platform, value)
            .await?;
        if removed {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!(
                "no {platform} identity {value} is linked to you"
            )))
        }
    }

    /// Where a message to `user` goes when its sender names `channel`: 400 for a channel this server does not
    /// run, 422 when the user has no identity there.
    pub async fn address_on(
        &self,
        user: &UserId,
        channel: &str,
    ) -> Result<ChannelAddress, ServiceError> {
        check_platform(&self.platforms, channel)?;
        let identities = self.stores.identities.identities(user).await?;
        choose(&identities, channel)
            .map(|identity| ChannelAddress {
                channel: identity.platform.clone(),
                address: identity.value.clone(),
            })
            .ok_or_else(|| {
                ServiceError::Unprocessable(format!("the recipient has no {channel} identity"))
            })
    }
}

/// `value` on `platform` as a checked address in its one spelling (Instagram handles in lower case): the recipient
/// rules decide, as for a `platform:value` recipient.
fn address(
    platforms: &BTreeSet<String>,
    platform: &str,
    value: &str,
) -> Result<ChannelAddress, ServiceError> {
    check_platform(platforms, platform)?;
    match Recipient::parse(Some(&format!("{platform}:{value}")))? {
        Recipient::Channel { channel, address } if channel == platform => {
            Ok(ChannelAddress { channel, address })
        }
        _ => Err(ServiceError::Invalid(format!(
            "{value:?} is not a {platform} address"
        ))),
    }
}

fn check_platform(platforms: &BTreeSet<String>, platform: &str) -> Result<(), ServiceError> {
    if platforms.contains(platform) {
        return Ok(());
    }
    let known: Vec<&str> = platforms.iter().map(String::as_str).collect();
    Err(ServiceError::Invalid(format!(
        "unknown platform {platform:?}; this server runs {}",
        known.join(", ")
    )))
}

/// The identity to use on `channel`: the preferred one when it is there, else the oldest linked there.
fn choose<'a>(identities: &'a [Identity], channel: &str) -> Option<&'a Identity> {
    let on_channel = || identities.iter().filter(|i| i.platform == channel);
    on_channel()
        .find(|i| i.preferred)
        .or_else(|| on_channel().min_by_key(|i| i.linked_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(platform: &str, value: &str, preferred: bool, linked_at: i64) -> Identity {
        Identity {
            user_id: UserId::parse("u1").unwrap(),
            platform: platform.into(),
            value: value.into(),
            verified: false,
            preferred,
            linked_at,
        }
    }

    #[test]
    fn values_follow_the_recipient_rules_on_the_channels_served() {
        let served: BTreeSet<String> = ["whatsapp".into(), "instagram".into()].into();
        assert!(address(&served, "whatsapp", "+5511999990000").is_ok());
        assert!(address(&served, "instagram", "@maria.s").is_ok());
        for (platform, value) in [
            ("whatsapp", "5511999990000"),
            ("whatsapp", "+55:1"),
            ("instagram", "maria"),
            ("instagram", "@a\nb"),
            ("telegram", "12345"),
            ("", "x"),
        ] {
            assert!(
                matches!(
                    address(&served, platform, value),
                    Err(ServiceError::Invalid(_))
                ),
                "{platform}:{value} accepted"
            );
        }
    }

    #[test]
    fn a_named_channel_takes_the_preferred_identity_there_else_the_oldest() {
        let mine = [
            identity("whatsapp", "+5511000000002", false, 2),
            identity("whatsapp", "+5511000000001", false, 1),
            identity("instagram", "@me", true, 3),
        ];
        assert_eq!(choose(&mine, "whatsapp").unwrap().value, "+5511000000001");
        assert_eq!(choose(&mine, "instagram").unwrap().value, "@me");
        assert!(choose(&mine, "telegram").is_none());
        let preferred = [
            identity("whatsapp", "+5511000000001", false, 1),
            identity("whatsapp", "+5511000000002", true, 2),
        ];
        assert_eq!(
            choose(&preferred, "whatsapp").unwrap().value,
            "+5511000000002"
        );
    }
}
