//! A scratch host for installer tests: source, bin, conf and service-account dirs in a tempdir.
#![allow(dead_code)]

use installer::{Installer, Paths, Settings, SUITE_BINARIES};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct Host {
    pub dir: tempfile::TempDir,
    pub src: PathBuf,
    pub bin: PathBuf,
    pub conf: PathBuf,
    pub sa: PathBuf,
}

impl Host {
    /// Source dir holding a small executable stand-in for every suite binary (version 1).
    pub fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let h = Host {
            src: p("src"),
            bin: p("host/opt/cni/bin"),
            conf: p("host/etc/cni/net.d"),
            sa: p("sa"),
            dir,
        };
        fs::create_dir_all(&h.src).unwrap();
        for b in SUITE_BINARIES {
            h.write_source(b, 1);
        }
        h
    }

    pub fn write_source(&self, name: &str, version: u32) {
        let p = self.src.join(name);
        fs::write(&p, format!("#!/bin/sh\necho {name}-v{version}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A service-account mount with a token and a CA.
    pub fn with_service_account(&self, token: &str, ca: &[u8]) {
        fs::create_dir_all(&self.sa).unwrap();
        fs::write(self.sa.join("token"), format!("{token}\n")).unwrap();
        fs::write(self.sa.join("ca.crt"), ca).unwrap();
    }

    /// An installer over this host with exactly `env` as its environment.
    pub fn installer(&self, env: &[(&str, &str)]) -> Installer {
        let owned: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let settings = Settings::from_lookup(move |k| {
            owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .unwrap();
        Installer::new(
            Paths {
                bin_dir: self.bin.clone(),
                conf_dir: self.conf.clone(),
                source_dir: self.src.clone(),
                serviceaccount_dir: self.sa.clone(),
            },
            settings,
        )
    }

    /// Every regular file under the scratch host dir (bin + conf), relative, sorted.
    pub fn host_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(
            &self.dir.path().join("host"),
            &self.dir.path().join("host"),
            &mut out,
        );
        out.sort();
        out
    }
}

fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(d) else { return };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

pub fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// (inode, mtime ns): changes whenever a file is replaced or rewritten.
pub fn identity(p: &Path) -> (u64, i64, i64) {
    let m = fs::metadata(p).unwrap();
    (m.ino(), m.mtime(), m.mtime_nsec())
}

/// The repository's testdata dir.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}
