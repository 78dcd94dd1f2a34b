//! install-cni: puts the suite on a node the way Calico's installer (`calico/cni` image,
//! `cni-plugin/pkg/install`) does, reading the same environment variables.
//!
//! It copies the plugin binaries into the CNI bin dir (atomically, skipping unchanged ones),
//! installs etcd TLS assets, writes `calico-kubeconfig` from the service-account mount, renders
//! the network config template with Calico's placeholders, validates it, and writes it last (a
//! runtime only sees the network once everything it needs is in place). Everything written is
//! recorded in a manifest so `--uninstall` removes exactly that and nothing else. With
//! `SLEEP=true` it keeps watching its mounted inputs (service-account token and CA, etcd TLS
//! assets, template) and installs again when they change, so a rotated token or certificate
//! reaches the node's kubeconfig and `calico-tls/` ([`Installer::reinstall_if_changed`]).
//!
//! Owns: files in the bin dir and conf dir that it writes. Must not: touch files it did not
//! write (other than `CNI_OLD_CONF_NAME`, which Calico removes by design), talk to the API
//! server or datastore, or leave a partially written file visible at any time.

pub mod atomic;
pub mod binaries;
pub mod cli;
pub mod error;
pub mod kubeconfig;
pub mod manifest;
pub mod settings;
pub mod template;

pub use binaries::{BinaryAction, BinaryOutcome, SUITE_BINARIES};
pub use error::InstallError;
pub use manifest::Manifest;
pub use settings::Settings;

use atomic::write_atomic;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use template::{EtcdTls, RenderContext, KUBECONFIG_NAME, TLS_DIR_NAME};

/// Mode of the kubeconfig and of TLS assets: they hold credentials.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of the network config (what runtimes expect).
pub const CONF_MODE: u32 = 0o644;

/// Where things come from and go to.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The host's CNI bin dir (`--bin-dir`, default /opt/cni/bin).
    pub bin_dir: PathBuf,
    /// Where the config is written (`--conf-dir`, else `CNI_NET_DIR`, else /etc/cni/net.d).
    pub conf_dir: PathBuf,
    /// Where the suite's binaries are (`--source-dir`, default: next to install-cni).
    pub source_dir: PathBuf,
    /// The service-account mount (token, ca.crt).
    pub serviceaccount_dir: PathBuf,
}

/// One install or uninstall run.
#[derive(Debug, Clone)]
pub struct Installer {
    pub paths: Paths,
    pub settings: Settings,
    /// Binary names to install (default [`SUITE_BINARIES`]).
    pub binaries: Vec<String>,
}

/// What `install` did.
#[derive(Debug, Default)]
pub struct InstallReport {
    pub binaries: Vec<BinaryOutcome>,
    pub tls_files: Vec<PathBuf>,
    pub kubeconfig: Option<PathBuf>,
    pub conf_path: PathBuf,
    pub removed_old_conf: Option<PathBuf>,
    /// `calico -v` of the installed plugin, when it ran.
    pub plugin_version: Option<String>,
}

/// What `uninstall` did.
#[derive(Debug, Default)]
pub struct UninstallReport {
    /// False when no manifest was found (nothing is removed then).
    pub had_manifest: bool,
    pub removed: Vec<PathBuf>,
    /// Recorded files whose content changed since: someone else's now, left in place.
    pub kept_modified: Vec<PathBuf>,
}

impl Installer {
    pub fn new(paths: Paths, settings: Settings) -> Installer {
        Installer {
            paths,
            settings,
            binaries: SUITE_BINARIES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The conf dir as the plugin on the host sees it: `CNI_NET_DIR` when set (installer
    /// running in a container with the host dir mounted elsewhere), else the conf dir itself.
    pub fn host_conf_dir(&self) -> PathBuf {
        self.settings
            .net_dir
            .clone()
            .unwrap_or_else(|| self.paths.conf_dir.clone())
    }

    /// Renders and validates the config without touching the host. Fails on any input error.
    pub fn render_config(&self, token: &str, etcd_tls: EtcdTls) -> Result<String, InstallError> {
        let s = &self.settings;
        let template = template::load_template(s)?;
        let node_name = match s.var("KUBERNETES_NODE_NAME") {
            Some(n) => n.to_string(),
            None => hostname()?,
        };
        let host_conf_dir = self.host_conf_dir();
        let ctx = RenderContext {
            settings: s,
            host_conf_dir: &host_conf_dir,
            node_name: &node_name,
            token,
            etcd_tls,
        };
        let rendered = template::render(&template, &template::substitutions(&ctx));
        for p in template::leftover_placeholders(&rendered) {
            log::warn!("network config template: unknown placeholder {p} left as is");
        }
        template::validate(&rendered, &s.conf_name)?;
        Ok(rendered)
    }

    /// Installs everything. All inputs (template, service account) are read and validated
    /// before the first write; the manifest is saved even when a later step fails, so
    /// `--uninstall` can clean up a partial install.
    pub fn install(&self) -> Result<InstallReport, InstallError> {
        let sa = kubeconfig::read_service_account(&self.paths.serviceaccount_dir)?;
        let kubeconfig_text = sa.as_ref().map(|sa| self.kubeconfig_text(sa)).transpose()?;
        let tls_src = self.tls_sources();
        let etcd_tls = EtcdTls {
            cert: tls_src.iter().any(|(n, _)| *n == "etcd-cert"),
            key: tls_src.iter().any(|(n, _)| *n == "etcd-key"),
            ca: tls_src.iter().any(|(n, _)| *n == "etcd-ca"),
        };
        let token = sa.as_ref().map_or("", |sa| sa.token.as_str());
        let rendered = self.render_config(token, etcd_tls)?;
        binaries::check_sources(
            &self.paths.source_dir,
            &self.binaries,
            &self.settings.skip_binaries,
        )?;

        for d in [&self.paths.bin_dir, &self.paths.conf_dir] {
            fs::create_dir_all(d).map_err(InstallError::io("create directory", d))?;
        }
        let mut manifest = Manifest::load(&self.paths.conf_dir)?.unwrap_or_default();
        let mut report = InstallReport::default();
        let result = self.apply(
            &mut manifest,
            &mut report,
            &tls_src,
            kubeconfig_text.as_deref(),
            &rendered,
        );
        let saved = manifest.save(&self.paths.conf_dir);
        result.and(saved).map(|()| report)
    }

    fn apply(
        &self,
        manifest: &mut Manifest,
        report: &mut InstallReport,
        tls_src: &[(&'static str, PathBuf)],
        kubeconfig_text: Option<&str>,
        rendered: &str,
    ) -> Result<(), InstallError> {
        let conf_dir = &self.paths.conf_dir;
        if !tls_src.is_empty() {
            let tls_dir = conf_dir.join(TLS_DIR_NAME);
            fs::create_dir_all(&tls_dir).map_err(InstallError::io("create directory", &tls_dir))?;
            for (name, src) in tls_src {
                let dst = tls_dir.join(name);
                atomic::copy_atomic(src, &dst, SECRET_MODE)?;
                manifest.record(&dst)?;
                report.tls_files.push(dst);
            }
        }

        let s = &self.settings;
        report.binaries = binaries::install_binaries(
            &self.paths.source_dir,
            &self.paths.bin_dir,
            &self.binaries,
            &s.skip_binaries,
            s.update_binaries,
        )?;
        for b in report.binaries.iter().filter(|b| b.is_ours()) {
            manifest.record(&b.target)?;
        }
        if report
            .binaries
            .iter()
            .any(|b| b.name == "calico" && b.is_ours())
        {
            report.plugin_version = plugin_version(&self.paths.bin_dir.join("calico"));
        }

        if let Some(text) = kubeconfig_text {
            let path = conf_dir.join(KUBECONFIG_NAME);
            write_atomic(&path, text.as_bytes(), SECRET_MODE)?;
            manifest.record(&path)?;
            report.kubeconfig = Some(path);
        }

        // Last: the config is what makes a runtime start using the network.
        let conf_path = conf_dir.join(&s.conf_name);
        write_atomic(&conf_path, rendered.as_bytes(), CONF_MODE)?;
        manifest.record(&conf_path)?;
        report.conf_path = conf_path;

        if s.old_conf_name != s.conf_name {
            let old = conf_dir.join(&s.old_conf_name);
            match fs::remove_file(&old) {
                Ok(()) => report.removed_old_conf = Some(old.clone()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove old config {}: {e}", old.display()),
            }
            manifest.record(&old)?;
        }
        Ok(())
    }

    fn kubeconfig_text(&self, sa: &kubeconfig::ServiceAccount) -> Result<String, InstallError> {
        let s = &self.settings;
        let (Some(host), Some(port)) = (&s.service_host, &s.service_port) else {
            return Err(InstallError::ServiceAccount {
                dir: self.paths.serviceaccount_dir.clone(),
                reason: "a token is mounted but KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not both set".into(),
            });
        };
        let server = kubeconfig::server_url(&s.service_protocol, host, port);
        kubeconfig::render(
            &server,
            sa,
            s.skip_tls_verify,
            &self.paths.serviceaccount_dir,
        )
    }

    /// The etcd TLS assets present in `TLS_ASSETS_DIR` (Calico copies these three names).
    fn tls_sources(&self) -> Vec<(&'static str, PathBuf)> {
        let dir = &self.settings.tls_assets_dir;
        if !dir.is_dir() {
            return Vec::new();
        }
        ["etcd-ca", "etcd-cert", "etcd-key"]
            .into_iter()
            .filter_map(|n| {
                let p = dir.join(n);
                if p.is_file() {
                    Some((n, p))
                } else {
                    log::warn!("TLS assets dir {}: missing {n}", dir.display());
                    None
                }
            })
            .collect()
    }

    /// A digest of every input that can change under a running installer: the service-account
    /// files, the etcd TLS assets and the template. Unreadable inputs count as absent (the
    /// install that follows reports them properly).
    pub fn inputs_fingerprint(&self) -> String {
        let mut h = sha1_smol::Sha1::new();
        let mut add = |label: &str, bytes: Option<Vec<u8>>| {
            h.update(label.as_bytes());
            match bytes {
                Some(b) => {
                    h.update(&(b.len() as u64).to_le_bytes());
                    h.update(&b);
                }
                None => h.update(b"-"),
            }
        };
        let sa = &self.paths.serviceaccount_dir;
        for name in ["token", "ca.crt", "namespace"] {
            add(name, fs::read(sa.join(name)).ok());
        }
        for (name, path) in self.tls_sources() {
            add(name, fs::read(path).ok());
        }
        add(
            "template",
            template::load_template(&self.settings)
                .ok()
                .map(String::into_bytes),
        );
        h.digest().to_string()
    }

    /// Installs again if [`Installer::inputs_fingerprint`] differs from `last` (updated only
    /// when the install succeeds, so a failed one is retried on the next call).
    pub fn reinstall_if_changed(
        &self,
        last: &mut String,
    ) -> Result<Option<InstallReport>, InstallError> {
        let now = self.inputs_fingerprint();
        if now == *last {
            return Ok(None);
        }
        let report = self.install()?;
        *last = now;
        Ok(Some(report))
    }

    /// Removes what the manifest in the conf dir lists, if unchanged since it was written.
    pub fn uninstall(&self) -> Result<UninstallReport, InstallError> {
        let conf_dir = &self.paths.conf_dir;
        let mut report = UninstallReport::default();
        let Some(mut manifest) = Manifest::load(conf_dir)? else {
            return Ok(report);
        };
        report.had_manifest = true;
        let mut first_err = None;
        let mut remaining = std::collections::BTreeMap::new();
        for (path, hash) in std::mem::take(&mut manifest.files) {
            match atomic::file_sha1(&path) {
                Ok(None) => {}
                Ok(Some(h)) if h != hash => report.kept_modified.push(path),
                Ok(Some(_)) => match fs::remove_file(&path) {
                    Ok(()) => report.removed.push(path),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        first_err.get_or_insert(InstallError::io("remove", &path)(e));
                        remaining.insert(path, hash);
                    }
                },
                Err(e) => {
                    first_err.get_or_insert(InstallError::io("hash", &path)(e));
                    remaining.insert(path, hash);
                }
            }
        }
        // Only if empty: foreign files in there stay, with their directory.
        let _ = fs::remove_dir(conf_dir.join(TLS_DIR_NAME));
        if let Some(e) = first_err {
            // Keep what could not be removed recorded, so a retry finishes the job.
            manifest.files = remaining;
            manifest.save(conf_dir)?;
            return Err(e);
        }
        let mpath = Manifest::path(conf_dir);
        fs::remove_file(&mpath).map_err(InstallError::io("remove", &mpath))?;
        for d in [&self.paths.bin_dir, conf_dir] {
            if d.is_dir() {
                atomic::sync_dir(d)?;
            }
        }
        Ok(report)
    }
}

/// The kernel's host name, lower-cased (libcalico's `names.Hostname()`).
pub fn hostname() -> Result<String, InstallError> {
    let p = Path::new("/proc/sys/kernel/hostname");
    let h = fs::read_to_string(p).map_err(InstallError::io("read", p))?;
    let h = h.trim().to_lowercase();
    if h.is_empty() {
        return Err(InstallError::InvalidEnv {
            var: "KUBERNETES_NODE_NAME",
            value: String::new(),
            reason: "unset and the host name is empty".into(),
        });
    }
    Ok(h)
}

/// `calico -v` of the freshly installed plugin, as Calico's installer logs it. A failure is
/// only logged: the binary may be a stand-in in tests, and the config is still valid.
fn plugin_version(calico: &Path) -> Option<String> {
    match std::process::Command::new(calico)
        .arg("-v")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => {
            log::warn!("{} -v exited with {}", calico.display(), o.status);
            None
        }
        Err(e) => {
            log::warn!("cannot run {} -v: {e}", calico.display());
            None
        }
    }
}
