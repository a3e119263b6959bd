//! Uploads and downloads with a progress bar.

use super::*;

fn progress_bar(total: u64, json: bool) -> indicatif::ProgressBar {
    if json {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

impl Cli {
    pub(super) async fn upload_with_bar(
        &self,
        path: &Path,
        conversation: &str,
    ) -> crate::Result<FileInfo> {
        let size = tokio::fs::metadata(path).await?.len();
        let bar = progress_bar(size, self.json);
        let progress = bar.clone();
        let stored = self
            .client
            .upload_file(path, conversation, move |sent, _| {
                progress.set_position(sent)
            })
            .await;
        bar.finish_and_clear();
        stored
    }

    pub(super) async fn upload(
        &self,
        path: &Path,
        conversation: &str,
        resumable: bool,
        resume: Option<String>,
    ) -> crate::Result<()> {
        let stored = if resumable {
            let size = tokio::fs::metadata(path).await?.len();
            let bar = progress_bar(size, self.json);
            let json = self.json;
            let stored = self
                .client
                .upload_resumable(
                    path,
                    conversation,
                    resume.as_deref(),
                    None,
                    |id| {
                        if !json {
                            eprintln!("upload session {id} (continue with --resume {id})");
                        }
                    },
                    |held, _| bar.set_position(held),
                )
                .await;
            bar.finish_and_clear();
            stored?
        } else {
            self.upload_with_bar(path, conversation).await?
        };
        if self.json {
            print_json(&stored);
        } else {
            println!(
                "uploaded {} ({} B, {}) as file {}",
                stored.filename, stored.size_bytes, stored.checksum, stored.file_id
            );
        }
        Ok(())
    }

    pub(super) async fn download(&self, file_id: &str, output: Option<&Path>) -> crate::Result<()> {
        let link = self.client.download_link(file_id).await?;
        if output == Some(Path::new("-")) {
            let mut stdout = tokio::io::stdout();
            self.client
                .download_to(file_id, &mut stdout, |_, _| {})
                .await?;
            return Ok(());
        }
        let target = match output {
            Some(path) => path.to_path_buf(),
            None => {
                // Only the last component of the server's name, never a path it could smuggle.
                let name = Path::new(&link.filename)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .unwrap_or_else(|| file_id.to_owned());
                PathBuf::from(name)
            }
        };
        let bar = progress_bar(link.size_bytes, self.json);
        let received = self
            .client
            .download_file(file_id, &target, |got, _| bar.set_position(got))
            .await;
        bar.finish_and_clear();
        let received = received?;
        if self.json {
            print_json(
                &serde_json::json!({"file_id": file_id, "path": target, "size_bytes": received, "checksum": link.checksum}),
            );
        } else {
            println!("downloaded {} B into {}", received, target.display());
        }
        Ok(())
    }
}
