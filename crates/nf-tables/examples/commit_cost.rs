//! Kernel cost of the smallest iptables-style change, for benchmarks: one transaction that
//! creates a chain and appends a rule jumping to it to an existing chain, and one that deletes
//! both. Prints the median wall time of each in milliseconds (`add_ms del_ms`).
//!
//!   usage: commit_cost <table> <parent chain> [iterations=15]   (in the netns to measure)

use std::time::Instant;

use nf_tables::{Batch, Expr, Family, NewRule, NfSocket};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (table, parent) = match args.as_slice() {
        [_, t, p, ..] => (t.as_str(), p.as_str()),
        _ => return Err("usage: commit_cost <table> <parent chain> [iterations]".into()),
    };
    let n: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(15);
    let (f, chain) = (Family::Ipv4, "COMMIT-COST-PROBE");
    let mut sock = NfSocket::new()?;
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let rule = NewRule {
            exprs: vec![Expr::Counter, Expr::Jump(chain.to_string())],
            compat_proto: None,
        };
        let mut add = Batch::new();
        add.add_chain(f, table, chain)
            .append_rule(f, table, parent, &rule);
        let t = Instant::now();
        sock.apply(&add)?;
        adds.push(t.elapsed().as_secs_f64() * 1e3);

        let info = sock.chain(f, table, chain)?.ok_or("probe chain vanished")?;
        let mut del = Batch::new();
        // The jump rule got the handle after the chain's (same transaction).
        del.delete_rule(f, table, parent, info.handle + 1)
            .delete_chain(f, table, chain);
        let t = Instant::now();
        sock.apply(&del)?;
        dels.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("{:.2} {:.2}", median(adds), median(dels));
    Ok(())
}
