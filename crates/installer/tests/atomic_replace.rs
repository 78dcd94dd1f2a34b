//! Upgrading a plugin while something execs it in a tight loop (a kubelet mid-upgrade): every
//! exec must run a complete old or a complete new binary; never ETXTBSY, never a torn file.
//!
//! The exec'd "plugin" is this test binary itself (a real ELF) with a trailer appended; run with
//! `ATOMIC_HELPER=1` it reads its own image via /proc/self/exe (the inode actually exec'd, even
//! after a rename) and prints the version named in the trailer, or fails if the trailer is not
//! where a complete file has it. The exec loop runs in a separate process (`ATOMIC_LOOPER`), as
//! a kubelet would: execs forked from the installing process itself would inherit its
//! write descriptors between fork and exec, a hazard of the test, not of an installer.
//! A control run replaces the file in place the naive way and must see failures, proving the
//! detector works.
//!
//! harness = false: the helper modes need their own main().

use installer::binaries::install_binaries;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MARK: &[u8] = b"@@INSTALL-CNI-TEST-END:";
/// Padding so each copy takes long enough to overlap many execs.
const PAD: usize = 8 << 20;

fn main() {
    if std::env::var_os("ATOMIC_HELPER").is_some() {
        helper();
    }
    if let Some(target) = std::env::var_os("ATOMIC_LOOPER") {
        looper(Path::new(&target));
    }
    let tests: [(&str, fn()); 2] = [
        (
            "replace_while_execing_never_fails",
            replace_while_execing_never_fails,
        ),
        (
            "control_in_place_rewrite_is_detected",
            control_in_place_rewrite_is_detected,
        ),
    ];
    // Minimal libtest compatibility: `--list`, and positional args as name filters; other
    // flags (--test-threads, --nocapture, ...) do not apply to two sequential tests.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let takes_value = ["--test-threads", "--skip", "--format", "--color", "-Z"];
    let filters: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with('-') && (*i == 0 || !takes_value.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a)
        .collect();
    let selected = tests
        .into_iter()
        .filter(|(n, _)| filters.is_empty() || filters.iter().any(|f| n.contains(f.as_str())));
    if args.iter().any(|a| a == "--list") {
        selected.for_each(|(n, _)| println!("{n}: test"));
        return;
    }
    for (name, t) in selected {
        print!("test {name} ... ");
        let _ = std::io::stdout().flush();
        t();
        println!("ok");
    }
}

/// Exec'd mode: verify our own image is complete, print its version.
fn helper() -> ! {
    let tail_len = MARK.len() + 3;
    let mut tail = vec![0u8; tail_len];
    // Only the end is read: a torn (short) file has no trailer there.
    let ok = fs::File::open("/proc/self/exe")
        .and_then(|mut f| {
            f.seek(SeekFrom::End(-(tail_len as i64)))?;
            f.read_exact(&mut tail)
        })
        .is_ok()
        && tail.starts_with(MARK);
    if !ok {
        println!("torn");
        std::process::exit(3);
    }
    println!("{}", String::from_utf8_lossy(&tail[MARK.len()..]));
    std::process::exit(0);
}

fn payload(version: &str) -> Vec<u8> {
    let mut b = fs::read(std::env::current_exe().unwrap()).unwrap();
    b.extend(std::iter::repeat_n(0xA5u8, PAD));
    b.extend_from_slice(MARK);
    b.extend_from_slice(version.as_bytes());
    b
}

struct Scratch {
    _dir: tempfile::TempDir,
    old: PathBuf,
    new: PathBuf,
    bin: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let mk = |sub: &str, version: &str| {
        let d = dir.path().join(sub);
        fs::create_dir_all(&d).unwrap();
        let p = d.join("calico");
        fs::write(&p, payload(version)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        d
    };
    let s = Scratch {
        old: mk("old", "old"),
        new: mk("new", "new"),
        bin: dir.path().join("bin"),
        _dir: dir,
    };
    fs::create_dir_all(&s.bin).unwrap();
    s
}

#[derive(Default)]
struct Seen {
    runs: AtomicUsize,
    old: AtomicUsize,
    new: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// Looper mode: exec `target` from two threads until stdin closes, then report on stdout:
/// "runs old new" and one line per failed exec.
fn looper(target: &Path) -> ! {
    let (stop, seen) = (AtomicBool::new(false), Seen::default());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    exec_once(target, &seen);
                }
            });
        }
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        stop.store(true, Ordering::Relaxed);
    });
    let mut out = format!(
        "{} {} {}\n",
        seen.runs.load(Ordering::Relaxed),
        seen.old.load(Ordering::Relaxed),
        seen.new.load(Ordering::Relaxed)
    );
    for f in seen.failures.lock().unwrap().iter() {
        out.push_str(&f.replace('\n', " "));
        out.push('\n');
    }
    print!("{out}");
    std::process::exit(0);
}

fn exec_once(target: &Path, seen: &Seen) {
    let out = Command::new(target)
        .env("ATOMIC_HELPER", "1")
        .stdin(Stdio::null())
        .output();
    seen.runs.fetch_add(1, Ordering::Relaxed);
    match out {
        Ok(o) if o.status.success() && o.stdout == b"old\n" => {
            seen.old.fetch_add(1, Ordering::Relaxed);
        }
        Ok(o) if o.status.success() && o.stdout == b"new\n" => {
            seen.new.fetch_add(1, Ordering::Relaxed);
        }
        Ok(o) => seen.failures.lock().unwrap().push(format!(
            "{}: {:?}",
            o.status,
            String::from_utf8_lossy(&o.stdout)
        )),
        Err(e) => seen.failures.lock().unwrap().push(format!("exec: {e}")),
    }
}

/// A running looper process.
struct Looper(std::process::Child);

/// What a looper saw.
struct Report {
    runs: usize,
    old: usize,
    new: usize,
    failures: Vec<String>,
}

impl Looper {
    fn start(target: &Path) -> Looper {
        let child = Command::new(std::env::current_exe().unwrap())
            .env("ATOMIC_LOOPER", target)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Looper(child)
    }

    fn finish(mut self) -> Report {
        drop(self.0.stdin.take());
        let out = self.0.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let n: Vec<usize> = lines
            .next()
            .unwrap_or_default()
            .split(' ')
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        Report {
            runs: n.first().copied().unwrap_or(0),
            old: n.get(1).copied().unwrap_or(0),
            new: n.get(2).copied().unwrap_or(0),
            failures: lines.map(String::from).collect(),
        }
    }
}

fn replace_while_execing_never_fails() {
    let s = scratch();
    let names = vec!["calico".to_string()];
    install_binaries(&s.old, &s.bin, &names, &[], true).unwrap();
    let target = s.bin.join("calico");
    let looper = Looper::start(&target);
    let start = Instant::now();
    let mut upgrades = 0;
    // Alternate versions for a while: each copy takes milliseconds, execs are continuous.
    while start.elapsed() < Duration::from_secs(4) || upgrades < 20 {
        let src = if upgrades % 2 == 0 { &s.new } else { &s.old };
        install_binaries(src, &s.bin, &names, &[], true).unwrap();
        upgrades += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = looper.finish();
    assert!(
        r.failures.is_empty(),
        "{} of {} execs failed, e.g. {:?}",
        r.failures.len(),
        r.runs,
        &r.failures[..r.failures.len().min(5)]
    );
    assert!(
        r.old >= 10 && r.new >= 10,
        "old={} new={}: the exec loop did not overlap the upgrades",
        r.old,
        r.new
    );
    // Nothing but the binary is left in the bin dir (no temporaries).
    let entries: Vec<_> = fs::read_dir(&s.bin)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["calico"]);
    print!(
        "({upgrades} upgrades, {} execs: {} old, {} new) ",
        r.runs, r.old, r.new
    );
}

/// The same loop against an in-place rewrite (open with truncate + write, what `cp` does) must
/// observe failures: ETXTBSY on one side or the other, or a torn image.
fn control_in_place_rewrite_is_detected() {
    let s = scratch();
    let target = s.bin.join("calico");
    fs::copy(s.old.join("calico"), &target).unwrap();
    let looper = Looper::start(&target);
    let start = Instant::now();
    let (mut i, mut writer_errors) = (0, 0);
    while start.elapsed() < Duration::from_secs(4) {
        let src = if i % 2 == 0 { &s.new } else { &s.old };
        if fs::copy(src.join("calico"), &target).is_err() {
            writer_errors += 1;
        }
        i += 1;
    }
    let r = looper.finish();
    assert!(
        r.failures.len() + writer_errors > 0,
        "in-place rewrite went unnoticed ({} execs): the detector is blind",
        r.runs
    );
    print!(
        "({} of {} execs failed, {writer_errors} writer errors) ",
        r.failures.len(),
        r.runs
    );
}
