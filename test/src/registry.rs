//! Harness for the image-pull tests: a private loopback registry (Debian's `docker-registry`,
//! the CNCF distribution server) and a pusher for the project's test image.
//!
//! [`Registry::start`] runs `docker-registry serve <config>` on `127.0.0.1:<free port>` with
//! its storage in a private temporary directory, and returns once `GET /v2/` answers; the
//! process is killed when the value is dropped.
//!
//! [`Registry::push_test_image`] pushes the test image (`hack/build-test-image.sh`, busybox)
//! plus one extra layer, made here, that holds `/rkube-image` (a marker text) and
//! `/rkube-blob.bin` (3 MiB of incompressible bytes, so a pull streams several 1 MiB chunks).
//! The extra layer differs per marker, so each push is an image containerd has not seen, and a
//! container can prove it runs what was pushed (`cat /rkube-image`, `sha256sum /rkube-blob.bin`).
//! It is pushed the way `docker push` does: blobs by `POST /v2/<repo>/blobs/uploads/` and
//! `PUT <location>&digest=…`, the manifest by digest, then an OCI index naming it (with this
//! machine's platform) under the tag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sha2::Digest;

use crate::paths::temp_dir;
use crate::ports::{free_port, log_shows_port_in_use};
use crate::process::{Process, read_log, spawn_until_healthy, tail};

/// The registry binary Debian's `docker-registry` package installs.
const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
/// How long the registry may take to answer `/v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a start is retried on a new port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// The size of `/rkube-blob.bin` in the pushed image.
pub const BLOB_BYTES: usize = 3 << 20;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// How [`Registry::push`] lays the image out in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An OCI image index (this machine's platform) under the tag, naming an OCI manifest.
    OciIndex,
    /// A Docker schema 2 manifest (Docker media types) directly under the tag, no index.
    DockerManifest,
}

/// A running loopback registry (see the module docs).
pub struct Registry {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    process: Option<Process>,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

/// What [`Registry::push_test_image`] pushed.
#[derive(Clone, Debug)]
pub struct PushedImage {
    /// The name pods use: `127.0.0.1:<port>/<repository>:<tag>`.
    pub reference: String,
    /// The digest the tag points at (the index, or the Docker manifest).
    pub digest: String,
    /// The digest of the extra layer (compressed, as stored in content stores).
    pub layer_digest: String,
    /// The sha256 (hex) of `/rkube-blob.bin` in the image.
    pub blob_sha256: String,
}

impl Registry {
    /// Starts a registry with private storage on a free loopback port.
    ///
    /// # Panics
    /// When `/usr/bin/docker-registry` is missing: "run `make deps`".
    pub async fn start() -> anyhow::Result<Registry> {
        Registry::start_with(None).await
    }

    /// Like [`Registry::start`], with `htpasswd` authentication: every request needs
    /// `user`/`password` (Basic), as a private registry does. Pushes here use them.
    pub async fn start_with_login(user: &str, password: &str) -> anyhow::Result<Registry> {
        Registry::start_with(Some((user, password))).await
    }

    async fn start_with(login: Option<(&str, &str)>) -> anyhow::Result<Registry> {
        let program = PathBuf::from(REGISTRY_BINARY);
        assert!(program.is_file(), "{REGISTRY_BINARY} not found: run `make deps` (Debian package docker-registry)");
        let dir = temp_dir("rkube-registry-").context("cannot create a temporary directory for the registry")?;
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(60)).no_proxy();
        let mut auth = String::new();
        if let Some((user, password)) = login {
            use base64::Engine;
            let hash = bcrypt::hash(password, 4).context("hashing the registry password")?;
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n"))?;
            auth = format!("auth:\n  htpasswd:\n    realm: rkube-test\n    path: {}\n", htpasswd.display());
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, format!("Basic {basic}").parse()?);
            http = http.default_headers(headers);
        }
        let mut registry = Registry { port: 0, process: None, http: http.build()?, dir };
        let log_path = registry.dir.path().join("registry.log");
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            registry.port = free_port()?;
            let config = registry.dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    \
                     rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n{auth}",
                    registry.dir.path().join("data").display(),
                    registry.port
                ),
            )?;
            let args = vec!["serve".to_string(), config.display().to_string()];
            // `/` answers 200 with or without authentication (`/v2/` wants credentials then).
            let health = format!("http://127.0.0.1:{}/", registry.port);
            match spawn_until_healthy(&program, &args, &log_path, &health, START_TIMEOUT).await {
                Ok(process) => {
                    registry.process = Some(process);
                    return Ok(registry);
                }
                Err(error) if log_shows_port_in_use(&read_log(&log_path)) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("docker-registry did not start")))
    }

    /// `127.0.0.1:<port>`, the registry part of image names.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The last `lines` lines of the registry's log (its access log shows every request).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&read_log(&self.dir.path().join("registry.log")), lines)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    /// Builds the test image archive once per registry and unpacks it into an OCI layout dir.
    fn test_image_layout(&self) -> anyhow::Result<PathBuf> {
        let layout = self.dir.path().join("layout");
        if layout.join("index.json").is_file() {
            return Ok(layout);
        }
        let archive = self.dir.path().join("busybox-oci.tar");
        let script = crate::paths::repo_root().join("hack").join("build-test-image.sh");
        let built = std::process::Command::new("bash").arg(&script).arg(&archive).output()?;
        anyhow::ensure!(
            built.status.success(),
            "{} failed (run `make deps`): {}",
            script.display(),
            String::from_utf8_lossy(&built.stderr)
        );
        std::fs::create_dir_all(&layout)?;
        let unpacked = std::process::Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout).output()?;
        anyhow::ensure!(unpacked.status.success(), "tar -xf: {}", String::from_utf8_lossy(&unpacked.stderr));
        Ok(layout)
    }

    /// Pushes the test image plus an extra layer with `marker` (see the module docs) as
    /// `<repository>:<tag>`, an OCI index for this machine's platform.
    pub async fn push_test_image(&self, repository: &str, tag: &str, marker: &str) -> anyhow::Result<PushedImage> {
        self.push(repository, tag, marker, Format::OciIndex).await
    }

    /// Like [`Registry::push_test_image`], laid out as `format` says.
    pub async fn push(&self, repository: &str, tag: &str, marker: &str, format: Format) -> anyhow::Result<PushedImage> {
        let layout = self.test_image_layout()?;
        let blob_path = |digest: &str| layout.join("blobs").join(digest.replace(':', "/"));
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
        let entry = &index["manifests"][0];
        let platform = entry["platform"].clone();
        let base_digest = entry["digest"].as_str().context("index.json without a manifest digest")?;
        let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob_path(base_digest))?)?;
        let config_digest = manifest["config"]["digest"].as_str().context("manifest without config")?.to_string();
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(blob_path(&config_digest))?)?;

        let (layer, diff_id, blob_sha256) = extra_layer(self.dir.path(), marker)?;
        let layer_digest = digest_of(&layer);
        for base_layer in manifest["layers"].as_array().context("manifest without layers")?.clone() {
            let digest = base_layer["digest"].as_str().context("layer without digest")?;
            self.push_blob(repository, &std::fs::read(blob_path(digest))?).await?;
        }
        self.push_blob(repository, &layer).await?;
        config["rootfs"]["diff_ids"].as_array_mut().context("config without diff_ids")?.push(diff_id.into());
        config["history"]
            .as_array_mut()
            .context("config without history")?
            .push(serde_json::json!({"created_by": format!("rkube test/src/registry.rs extra layer {marker}")}));
        let config_bytes = serde_json::to_vec(&config)?;
        self.push_blob(repository, &config_bytes).await?;
        manifest["config"]["digest"] = digest_of(&config_bytes).into();
        manifest["config"]["size"] = config_bytes.len().into();
        manifest["layers"].as_array_mut().context("manifest without layers")?.push(serde_json::json!({
            "mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.len()
        }));
        if format == Format::DockerManifest {
            manifest["mediaType"] = DOCKER_MANIFEST.into();
            manifest["config"]["mediaType"] = DOCKER_CONFIG.into();
            for layer in manifest["layers"].as_array_mut().context("manifest without layers")? {
                layer["mediaType"] = DOCKER_LAYER_GZIP.into();
            }
            let manifest_bytes = serde_json::to_vec(&manifest)?;
            self.push_manifest(repository, tag, DOCKER_MANIFEST, &manifest_bytes).await?;
            return Ok(PushedImage {
                reference: format!("{}/{repository}:{tag}", self.host()),
                digest: digest_of(&manifest_bytes),
                layer_digest,
                blob_sha256,
            });
        }
        let manifest_bytes = serde_json::to_vec(&manifest)?;
        let manifest_digest = digest_of(&manifest_bytes);
        self.push_manifest(repository, &manifest_digest, OCI_MANIFEST, &manifest_bytes).await?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest_bytes.len(), "platform": platform}],
        });
        let index_bytes = serde_json::to_vec(&index)?;
        self.push_manifest(repository, tag, OCI_INDEX, &index_bytes).await?;
        Ok(PushedImage {
            reference: format!("{}/{repository}:{tag}", self.host()),
            digest: digest_of(&index_bytes),
            layer_digest,
            blob_sha256,
        })
    }

    /// Uploads one blob (monolithic upload: POST, then PUT with the digest), unless the
    /// registry has it.
    async fn push_blob(&self, repository: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let digest = digest_of(bytes);
        let head = self.http.head(self.url(&format!("/v2/{repository}/blobs/{digest}"))).send().await?;
        if head.status().is_success() {
            return Ok(());
        }
        let started = self.http.post(self.url(&format!("/v2/{repository}/blobs/uploads/"))).send().await?;
        anyhow::ensure!(started.status().as_u16() == 202, "starting an upload: {}", started.status());
        let location = started
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .context("upload without a Location")?
            .to_string();
        let location = if location.starts_with('/') { self.url(&location) } else { location };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = self
            .http
            .put(format!("{location}{separator}digest={digest}"))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await?;
        let status = put.status();
        anyhow::ensure!(status.as_u16() == 201, "uploading blob {digest}: {status}: {}", put.text().await?);
        Ok(())
    }

    async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        let put = self
            .http
            .put(self.url(&format!("/v2/{repository}/manifests/{reference}")))
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(bytes.to_vec())
            .send()
            .await?;
        let status = put.status();
        anyhow::ensure!(status.as_u16() == 201, "putting manifest {reference}: {status}: {}", put.text().await?);
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.process = None;
    }
}

/// `sha256:<hex>` of `bytes`.
fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// The extra layer for `marker`: returns the gzipped tar, its diff ID (digest of the plain
/// tar) and the sha256 hex of `/rkube-blob.bin`.
fn extra_layer(work: &Path, marker: &str) -> anyhow::Result<(Vec<u8>, String, String)> {
    let dir = work.join(format!("layer-{:x}", sha2::Sha256::digest(marker.as_bytes())));
    let root = dir.join("root");
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("rkube-image"), format!("{marker}\n"))?;
    // Incompressible, deterministic per marker (xorshift64).
    let mut state = u64::from_le_bytes(sha2::Sha256::digest(marker.as_bytes())[..8].try_into()?) | 1;
    let mut blob = Vec::with_capacity(BLOB_BYTES);
    while blob.len() < BLOB_BYTES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        blob.extend_from_slice(&state.to_le_bytes());
    }
    blob.truncate(BLOB_BYTES);
    let blob_sha256 = format!("{:x}", sha2::Sha256::digest(&blob));
    std::fs::write(root.join("rkube-blob.bin"), &blob)?;
    let tar = dir.join("layer.tar");
    let made = std::process::Command::new("tar")
        .args(["--sort=name", "--numeric-owner", "--owner=0", "--group=0", "--mtime=@0", "--mode=0644", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .args(["rkube-image", "rkube-blob.bin"])
        .output()?;
    anyhow::ensure!(made.status.success(), "tar: {}", String::from_utf8_lossy(&made.stderr));
    let plain = std::fs::read(&tar)?;
    let gzipped = std::process::Command::new("gzip").args(["-n", "-c"]).arg(&tar).output()?;
    anyhow::ensure!(gzipped.status.success(), "gzip: {}", String::from_utf8_lossy(&gzipped.stderr));
    Ok((gzipped.stdout, digest_of(&plain), blob_sha256))
}
