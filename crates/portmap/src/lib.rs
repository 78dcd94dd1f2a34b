//! portmap plugin. (in progress)
