//! calicoctl: a focused subset of Calico's admin CLI over our IPAM datastore.
//!
//! Owns the command logic of `bins/calicoctl`: argument parsing ([`args`]), datastore
//! selection from calicoctl's environment ([`connect`]), `datastore init` ([`init`]), IPPool
//! resources in `projectcalico.org/v3` YAML/JSON (`apply`, `create`, `get`, `delete`:
//! [`resource`], [`validate`], [`pools`]) and `ipam show | check | release` ([`ipam_cmds`]),
//! with calicoctl's verbs, flags, messages and output shapes ([`output`]).
//!
//! Must NOT: implement allocation logic or datastore access of its own (that is `ipam` and
//! the `ipam-store-*` crates: every write goes through `ipam::Store` with CAS), or panic on
//! bad input (every failure is a message on stderr and exit status 1).
//!
//! Entry point: [`run`] (the binary passes argv, the process environment and stdio).
//!
//! Behaviour worth knowing (and where we differ from Calico's calicoctl):
//! * `datastore init` is ours (calico-node does this at startup in a real cluster); see
//!   [`init`] for what it writes. Idempotent.
//! * `delete ippool` with addresses still allocated does what calicoctl does on etcd: the pool
//!   is disabled, its block affinities released (empty blocks deleted, others kept unaffine
//!   with their addresses) and the pool deleted; we additionally print a warning on stderr
//!   with the number of addresses left. `ipam check` then reports those unaffine blocks until
//!   the addresses are released.
//! * `ipam show --show-blocks` adds a NODE column (the block's affinity) to calicoctl's table.
//! * `ipam check` checks the IPAM objects against each other (see [`ipam_cmds`]), not against
//!   WorkloadEndpoints/pods, and exits 1 when it finds a problem.
//! * Only the IPPool resource type is supported by `apply`/`create`/`get`/`delete`; no
//!   `--config` file (environment variables only).

pub mod args;
pub mod connect;
pub mod error;
pub mod get;
pub mod init;
pub mod ipam_cmds;
pub use ipam::meta;
pub mod output;
pub mod pools;
pub mod resource;
pub mod validate;

use std::io::{Read, Write};

use ipam::Store;

pub use args::{Command, DeleteTarget, InitOptions, OutputFormat};
pub use connect::{open_store, Env};
pub use error::{CtlError, CtlResult};

/// Exit status of a failed command.
pub const EXIT_FAILURE: i32 = 1;

/// Parse `args` (argv without the program name), open the datastore selected by `env` and run
/// the command. Returns the process exit status; output goes to `out`, errors to `err`.
pub fn run(
    args: &[String],
    env: Env<'_>,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let cmd = match args::parse(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(
                err,
                "Invalid option: {e}\n\nRun 'calicoctl --help' for usage."
            );
            return EXIT_FAILURE;
        }
    };
    let r = match cmd {
        Command::Help => write_out(out, args::USAGE).map(|_| 0),
        Command::Version => version(env, out, err),
        Command::DatastoreInit(o) if is_local(env) => open_store(env).and_then(|s| {
            let r = init::init_local(s.as_ref(), &o)?;
            write_out(out, &(r.lines().join("\n") + "\n"))?;
            Ok(0)
        }),
        cmd => open_store(env).and_then(|s| execute(&cmd, s.as_ref(), stdin, out, err)),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            EXIT_FAILURE
        }
    }
}

/// `version`: ours, then the cluster's from ClusterInformation (like calicoctl, a datastore
/// that cannot be read is reported but does not fail the command).
fn version(env: Env<'_>, out: &mut dyn Write, err: &mut dyn Write) -> CtlResult<i32> {
    write_out(
        out,
        &format!("Client Version:    v{}\n", env!("CARGO_PKG_VERSION")),
    )?;
    let cluster = open_store(env).and_then(|s| {
        let key = ipam::Key::resource(ipam::ResourceKind::ClusterInformation, "default");
        let kv = s.get(&key)?;
        ipam::model::ClusterInformation::from_json(&kv.value).map_err(|e| CtlError::Parse {
            what: key.path(),
            reason: e.to_string(),
        })
    });
    match cluster {
        Ok(ci) => write_out(
            out,
            &format!(
                "Cluster Version:   {}\nCluster Type:      {}\n",
                ci.spec.calico_version.as_deref().unwrap_or("unknown"),
                ci.spec.cluster_type.as_deref().unwrap_or("unknown")
            ),
        )?,
        Err(e) => {
            let _ = writeln!(err, "Unable to retrieve Cluster Version or Type: {e}");
        }
    }
    Ok(0)
}

/// Whether the environment selects the embedded local store (its `datastore init` defaults
/// are the plugin's, see [`init::init_local`]).
fn is_local(env: Env<'_>) -> bool {
    datastore::DatastoreSettings::from_env(env)
        .is_ok_and(|s| s.kind == datastore::DatastoreKind::Local)
}

fn write_out(out: &mut dyn Write, s: &str) -> CtlResult<()> {
    out.write_all(s.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| CtlError::Failed(format!("failed to write output: {e}")))
}

fn read_input(file: &str, stdin: &mut dyn Read) -> CtlResult<String> {
    let mut s = String::new();
    let r = if file == "-" {
        stdin.read_to_string(&mut s).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut s).map(|_| ()))
    };
    r.map_err(|source| CtlError::Read {
        path: if file == "-" {
            "stdin".into()
        } else {
            file.into()
        },
        source,
    })?;
    Ok(s)
}

/// Apply `op` to each pool in order, calicoctl-style reporting: all or a partial-success
/// message naming how many succeeded before the first error.
fn for_each<T>(
    docs: &[T],
    verb: (&str, &str),
    out: &mut dyn Write,
    mut op: impl FnMut(&T) -> CtlResult<()>,
) -> CtlResult<i32> {
    let (verb, past) = verb;
    for (i, d) in docs.iter().enumerate() {
        if let Err(e) = op(d) {
            return Err(CtlError::Failed(if i == 0 {
                format!("Failed to {verb} 'IPPool' resource: [{e}]")
            } else {
                format!(
                    "Partial success: {past} the first {i} out of {} 'IPPool' resources:\nHit error: {e}",
                    docs.len()
                )
            }));
        }
    }
    write_out(
        out,
        &format!("Successfully {past} {} 'IPPool' resource(s)\n", docs.len()),
    )?;
    Ok(0)
}

fn warn_kept(err: &mut dyn Write, name: &str, o: pools::DeleteOutcome) {
    if o.allocated > 0 {
        let _ = writeln!(
            err,
            "Warning: IPPool {name} still had {} allocated address(es) in {} block(s); they stay \
             allocated (now in unaffine blocks) until their workloads are deleted or \
             'calicoctl ipam release' frees them.",
            o.allocated, o.blocks_kept
        );
    }
}

/// Run a parsed command against an open store (the part [`run`] does after connecting;
/// tests call it with an in-memory store). Returns the exit status.
pub fn execute(
    cmd: &Command,
    store: &dyn Store,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> CtlResult<i32> {
    match cmd {
        Command::Help | Command::Version => Ok(0),
        Command::DatastoreInit(o) => {
            let r = init::init(store, o)?;
            write_out(out, &(r.lines().join("\n") + "\n"))?;
            Ok(0)
        }
        Command::Apply { file } => {
            let docs = resource::parse_pools(&read_input(file, stdin)?, file)?;
            for_each(&docs, ("apply", "applied"), out, |d| pools::apply(store, d))
        }
        Command::Create { file } => {
            let docs = resource::parse_pools(&read_input(file, stdin)?, file)?;
            for_each(&docs, ("create", "created"), out, |d| {
                pools::create(store, d)
            })
        }
        Command::GetPools { name, output } => {
            write_out(out, &get::ippools(store, name.as_deref(), *output)?)?;
            Ok(0)
        }
        Command::Delete {
            target,
            skip_not_exists,
        } => {
            let names: Vec<String> = match target {
                DeleteTarget::Name(n) => vec![n.clone()],
                DeleteTarget::File(file) => resource::parse_pools(&read_input(file, stdin)?, file)?
                    .into_iter()
                    .map(|d| d.pool.metadata.name)
                    .collect(),
            };
            let mut kept = Vec::new();
            let r = for_each(&names, ("delete", "deleted"), out, |name| {
                match pools::delete(store, name) {
                    Ok(o) => kept.push((name.clone(), o)),
                    Err(CtlError::NotFound { .. }) if *skip_not_exists => {}
                    Err(e) => return Err(e),
                }
                Ok(())
            });
            for (n, o) in kept {
                warn_kept(err, &n, o);
            }
            r
        }
        Command::IpamShow {
            show_blocks,
            show_configuration,
            ip,
        } => {
            let text = match (ip, show_configuration) {
                (Some(ip), _) => ipam_cmds::show_ip(store, *ip)?,
                (None, true) => ipam_cmds::show_configuration(store)?,
                (None, false) => ipam_cmds::show(store, *show_blocks)?,
            };
            write_out(out, &text)?;
            Ok(0)
        }
        Command::IpamCheck => {
            let r = ipam_cmds::check(store)?;
            write_out(out, &r.text)?;
            Ok(if r.problems() > 0 { EXIT_FAILURE } else { 0 })
        }
        Command::IpamRelease { ip } => {
            write_out(out, &ipam_cmds::release(store, *ip)?)?;
            Ok(0)
        }
    }
}
