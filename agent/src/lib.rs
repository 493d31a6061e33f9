//! hostgate node agent: runs approved Windows HostProcess containers as job objects
//! (cgroups on Linux).

pub mod job;
