//! `calicoctl get ippools [NAME] [-o ps|wide|yaml|json]`: calicoctl's output shapes. A named
//! get prints the object, otherwise a `kind: IPPoolList`; YAML/JSON objects carry
//! `metadata.resourceVersion` (the datastore revision), as calicoctl shows them.

use ipam::Store;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::args::OutputFormat;
use crate::error::CtlResult;
use crate::{output, pools};

/// `kind: IPPoolList` wrapper of `get` without a name.
#[derive(Serialize)]
struct PoolList {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Map<String, Value>,
    items: Vec<ipam::model::IpPool>,
}

/// Render the pools `name` selects (all when `None`).
pub fn ippools(store: &dyn Store, name: Option<&str>, format: OutputFormat) -> CtlResult<String> {
    let found = match name {
        Some(n) => vec![pools::get(store, n)?],
        None => pools::list(store)?,
    };
    match format {
        OutputFormat::Json | OutputFormat::Yaml => {
            let mut items: Vec<_> = found.iter().map(|p| p.with_resource_version()).collect();
            match (name, items.pop()) {
                // A named get prints the object itself, as calicoctl does.
                (Some(_), Some(one)) => render(&one, format),
                (_, last) => {
                    items.extend(last);
                    render(
                        &PoolList {
                            kind: "IPPoolList",
                            api_version: ipam::model::API_VERSION,
                            metadata: Map::new(),
                            items,
                        },
                        format,
                    )
                }
            }
        }
        OutputFormat::Table | OutputFormat::Wide => {
            let wide = format == OutputFormat::Wide;
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|p| {
                    let s = &p.pool.spec;
                    let sel = s.effective_node_selector().to_string();
                    if wide {
                        vec![
                            p.pool.metadata.name.clone(),
                            s.cidr.clone(),
                            s.nat_outgoing.to_string(),
                            s.effective_ipip_mode(),
                            s.effective_vxlan_mode().to_string(),
                            s.disabled.to_string(),
                            s.disable_bgp_export.to_string(),
                            sel,
                        ]
                    } else {
                        vec![p.pool.metadata.name.clone(), s.cidr.clone(), sel]
                    }
                })
                .collect();
            let headers: &[&str] = if wide {
                &[
                    "NAME",
                    "CIDR",
                    "NAT",
                    "IPIPMODE",
                    "VXLANMODE",
                    "DISABLED",
                    "DISABLEBGPEXPORT",
                    "SELECTOR",
                ]
            } else {
                &["NAME", "CIDR", "SELECTOR"]
            };
            Ok(output::columns(headers, &rows))
        }
    }
}

fn render<T: Serialize>(v: &T, format: OutputFormat) -> CtlResult<String> {
    match format {
        OutputFormat::Json => output::json(v),
        _ => output::yaml(v),
    }
}
