//! calicoctl: a focused subset of Calico's admin CLI over our IPAM datastore.
//!
//! Owns the command logic of `bins/calicoctl`: argument parsing ([`args`]), datastore
//! selection from calicoctl's environment ([`connect`]), `datastore init` ([`init`]), IPPool
//! and IPReservation resources in `projectcalico.org/v3` YAML/JSON (`apply`, `create`,
//! `get`, `delete`: [`resource`], [`validate`], [`pools`], [`reservations`], [`get`]) and
//! `ipam show | check | release | configure` ([`ipam_cmds`], [`leaks`]),
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
//! * `ipam check` does Calico's leak scan against WorkloadEndpoints and node tunnel addresses
//!   ([`leaks`]; on KDD, where endpoints are pods, a live handle counts as in use) and checks
//!   the IPAM objects against each other (see [`ipam_cmds`]).
//! * Datastore errors end with `(datastore: <type> (<where>))`.
//!   It exits 1 when it finds a problem.
//! * `apply`/`create`/`delete` manage IPPools and IPReservations; `get` also shows nodes,
//!   workload endpoints, the IPAM configuration and block affinities. No `--config` file
//!   (environment variables only).

pub mod args;
pub mod connect;
pub mod error;
pub mod get;
pub mod init;
pub mod ipam_cmds;
pub mod leaks;
pub use ipam::meta;
pub mod output;
pub mod pools;
pub mod reservations;
pub mod resource;
pub mod validate;

use std::io::{Read, Write};

use ipam::Store;
use resource::Doc;

pub use args::{Command, DeleteTarget, InitOptions, Kind, OutputFormat};
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
            use clap::error::ErrorKind;
            // Help is output, not a failure.
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                return match write_out(out, &e.render().to_string()) {
                    Ok(()) => 0,
                    Err(_) => EXIT_FAILURE,
                };
            }
            let _ = write!(err, "{}", e.render());
            return EXIT_FAILURE;
        }
    };
    let r = match cmd {
        Command::Version => version(env, out, err),
        Command::Completion(shell) => {
            args::completion(shell, out);
            Ok(0)
        }
        Command::DatastoreInit(o) if is_local(env) => open_store(env).and_then(|s| {
            let r = init::init_local(s.store.as_ref(), &o)?;
            write_out(out, &(r.lines().join("\n") + "\n"))?;
            Ok(0)
        }),
        cmd => open_store(env).and_then(|o| {
            execute_on(&cmd, o.store.as_ref(), o.endpoints_stored, stdin, out, err)
                .map_err(|e| e.on_datastore(&o.describe))
        }),
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
    let cluster = open_store(env).and_then(|o| {
        let s = o.store;
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
        .map_err(CtlError::Output)
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

/// Apply `op` to each resource in order, calicoctl-style reporting: all or a partial-success
/// message naming how many succeeded before the first error. `kind` names the resources.
fn for_each<T>(
    docs: &[T],
    kind: &str,
    verb: (&str, &str),
    out: &mut dyn Write,
    mut op: impl FnMut(&T) -> CtlResult<()>,
) -> CtlResult<i32> {
    let (verb, past) = verb;
    for (i, d) in docs.iter().enumerate() {
        if let Err(e) = op(d) {
            let source = Box::new(e);
            return Err(if i == 0 {
                CtlError::FirstResource {
                    verb: verb.to_string(),
                    kind: kind.to_string(),
                    source,
                }
            } else {
                CtlError::PartialSuccess {
                    past: past.to_string(),
                    done: i,
                    total: docs.len(),
                    kind: kind.to_string(),
                    source,
                }
            });
        }
    }
    write_out(
        out,
        &format!("Successfully {past} {} '{kind}' resource(s)\n", docs.len()),
    )?;
    Ok(0)
}

/// The kind calicoctl names in its summary: the first resource's.
fn kind_of(docs: &[resource::Doc]) -> &'static str {
    docs.first().map_or("IPPool", |d| d.kind())
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
    execute_on(cmd, store, true, stdin, out, err)
}

/// [`execute`] on a datastore that may not store WorkloadEndpoints (`endpoints_stored`
/// false: Kubernetes, where they are pods).
pub fn execute_on(
    cmd: &Command,
    store: &dyn Store,
    endpoints_stored: bool,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> CtlResult<i32> {
    match cmd {
        Command::Version | Command::Completion(_) => Ok(0),
        Command::DatastoreInit(o) => {
            let r = init::init(store, o)?;
            write_out(out, &(r.lines().join("\n") + "\n"))?;
            Ok(0)
        }
        Command::Apply { file } => {
            let docs = resource::parse_resources(&read_input(file, stdin)?, file)?;
            for_each(
                &docs,
                kind_of(&docs),
                ("apply", "applied"),
                out,
                |d| match d {
                    Doc::Pool(p) => pools::apply(store, p),
                    Doc::Reservation(r) => reservations::apply(store, r),
                },
            )
        }
        Command::Create { file } => {
            let docs = resource::parse_resources(&read_input(file, stdin)?, file)?;
            for_each(
                &docs,
                kind_of(&docs),
                ("create", "created"),
                out,
                |d| match d {
                    Doc::Pool(p) => pools::create(store, p),
                    Doc::Reservation(r) => reservations::create(store, r),
                },
            )
        }
        Command::Get {
            kind,
            name,
            output,
            namespace,
        } => {
            if *kind == Kind::WorkloadEndpoint && !endpoints_stored {
                return Err(CtlError::EndpointsNotStored);
            }
            write_out(
                out,
                &get::get(store, *kind, name.as_deref(), *output, namespace.as_deref())?,
            )?;
            Ok(0)
        }
        Command::Delete {
            target,
            skip_not_exists,
        } => {
            let names: Vec<(Kind, String)> = match target {
                DeleteTarget::Name(k, n) => vec![(*k, n.clone())],
                DeleteTarget::File(file) => {
                    resource::parse_resources(&read_input(file, stdin)?, file)?
                        .into_iter()
                        .map(|d| match &d {
                            Doc::Pool(_) => (Kind::IpPool, d.name().to_string()),
                            Doc::Reservation(_) => (Kind::IpReservation, d.name().to_string()),
                        })
                        .collect()
                }
            };
            let kind = names.first().map_or("IPPool", |(k, _)| k.name());
            let mut kept = Vec::new();
            let r = for_each(&names, kind, ("delete", "deleted"), out, |(k, name)| {
                let r = match k {
                    Kind::IpReservation => reservations::delete(store, name),
                    _ => pools::delete(store, name).map(|o| kept.push((name.clone(), o))),
                };
                match r {
                    Err(CtlError::NotFound { .. }) if *skip_not_exists => Ok(()),
                    r => r,
                }
            });
            for (n, o) in kept {
                warn_kept(err, &n, o);
            }
            r
        }
        Command::IpamShow {
            show_blocks,
            show_borrowed,
            show_configuration,
            ip,
        } => {
            let text = match (ip, show_configuration, show_borrowed) {
                (Some(ip), _, _) => ipam_cmds::show_ip(store, *ip)?,
                (None, true, _) => ipam_cmds::show_configuration(store)?,
                (None, false, true) => ipam_cmds::show_borrowed(store)?,
                (None, false, false) => ipam_cmds::show(store, *show_blocks)?,
            };
            write_out(out, &text)?;
            Ok(0)
        }
        Command::IpamCheck {
            show_all_ips,
            show_problem_ips,
            output,
        } => {
            let r = ipam_cmds::check(
                store,
                &ipam_cmds::CheckOptions {
                    show_all_ips: *show_all_ips,
                    show_problem_ips: *show_problem_ips,
                    report_file: output.clone(),
                    endpoints_stored,
                },
            )?;
            write_out(out, &r.text)?;
            Ok(if r.problems() > 0 { EXIT_FAILURE } else { 0 })
        }
        Command::IpamRelease {
            ip,
            from_report,
            force,
        } => {
            let text = match ip {
                Some(ip) => ipam_cmds::release(store, *ip)?,
                None => leaks::release_from_reports(store, from_report, *force)?,
            };
            write_out(out, &text)?;
            Ok(0)
        }
        Command::IpamConfigure {
            strict_affinity,
            max_blocks_per_host,
        } => {
            write_out(
                out,
                &ipam_cmds::configure(store, *strict_affinity, *max_blocks_per_host)?,
            )?;
            Ok(0)
        }
    }
}
