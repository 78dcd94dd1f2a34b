//! install-cni: installs (or with --uninstall removes) the suite on a node. Flags, layouts and
//! the SLEEP loop live in `installer::cli`; this file only wires up logging and the process.

use std::process::ExitCode;

fn main() -> ExitCode {
    cni_log::install(
        log::LevelFilter::Info,
        "install-cni".into(),
        None,
        cni_log::Rotation {
            max_size_bytes: 0,
            max_age_days: 0,
            max_backups: 0,
        },
    );
    let args: Vec<String> = std::env::args().collect();
    let env = |name: &str| std::env::var(name).ok();
    ExitCode::from(installer::cli::main(
        &args,
        &env,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    ))
}
