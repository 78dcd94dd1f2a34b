//! Test double of the Kubernetes API server speaking the real wire protocol subset the suite uses. (in progress)
