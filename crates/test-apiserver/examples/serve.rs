//! Run the test API server by hand (debugging, benchmarks, shell-driven tests):
//! `cargo run -p test-apiserver --example serve -- [seed.json ...]`.
//! Each seed file holds one object or a JSON array of objects. Prints the kubeconfig path on
//! the first line of stdout, then serves until stdin is closed.

use std::io::Read;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api = test_apiserver::TestApiServer::start()?;
    for path in std::env::args().skip(1) {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let objs = match v {
            serde_json::Value::Array(a) => a,
            one => vec![one],
        };
        for o in objs {
            api.put(o)?;
        }
    }
    println!("{}", api.kubeconfig_path().display());
    eprintln!("serving {} (close stdin to stop)", api.url());
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    eprintln!("{} requests served", api.request_count());
    Ok(())
}
