//! Errors of calicoctl commands. Every variant renders as the one-line message printed on
//! stderr; the binary maps any error to exit status 1.

use datastore::DatastoreError;
use ipam::{IpamError, StoreError};

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The environment selects no usable datastore.
    #[error("failed to open the datastore: {0}")]
    DatastoreSettings(#[source] DatastoreError),
    /// The selected datastore (`describe`) could not be opened.
    #[error("failed to open the datastore: {describe}: {source}")]
    DatastoreOpen {
        describe: String,
        #[source]
        source: DatastoreError,
    },
    /// Reading an input file.
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Input is not valid YAML/JSON or not a resource we understand.
    #[error("failed to parse {what}: {reason}")]
    Parse { what: String, reason: String },
    /// A resource failed validation; `field` is the JSON path (`spec.cidr`).
    #[error("error with field {field} = '{value}' ({reason})")]
    Validation {
        field: String,
        value: String,
        reason: String,
    },
    /// Datastore failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Allocator failure.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The named resource does not exist.
    #[error("resource does not exist: {kind}({name})")]
    NotFound { kind: &'static str, name: String },
    /// `create` of a resource that exists.
    #[error("resource already exists: {kind}({name})")]
    AlreadyExists { kind: &'static str, name: String },
    /// A replace/apply carried a `resourceVersion` that is no longer current.
    #[error("update conflict: {kind}({name}) (resourceVersion {resource_version} is not current)")]
    StaleResourceVersion {
        kind: &'static str,
        name: String,
        resource_version: String,
    },
    /// A read-modify-write lost every compare-and-swap round.
    #[error("update conflict: {kind}({name}) kept changing; try again")]
    KeptChanging { kind: &'static str, name: String },
    /// `datastore init` lost every compare-and-swap round on ClusterInformation.
    #[error("ClusterInformation default kept changing; try again")]
    ClusterInformationKeptChanging,
    /// `ipam release --ip` of an address that is not allocated.
    #[error("IP address {ip} is not assigned")]
    NotAssigned { ip: std::net::IpAddr },
    /// `ipam configure` refused by the allocator.
    #[error("error: {0}")]
    Configure(#[source] IpamError),
    /// Rendering `-o json` (`format` "JSON") or `-o yaml` ("YAML") output.
    #[error("failed to render {format}: {source}")]
    Render {
        format: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Encoding a document we store or write (`what`: "the report", "the IPAM config").
    #[error("failed to encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Writing a file.
    #[error("failed to write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing to stdout.
    #[error("failed to write output: {0}")]
    Output(#[source] std::io::Error),
    /// The first resource of a create/apply/replace/delete failed.
    #[error("Failed to {verb} '{kind}' resource: [{source}]")]
    FirstResource {
        verb: String,
        kind: String,
        #[source]
        source: Box<CtlError>,
    },
    /// A later resource failed after `done` of `total` succeeded.
    #[error("Partial success: {past} the first {done} out of {total} '{kind}' resources:\nHit error: {source}")]
    PartialSuccess {
        past: String,
        done: usize,
        total: usize,
        kind: String,
        #[source]
        source: Box<CtlError>,
    },
    /// WorkloadEndpoints asked of the Kubernetes datastore.
    #[error(
        "workloadendpoints are not stored in the Kubernetes datastore (they are derived from \
         pods: use kubectl get pods -o wide)"
    )]
    EndpointsNotStored,
    /// A resource kind this calicoctl does not handle.
    #[error(
        "resource type '{kind}' is not supported by this calicoctl (supported: IPPool, IPReservation)"
    )]
    UnsupportedKind { kind: String },
    /// A resource of another kind where an IPPool is required.
    #[error("resource type '{kind}' is not an IPPool")]
    NotAnIpPool { kind: String },
    /// `ipam release --from-report`: the report is of another cluster.
    #[error(
        "cluster does not match the provided report ({report}): mismatched cluster GUID. Refusing to release"
    )]
    ReportOtherCluster { report: String },
    /// `ipam release --from-report`: the report is of another calicoctl version (no --force).
    #[error(
        "the provided report ({report}) was produced using a different version ({version}) of calicoctl. Refusing to release"
    )]
    ReportOtherVersion { report: String, version: String },
    /// `ipam release --from-report`: no report matches the current ClusterInformation revision.
    #[error(
        "the provided reports are all stale - at least one should be up-to-date. Please generate a new report while the data store is locked and try again"
    )]
    ReportsStale,
    /// `ipam release --from-report` with the datastore unlocked (no --force).
    #[error("data store is not locked. Either lock the data store, or re-run with --force")]
    NotLocked,
    /// Any of the above that happened while working on a datastore, naming it.
    #[error("{source} (datastore: {datastore})")]
    InDatastore {
        source: Box<CtlError>,
        datastore: String,
    },
}

impl CtlError {
    /// Name the datastore `describe` in errors that came from working on it (input and
    /// usage errors are about the command line, not the datastore).
    pub fn on_datastore(self, describe: &str) -> Self {
        match self {
            e @ (CtlError::Read { .. }
            | CtlError::Parse { .. }
            | CtlError::Validation { .. }
            | CtlError::DatastoreSettings(_)
            | CtlError::DatastoreOpen { .. }
            | CtlError::InDatastore { .. }) => e,
            e => CtlError::InDatastore {
                source: Box::new(e),
                datastore: describe.to_string(),
            },
        }
    }

    /// Validation error helper.
    pub fn field(field: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        CtlError::Validation {
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result alias.
pub type CtlResult<T> = Result<T, CtlError>;
