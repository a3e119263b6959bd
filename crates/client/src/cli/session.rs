//! Signing up, logging in and out: the token kept between commands.

use super::*;

impl Cli {
    /// The client with the saved token, when it belongs to this URL and has not expired.
    pub(super) fn authed(self) -> crate::Result<Self> {
        let url = self.client.base_url().as_str().to_owned();
        match &self.saved {
            Some(c) if same_url(&c.url, &url) && c.expires_at > now_ms() => {
                self.client.set_token(Some(c.token.clone()));
                Ok(self)
            }
            Some(c) if same_url(&c.url, &url) => Err(Error::Api {
                status: 401,
                detail: format!("the token of {} has expired", c.username),
                problem: None,
                retry_after: None,
            }),
            _ => Err(Error::NotLoggedIn),
        }
    }

    pub(super) async fn register(
        &self,
        username: &str,
        password_arg: Option<String>,
        email: Option<&str>,
    ) -> crate::Result<()> {
        let password = password(password_arg)?;
        let user = self.client.register(username, &password, email).await?;
        if self.json {
            print_json(&user);
        } else {
            println!("registered {} (user id {})", user.username, user.user_id);
        }
        Ok(())
    }

    pub(super) async fn login(
        &self,
        username: &str,
        password_arg: Option<String>,
    ) -> crate::Result<()> {
        let password = password(password_arg)?;
        let token = self.client.login(username, &password).await?;
        let credentials = Credentials {
            url: self
                .client
                .base_url()
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            token: token.access_token.clone(),
            user_id: token.user_id.clone(),
            username: username.to_owned(),
            expires_at: now_ms() + (token.expires_in as i64) * 1000,
        };
        let path = credentials::save(&credentials)?;
        if self.json {
            print_json(&serde_json::json!({
                "user_id": token.user_id,
                "username": username,
                "url": credentials.url,
                "expires_in": token.expires_in,
                "credentials": path,
            }));
        } else {
            println!(
                "logged in to {} as {username} (user id {}); token saved in {} for {} s",
                credentials.url,
                token.user_id,
                path.display(),
                token.expires_in
            );
        }
        Ok(())
    }

    pub(super) fn logout(&self) -> crate::Result<()> {
        let removed = credentials::remove()?;
        if self.json {
            print_json(&serde_json::json!({"logged_out": removed}));
        } else if removed {
            println!("logged out");
        } else {
            println!("not logged in");
        }
        Ok(())
    }
}
