//! bandwidth plugin. (in progress)
