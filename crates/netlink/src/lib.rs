//! Synchronous rtnetlink: links, addresses, routes, neighbours, tc. (in progress)
