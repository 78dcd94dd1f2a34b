//! A conflist runner that behaves like libcni (`AddNetworkList`, `CheckNetworkList`,
//! `DelNetworkList`, `GCNetworkList`, `GetStatusNetworkList`), executing plugins inside the
//! test's host namespace.
//!
//! libcni rules reproduced here:
//! * each plugin gets the list's `name` and (effective) `cniVersion` injected;
//! * `runtimeConfig.<cap>` only for capabilities the plugin declares `true` and the caller
//!   supplied (see [`Chain::capability_arg`]); omitted when none match;
//! * ADD passes the previous plugin's output as `prevResult`; the final result is cached;
//! * DEL runs in reverse order; the cached result is passed as `prevResult` **only for
//!   versions ≥ 0.4.0** (so a 0.3.1 list gets none), and the cache entry is removed on success;
//! * CHECK is refused below 0.4.0, a no-op with `disableCheck`, else uses the cached result;
//! * GC DELs cached attachments of this network that are not valid (with their cached netns,
//!   args and capability args), then (≥ 1.1.0, unless `disableGC`) sends GC to every plugin with
//!   `cni.dev/valid-attachments`; STATUS is sent only for ≥ 1.1.0.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::bins;
use crate::cache::{CachedAttachment, ResultCache};
use crate::error::{HarnessError, Result};
use crate::netns::Netns;
use crate::plugin::{exec_plugin_timeout, PluginFailure, PLUGIN_TIMEOUT};
use crate::version;

/// One attachment: container id, interface name, netns path, CNI_ARGS pairs.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    /// `None` means `CNI_NETNS=""` (e.g. the runtime's second DEL).
    pub netns: Option<PathBuf>,
    pub args: Vec<(String, String)>,
}

impl Attachment {
    /// `ifname` defaults to `eth0`.
    pub fn new(container_id: &str, netns: &Netns) -> Attachment {
        Attachment {
            container_id: container_id.to_string(),
            ifname: "eth0".to_string(),
            netns: Some(netns.path().to_path_buf()),
            args: Vec::new(),
        }
    }

    /// An attachment with an empty `CNI_NETNS`.
    pub fn without_netns(container_id: &str) -> Attachment {
        Attachment {
            container_id: container_id.to_string(),
            ifname: "eth0".to_string(),
            netns: None,
            args: Vec::new(),
        }
    }

    pub fn ifname(mut self, ifname: &str) -> Attachment {
        self.ifname = ifname.to_string();
        self
    }

    /// Adds a `K=V` pair to `CNI_ARGS`.
    pub fn arg(mut self, key: &str, value: &str) -> Attachment {
        self.args.push((key.to_string(), value.to_string()));
        self
    }

    fn cni_args(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Why a chain operation failed.
pub enum ChainError {
    /// A plugin ran and reported an error.
    Plugin(Box<PluginFailure>),
    /// The runner itself refused, as libcni would (e.g. CHECK on a 0.3.1 list).
    Refused(String),
    /// GC continues past failures and reports all of them.
    Multiple(Vec<ChainError>),
    /// Infrastructure problem (binary missing, spawn failure, bad conflist…).
    Harness(HarnessError),
}

impl ChainError {
    /// The first plugin failure, if this error is (or contains) one.
    pub fn plugin_failure(&self) -> Option<&PluginFailure> {
        match self {
            ChainError::Plugin(p) => Some(p.as_ref()),
            ChainError::Multiple(v) => v.iter().find_map(ChainError::plugin_failure),
            _ => None,
        }
    }

    /// CNI error code of the first plugin failure.
    pub fn code(&self) -> Option<u64> {
        self.plugin_failure().and_then(|p| p.code)
    }

    /// CNI error message of the first plugin failure (or the refusal text).
    pub fn msg(&self) -> String {
        match self {
            ChainError::Refused(m) => m.clone(),
            other => other
                .plugin_failure()
                .map(|p| p.msg.clone())
                .unwrap_or_else(|| other.to_string()),
        }
    }
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainError::Plugin(p) => write!(f, "{p}"),
            ChainError::Refused(m) => write!(f, "runtime refused: {m}"),
            ChainError::Multiple(v) => {
                let parts: Vec<String> = v.iter().map(ToString::to_string).collect();
                write!(f, "{}", parts.join("; "))
            }
            ChainError::Harness(h) => write!(f, "{h}"),
        }
    }
}

// Debug prints the Display text so `unwrap()` in tests shows the plugin's error readably.
impl std::fmt::Debug for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::error::Error for ChainError {}

impl From<HarnessError> for ChainError {
    fn from(e: HarnessError) -> Self {
        ChainError::Harness(e)
    }
}

/// A parsed conflist bound to a host namespace, a plugin search path and a result cache.
pub struct Chain<'h> {
    host: &'h Netns,
    raw: Vec<u8>,
    name: String,
    version: String,
    disable_check: bool,
    disable_gc: bool,
    plugins: Vec<Value>,
    plugin_dirs: Vec<PathBuf>,
    cache: ResultCache,
    _cache_dir: Option<tempfile::TempDir>,
    capability_args: Map<String, Value>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl<'h> Chain<'h> {
    /// Parses `conflist`; plugins are looked up in [`bins::bin_dirs`] and the cache lives in a
    /// fresh temp dir.
    pub fn new(host: &'h Netns, conflist: &Value) -> Result<Chain<'h>> {
        let cache_dir =
            tempfile::tempdir().map_err(|e| HarnessError::io("creating cache dir", e))?;
        let mut chain = Chain::with_cache_dir(host, conflist, cache_dir.path())?;
        chain._cache_dir = Some(cache_dir);
        Ok(chain)
    }

    /// Like [`Chain::new`] with a caller-owned cache dir (share it between runners to mimic a
    /// runtime restart).
    pub fn with_cache_dir(
        host: &'h Netns,
        conflist: &Value,
        cache_dir: &Path,
    ) -> Result<Chain<'h>> {
        let obj = conflist
            .as_object()
            .ok_or_else(|| HarnessError::Conflist("not a JSON object".into()))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| HarnessError::Conflist("missing network name".into()))?
            .to_string();
        let cni_version = obj.get("cniVersion").and_then(Value::as_str).unwrap_or("");
        let versions: Option<Vec<String>> =
            obj.get("cniVersions").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            });
        let version = version::effective(cni_version, versions.as_deref())?;
        let plugins = obj
            .get("plugins")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| HarnessError::Conflist(format!("no plugins in config list {name:?}")))?
            .clone();
        for p in &plugins {
            if p.get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(HarnessError::Conflist(format!("plugin without type: {p}")));
            }
        }
        Ok(Chain {
            host,
            raw: serde_json::to_vec(conflist).unwrap_or_default(),
            disable_check: flag(obj.get("disableCheck"))?,
            disable_gc: flag(obj.get("disableGC"))?,
            name,
            version,
            plugins,
            plugin_dirs: bins::bin_dirs(),
            cache: ResultCache::new(cache_dir),
            _cache_dir: None,
            capability_args: Map::new(),
            env: Vec::new(),
            timeout: PLUGIN_TIMEOUT,
        })
    }

    /// Replaces the plugin search path (also sent as `CNI_PATH`), e.g. to mix in the Go peers.
    pub fn plugin_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.plugin_dirs = dirs;
        self
    }

    /// Supplies a capability arg (e.g. `portMappings`, `bandwidth`, `ipRanges`, `ips`).
    pub fn capability_arg(mut self, name: &str, value: Value) -> Self {
        self.capability_args.insert(name.to_string(), value);
        self
    }

    /// Changes capability args between operations (the runner is otherwise immutable).
    pub fn set_capability_args(&mut self, args: Map<String, Value>) {
        self.capability_args = args;
    }

    /// Extra environment for every plugin exec (e.g. datastore endpoints).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Network name of the list.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version injected into every plugin config.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// The cached final ADD result of an attachment.
    pub fn cached_result(&self, a: &Attachment) -> Option<Value> {
        self.cache
            .load(&self.name, &a.container_id, &a.ifname)
            .and_then(|c| c.result)
    }

    /// ADD through the whole list; returns the final result (also cached).
    pub fn add(&self, a: &Attachment) -> Result<Value, ChainError> {
        let mut outputs = self.add_each(a)?;
        Ok(outputs.pop().unwrap_or(Value::Null))
    }

    /// ADD returning every plugin's output in list order (the last one is the result).
    pub fn add_each(&self, a: &Attachment) -> Result<Vec<Value>, ChainError> {
        let mut outputs: Vec<Value> = Vec::new();
        for plugin in &self.plugins {
            let stdin = self.plugin_stdin(plugin, outputs.last(), &self.capability_args);
            let out = self.run_plugin(plugin, "ADD", Some(a), &stdin)?;
            let result: Value = serde_json::from_slice(&out).map_err(|e| {
                HarnessError::parse(
                    format!("ADD result of plugin {}", plugin_type(plugin)),
                    format!("{e}; stdout {:?}", String::from_utf8_lossy(&out)),
                )
            })?;
            outputs.push(result);
        }
        self.cache.store(
            &self.raw,
            &CachedAttachment {
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
                network_name: self.name.clone(),
                netns: netns_str(a),
                cni_args: a.args.clone(),
                capability_args: self.capability_args.clone(),
                result: outputs.last().cloned(),
            },
        )?;
        Ok(outputs)
    }

    /// CHECK (refused below 0.4.0; skipped with `disableCheck`).
    pub fn check(&self, a: &Attachment) -> Result<(), ChainError> {
        if !version::at_least(&self.version, "0.4.0")? {
            return Err(ChainError::Refused(format!(
                "configuration version {:?} does not support the CHECK command",
                self.version
            )));
        }
        if self.disable_check {
            return Ok(());
        }
        let prev = self.cached_result(a);
        for plugin in &self.plugins {
            let stdin = self.plugin_stdin(plugin, prev.as_ref(), &self.capability_args);
            self.run_plugin(plugin, "CHECK", Some(a), &stdin)?;
        }
        Ok(())
    }

    /// DEL in reverse order with the current capability args.
    pub fn del(&self, a: &Attachment) -> Result<(), ChainError> {
        self.del_with(a, &self.capability_args)
    }

    fn del_with(&self, a: &Attachment, caps: &Map<String, Value>) -> Result<(), ChainError> {
        let prev = if version::at_least(&self.version, "0.4.0")? {
            self.cached_result(a)
        } else {
            None
        };
        for plugin in self.plugins.iter().rev() {
            let stdin = self.plugin_stdin(plugin, prev.as_ref(), caps);
            self.run_plugin(plugin, "DEL", Some(a), &stdin)?;
        }
        self.cache.remove(&self.name, &a.container_id, &a.ifname)?;
        Ok(())
    }

    /// GC with the given valid `(containerID, ifname)` attachments.
    pub fn gc(&self, valid: &[(&str, &str)]) -> Result<(), ChainError> {
        let mut errors = Vec::new();
        for cached in self.cache.list(&self.name) {
            if valid
                .iter()
                .any(|(c, i)| *c == cached.container_id && *i == cached.ifname)
            {
                continue;
            }
            let a = Attachment {
                container_id: cached.container_id.clone(),
                ifname: cached.ifname.clone(),
                netns: Some(PathBuf::from(&cached.netns)).filter(|p| !p.as_os_str().is_empty()),
                args: cached.cni_args.clone(),
            };
            if let Err(e) = self.del_with(&a, &cached.capability_args) {
                errors.push(e);
            }
        }
        if !self.disable_gc && version::at_least(&self.version, "1.1.0")? {
            let list: Vec<Value> = valid
                .iter()
                .map(|(c, i)| json!({"containerID": c, "ifname": i}))
                .collect();
            for plugin in &self.plugins {
                let mut stdin = self.base_stdin(plugin);
                stdin.insert(
                    "cni.dev/valid-attachments".into(),
                    Value::Array(list.clone()),
                );
                stdin.insert("cni.dev/attachments".into(), Value::Array(list.clone()));
                let bytes = serde_json::to_vec(&stdin).unwrap_or_default();
                if let Err(e) = self.run_plugin(plugin, "GC", None, &bytes) {
                    errors.push(e);
                }
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ChainError::Multiple(errors)),
        }
    }

    /// STATUS (only sent for versions ≥ 1.1.0, like libcni; stops at the first failure).
    pub fn status(&self) -> Result<(), ChainError> {
        if !version::at_least(&self.version, "1.1.0")? {
            return Ok(());
        }
        for plugin in &self.plugins {
            let bytes = serde_json::to_vec(&self.base_stdin(plugin)).unwrap_or_default();
            self.run_plugin(plugin, "STATUS", None, &bytes)?;
        }
        Ok(())
    }

    /// The plugin object with `name` and `cniVersion` injected (GC/STATUS get only this).
    fn base_stdin(&self, plugin: &Value) -> Map<String, Value> {
        let mut obj = plugin.as_object().cloned().unwrap_or_default();
        obj.insert("name".into(), json!(self.name));
        obj.insert("cniVersion".into(), json!(self.version));
        obj
    }

    fn plugin_stdin(
        &self,
        plugin: &Value,
        prev: Option<&Value>,
        caps: &Map<String, Value>,
    ) -> Vec<u8> {
        let mut obj = self.base_stdin(plugin);
        let mut rt = Map::new();
        if let Some(declared) = plugin.get("capabilities").and_then(Value::as_object) {
            for (cap, on) in declared {
                if on.as_bool() == Some(true) {
                    if let Some(v) = caps.get(cap) {
                        rt.insert(cap.clone(), v.clone());
                    }
                }
            }
        }
        if !rt.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(rt));
        }
        if let Some(p) = prev {
            obj.insert("prevResult".into(), p.clone());
        }
        serde_json::to_vec(&obj).unwrap_or_default()
    }

    /// Execs one plugin; returns its stdout on success.
    fn run_plugin(
        &self,
        plugin: &Value,
        command: &str,
        a: Option<&Attachment>,
        stdin: &[u8],
    ) -> Result<Vec<u8>, ChainError> {
        let ty = plugin_type(plugin);
        let bin = bins::find_in(ty, &self.plugin_dirs)?;
        let cni_path = std::env::join_paths(&self.plugin_dirs)
            .map_err(|e| HarnessError::Conflist(format!("bad plugin dir: {e}")))?
            .to_string_lossy()
            .into_owned();
        let mut env: Vec<(String, String)> = vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_PATH".into(), cni_path),
        ];
        if let Some(a) = a {
            env.push(("CNI_CONTAINERID".into(), a.container_id.clone()));
            env.push(("CNI_NETNS".into(), netns_str(a)));
            env.push(("CNI_IFNAME".into(), a.ifname.clone()));
            env.push(("CNI_ARGS".into(), a.cni_args()));
        }
        env.extend(self.env.iter().cloned());
        let env_refs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out = exec_plugin_timeout(self.host, &bin, &env_refs, stdin, self.timeout)?;
        if !out.success() {
            return Err(ChainError::Plugin(Box::new(PluginFailure::from_output(
                ty, command, &out,
            ))));
        }
        Ok(out.stdout)
    }
}

fn plugin_type(plugin: &Value) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

fn netns_str(a: &Attachment) -> String {
    a.netns
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// libcni accepts booleans and the strings "true"/"false" (any case) for the list flags.
fn flag(v: Option<&Value>) -> Result<bool> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(HarnessError::Conflist(format!("invalid boolean {other}"))),
    }
}
