//! Logging for plugins: stderr + rotated log file, never stdout. (in progress)
