//! Command-line flags the way Go's `flag` package reads boolean flags, for binaries that must
//! accept the same flags as their Go originals (`calico -v`, `calico -t`, `calico-ipam -upgrade`).
//! Runtimes exec plugins without arguments, so an empty list means "run as a CNI plugin".

/// One boolean flag: its name (without dashes) and its usage line.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    pub usage: &'static str,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The flags set to true, in the order given (empty: run as a plugin).
    Set(Vec<&'static str>),
    /// `-h`/`-help`: print this usage, exit 0 (as Go's `ExitOnError` does).
    Help(String),
    /// A flag that is not defined or a bad value: print this to stderr, exit 2 (as Go).
    Error(String),
}

/// Go's usage text: `Usage of <set>:` then each flag, sorted, with its usage after a tab.
pub fn usage(set: &str, flags: &[Flag]) -> String {
    let mut sorted: Vec<&Flag> = flags.iter().collect();
    sorted.sort_by_key(|f| f.name);
    let mut out = format!("Usage of {set}:\n");
    for f in sorted {
        out.push_str(&format!("  -{}\t{}\n", f.name, f.usage));
    }
    out
}

/// Parses `args` (without the program name) like Go's `FlagSet.Parse` with only boolean flags:
/// `-x`, `--x`, `-x=true|false|1|0|t|f|…`; parsing stops at the first non-flag argument, `-`
/// or `--`.
pub fn parse(set: &str, flags: &[Flag], args: &[String]) -> Parsed {
    let mut on: Vec<&'static str> = Vec::new();
    for arg in args {
        if arg == "--" || arg == "-" || !arg.starts_with('-') {
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Parsed::Error(format!("bad flag syntax: {arg}\n{}", usage(set, flags)));
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(flag) = flags.iter().find(|f| f.name == name) else {
            if name == "h" || name == "help" {
                return Parsed::Help(usage(set, flags));
            }
            return Parsed::Error(format!(
                "flag provided but not defined: -{name}\n{}",
                usage(set, flags)
            ));
        };
        let set_to = match value {
            None => true,
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
            Some(v) => {
                return Parsed::Error(format!(
                    "invalid boolean value {v:?} for -{name}: parse error\n{}",
                    usage(set, flags)
                ))
            }
        };
        on.retain(|n| *n != flag.name);
        if set_to {
            on.push(flag.name);
        }
    }
    Parsed::Set(on)
}

/// [`parse`] for a binary's `main`: the flags given, or — after printing the usage (`-h`, exit
/// 0) or the error (exit 2) to stderr, as Go's `flag.ExitOnError` does — the exit code.
pub fn parse_or_exit(set: &str, flags: &[Flag], args: &[String]) -> Result<Vec<&'static str>, i32> {
    match parse(set, flags, args) {
        Parsed::Set(on) => Ok(on),
        Parsed::Help(usage) => {
            eprint!("{usage}");
            Err(0)
        }
        Parsed::Error(msg) => {
            eprint!("{msg}");
            Err(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag {
            name: "v",
            usage: "Display version",
        },
        Flag {
            name: "t",
            usage: "Test datastore connection",
        },
    ];

    fn p(args: &[&str]) -> Parsed {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse("Calico", FLAGS, &args)
    }

    #[test]
    fn go_flag_forms() {
        assert_eq!(p(&[]), Parsed::Set(vec![]));
        assert_eq!(p(&["-v"]), Parsed::Set(vec!["v"]));
        assert_eq!(p(&["--t", "-v=false"]), Parsed::Set(vec!["t"]));
        assert_eq!(p(&["-v=1", "rest", "-x"]), Parsed::Set(vec!["v"]));
        assert_eq!(p(&["--", "-x"]), Parsed::Set(vec![]));
        assert!(
            matches!(p(&["-h"]), Parsed::Help(u) if u.starts_with("Usage of Calico:\n  -t\tTest"))
        );
        let Parsed::Error(e) = p(&["-upgrade"]) else {
            panic!()
        };
        assert!(
            e.starts_with("flag provided but not defined: -upgrade\nUsage of Calico:"),
            "{e}"
        );
        assert!(
            matches!(p(&["-v=maybe"]), Parsed::Error(e) if e.contains("invalid boolean value"))
        );
        assert!(matches!(p(&["---v"]), Parsed::Error(e) if e.contains("bad flag syntax")));
    }
}
